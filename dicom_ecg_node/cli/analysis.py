"""ecg-node serial analysis commands: ``compare`` (an ECG against its prior) and ``analyse`` (re-measure)."""

from __future__ import annotations

import sys
from typing import Any

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import AnalysisError

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")

#: Rows of the side-by-side table: (label, measurement key).
_ROWS = (("HR (bpm)", "heart_rate_bpm"), ("RR (ms)", "rr_ms"), ("PR (ms)", "pr_ms"), ("QRS (ms)", "qrs_ms"),
         ("QT (ms)", "qt_ms"), ("QTc (ms)", "qtc_ms"), ("QTc formula", "qtc_formula"), ("axis (deg)", "axis_deg"),
         ("source", "source"), ("beats used", "beats_used"), ("beats rejected", "beats_rejected"))


def _measured(service: Any, uid: str) -> Any:
    """The stored analysis of ``uid``, measuring it first when it is still pending."""
    from dicom_ecg_node.catalog.analysis import MEASURED, get_analysis

    row = get_analysis(service.catalog, uid)
    if row is None or row.status not in MEASURED or row.status == "running":
        service.analyse(uid)
        row = get_analysis(service.catalog, uid)
    if row is None:
        raise AnalysisError(f"{uid}: no such ECG in the catalog (or not a resting ECG class)", reason="unknown")
    if row.status not in MEASURED:
        raise AnalysisError(f"{uid}: could not be measured: {row.error or row.status}", reason="not-measured")
    return row


def _delta(a: Any, b: Any) -> Any:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return round(b - a, 1)
    return None


@click.command()
@click.argument("uid")
@click.option("--prior", "prior_uid", default=None,
              help="Compare with this ECG instead of the patient's previous one (the result is not stored).")
@_JSON
@node_options
@handle_errors
def compare(uid: str, prior_uid: str | None, as_json: bool, config: NodeConfig) -> None:
    """The node's measurements of ECG UID and of its prior side by side, and the change flags.

    Each flag shows its rule, the leads that met it, the values before and after, the threshold and the guideline
    it implements. UID (and --prior) are measured first when they are still pending.
    """
    from dicom_ecg_node.analysis import evaluate
    from dicom_ecg_node.catalog.analysis import get_analysis
    from dicom_ecg_node.services.analysis import AnalysisService, measurements_from_row
    from dicom_ecg_node.services.ingest import IngestService

    with IngestService.open(config) as ingest:
        service = AnalysisService(config, ingest)
        current = _measured(service, uid)
        if prior_uid is None:
            prior_uid = current.prior_sop_instance_uid
            flags = [{"rule": f.rule, "leads": list(f.leads), "values": f.values, "threshold": f.threshold,
                      "source": f.source, "detail": f.detail} for f in current.flags]
            stored = True
        else:
            stored = False
        prior = _measured(service, prior_uid) if prior_uid else None
        if not stored and prior is not None:
            result = evaluate(measurements_from_row(current), measurements_from_row(prior),
                              thresholds=service.thresholds)
            flags = [{"rule": f.rule, "leads": list(f.leads), "values": {k: list(v) for k, v in f.values.items()},
                      "threshold": f.threshold, "source": f.source, "detail": f.detail} for f in result.flags]
        elif prior is None:
            flags = []
        sr_row = get_analysis(ingest.catalog, uid)
    rows = [{"measure": label, "prior": None if prior is None else prior.measurements.get(key),
             "current": current.measurements.get(key),
             "change": None if prior is None else _delta(prior.measurements.get(key), current.measurements.get(key))}
            for label, key in _ROWS]
    if as_json:
        echo_json({"sop_instance_uid": uid, "prior_sop_instance_uid": prior_uid,
                   "current": current.measurements, "prior": None if prior is None else prior.measurements,
                   "leads": {"current": current.leads, "prior": None if prior is None else prior.leads},
                   "flags": flags, "stored": stored,
                   "sr_sop_instance_uid": sr_row.sr_sop_instance_uid if sr_row and stored else None})
        return
    click.echo(f"ECG   {uid}  ({current.acquisition_utc.isoformat() if current.acquisition_utc else 'undated'})")
    if prior is None:
        click.echo("prior (none: this is the patient's first measurable ECG)")
    else:
        click.echo(f"prior {prior.sop_instance_uid}  "
                   f"({prior.acquisition_utc.isoformat() if prior.acquisition_utc else 'undated'})")
    echo_table(rows, ["measure", "prior", "current", "change"])
    if prior is None:
        return
    if not flags:
        click.echo("no significant change by the node's rules")
    for f in flags:
        click.echo(f"\nFLAG {f['rule']}" + (f" in {', '.join(f['leads'])}" if f["leads"] else ""))
        for key, (before, after) in f["values"].items():
            click.echo(f"  {key}: {before} -> {after}")
        click.echo("  threshold: " + ", ".join(f"{k} = {v:g}" for k, v in f["threshold"].items()))
        click.echo(f"  source: {f['source']}")
        if f["detail"]:
            click.echo(f"  detail: {f['detail']}")


@click.command()
@click.argument("uids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Re-measure every resting ECG in the catalog.")
@click.option("--pending", is_flag=True, help="Measure only the ECGs not analysed yet.")
@node_options
@handle_errors
def analyse(uids: tuple[str, ...], all_: bool, pending: bool, config: NodeConfig) -> None:
    """Measure and compare ECGs again (after an algorithm change), with a progress bar.

    Give SOP Instance UIDs, --all (every resting ECG, oldest first, so that each comparison sees its re-measured
    prior) or --pending. Reports are rewritten where a comparison changed.
    """
    from dicom_ecg_node.services.analysis import AnalysisService
    from dicom_ecg_node.services.ingest import IngestService

    if not uids and not all_ and not pending:
        raise click.UsageError("give UIDs, --all or --pending")
    counts: dict[str, int] = {}
    flagged = 0
    with IngestService.open(config) as ingest:
        service = AnalysisService(config, ingest)
        if all_:
            from dicom_ecg_node.catalog.analysis import all_instances
            from dicom_ecg_node.services.analysis import ANALYSED_CLASSES

            todo = all_instances(ingest.catalog, ANALYSED_CLASSES)
        elif pending:
            todo = service.pending()
        else:
            todo = list(uids)
        with click.progressbar(todo, label="analysing", file=sys.stderr) as bar:
            for uid in bar:
                outcome = service.analyse(uid, force=not pending)
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
                flagged += bool(outcome.flags)
                if outcome.status == "failed":
                    click.echo(f"\n{uid}: not measurable: {outcome.detail}", err=True)
    click.echo(f"analysed {len(todo)} ECGs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
               + f"; {flagged} with change flags")
