"""ecg-node admin commands: import, listings (patients, studies, instances), verify, reindex, quarantine, stats.

Exit statuses: 0 success; 1 the command ran but found something wrong (an object refused by ``import``, a
problem found by ``verify``); 2 an error of the node (bad configuration, unreachable catalog...).
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import EcgNodeError

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _is_part10(path: Path) -> bool:
    """Whether ``path`` starts like a DICOM Part 10 file (128-byte preamble, then ``DICM``; PS3.10 7.1)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _collect(paths: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """Files to import (named files always; files inside folders only when they look like DICOM) and skipped."""
    files: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                (files if _is_part10(f) else skipped).append(f)
        else:
            files.append(p)
    return files, skipped


def _rows(items: list[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(i) for i in items]


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@_JSON
@node_options
@handle_errors
def import_(paths: tuple[str, ...], as_json: bool, config: NodeConfig) -> None:
    """Store DICOM files and folders (recursively) as if received over the network.

    Each file goes through the same validation, archive and catalog steps as a C-STORE (sender AE "IMPORT").
    Files inside folders that do not start like DICOM Part 10 are skipped; refused objects are quarantined.
    Exit status 1 when anything was refused.
    """
    from dicom_ecg_node.services.audit import AuditLog
    from dicom_ecg_node.services.ingest import IngestService

    files, skipped = _collect(paths)
    counts: Counter[str] = Counter()
    refused: list[dict[str, str]] = []
    stored: list[tuple[str, str]] = []  # (study, instance) for the audit trail
    with IngestService.open(config) as service, \
            click.progressbar(files, label="Importing", file=sys.stderr, show_pos=True) as bar:
        for f in bar:
            try:
                outcome = service.store(f.read_bytes(), sender_ae="IMPORT", sender_address="local")
            except OSError as exc:
                refused.append({"file": str(f), "error": "OSError", "reason": exc.strerror or str(exc)})
            except EcgNodeError as exc:
                refused.append({"file": str(f), "error": type(exc).__name__, "reason": str(exc)})
            else:
                counts[outcome.status] += 1
                stored.append((outcome.study_instance_uid, outcome.sop_instance_uid))
    AuditLog.for_config(config).record(
        "admin", outcome="success" if not refused else "partial", address="local",
        study_uids=sorted({s for s, _ in stored}), sop_instance_uids=[i for _, i in stored],
        detail={"action": "import", "paths": list(paths), **dict(counts), "refused": len(refused)})
    summary = {"stored": counts["stored"], "duplicate": counts["duplicate"], "replaced": counts["replaced"],
               "refused": len(refused), "skipped": len(skipped), "refusals": refused}
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"stored {summary['stored']}, duplicate {summary['duplicate']}, replaced {summary['replaced']}, "
                   f"refused {summary['refused']}, skipped (not DICOM) {summary['skipped']}")
        for r in refused:
            click.echo(f"refused {r['file']}: {r['error']}: {r['reason']}")
    if refused:
        sys.exit(1)


@click.command()
@_JSON
@node_options
@handle_errors
def patients(as_json: bool, config: NodeConfig) -> None:
    """List patients with their numbers of studies and instances."""
    from dicom_ecg_node.services.maintenance import open_catalog

    with open_catalog(config) as catalog:
        rows = _rows(catalog.list_patients())
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["patient_id", "issuer", "patient_name", "birth_date", "sex", "studies", "instances"])


@click.command()
@click.option("--patient", "patient_id", default=None, help="Only the studies of this Patient ID.")
@_JSON
@node_options
@handle_errors
def studies(patient_id: str | None, as_json: bool, config: NodeConfig) -> None:
    """List studies (optionally of one patient) with their numbers of series and instances."""
    from dicom_ecg_node.services.maintenance import open_catalog

    with open_catalog(config) as catalog:
        rows = _rows(catalog.list_studies(patient_id))
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["study_instance_uid", "study_date", "study_time", "accession_number", "patient_id",
                          "series", "instances"])


@click.command()
@click.option("--study", "study_uid", default=None, help="Only the instances of this Study Instance UID.")
@_JSON
@node_options
@handle_errors
def instances(study_uid: str | None, as_json: bool, config: NodeConfig) -> None:
    """List stored instances (optionally of one study), ordered by acquisition time."""
    from dicom_ecg_node.services.maintenance import open_catalog

    with open_catalog(config) as catalog:
        rows = _rows(catalog.list_instances(study_uid))
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["sop_instance_uid", "modality", "acquisition_utc", "size", "sender_ae", "path"])


@click.command()
@_JSON
@node_options
@handle_errors
def verify(as_json: bool, config: NodeConfig) -> None:
    """Re-hash every archived file against the catalog; report missing, corrupt and orphan files.

    Exit status 1 when any problem is found.
    """
    from dicom_ecg_node.services.maintenance import verify as run_verify

    report = run_verify(config)
    if as_json:
        echo_json({"checked": report.checked, "intact": report.intact, "ok": report.ok,
                   "problems": _rows(report.problems)})
    else:
        click.echo(f"checked {report.checked}, intact {report.intact}, problems {len(report.problems)}")
        if report.problems:
            echo_table(_rows(report.problems), ["kind", "path", "sop_instance_uid", "detail"])
    if not report.ok:
        sys.exit(1)


@click.command()
@click.option("--full", is_flag=True, help="Delete every catalog row first (a lost database) and index all files.")
@_JSON
@node_options
@handle_errors
def reindex(full: bool, as_json: bool, config: NodeConfig) -> None:
    """Rebuild the catalog from the archive.

    Rows of missing files are deleted, corrupt files are quarantined, files without a row are indexed.
    """
    from dicom_ecg_node.services.audit import AuditLog
    from dicom_ecg_node.services.maintenance import reindex as run_reindex

    report = run_reindex(config, full=full)
    AuditLog.for_config(config).record(
        "admin", address="local",
        detail={"action": "reindex", "full": full, "indexed": len(report.indexed),
                "rows_removed": len(report.removed_rows), "quarantined": len(report.quarantined)})
    if as_json:
        echo_json(dataclasses.asdict(report))
        return
    click.echo(f"indexed {len(report.indexed)}, unchanged {report.unchanged}, rows removed "
               f"{len(report.removed_rows)}, duplicate copies removed {len(report.removed_copies)}, quarantined "
               f"{len(report.quarantined)}")
    for path, why in report.quarantined:
        click.echo(f"quarantined {path}: {why}")


@click.command()
@_JSON
@node_options
@handle_errors
def quarantine(as_json: bool, config: NodeConfig) -> None:
    """List refused objects kept in the quarantine folder, with who sent them and why they were refused."""
    from dicom_ecg_node.services.maintenance import list_quarantine

    rows = [{**e.reason, "file": str(e.path)} for e in list_quarantine(config)]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["received_at", "sender_ae", "sender_address", "error", "comment", "file"])


@click.command()
@_JSON
@node_options
@handle_errors
def conflicts(as_json: bool, config: NodeConfig) -> None:
    """List demographic conflicts: a known Patient ID received with another name, birth date or sex."""
    from dicom_ecg_node.services.maintenance import list_conflicts

    rows = _rows(list_conflicts(config))
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["patient_id", "attribute", "stored_value", "received_value", "sop_instance_uid",
                          "sender_ae", "detected_at"])


@click.command()
@_JSON
@node_options
@handle_errors
def stats(as_json: bool, config: NodeConfig) -> None:
    """Show counts, storage used, quarantine size and per-sender totals."""
    from dicom_ecg_node.services.maintenance import stats as run_stats

    s = run_stats(config)
    c = s.catalog
    if as_json:
        echo_json({**dataclasses.asdict(c), "quarantined": s.quarantined})
        return
    click.echo(f"patients {c.patients}, studies {c.studies}, series {c.series}, instances {c.instances}")
    click.echo(f"stored bytes {c.total_bytes}, quarantined {s.quarantined}, demographic conflicts {c.conflicts}")
    echo_table(_rows(list(c.senders)), ["sender_ae", "instances", "bytes"])
