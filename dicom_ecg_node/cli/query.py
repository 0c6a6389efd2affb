"""ecg-node query commands: ``find`` (the C-FIND engine from the command line) and ``timeline`` (serial ECGs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")

#: Keys asked for at each level (the answer columns), Study Root model.
_LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies",
                "NumberOfPatientRelatedInstances"),
    "STUDY": ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
              "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "SERIES": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
               "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
              "AcquisitionDateTime"),
}


def _value(ds: Any, keyword: str) -> Any:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


@click.command()
@click.option("--patient-id", default=None, help="Patient ID (wildcards * and ? allowed).")
@click.option("--name", default=None, help="Patient's Name, case-insensitive (wildcards allowed), e.g. 'DOE^J*'.")
@click.option("--date-range", default=None, help="Study Date as YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-.")
@click.option("--accession", default=None, help="Accession Number (wildcards allowed).")
@click.option("--study-uid", default=None, help="Study Instance UID (several separated by backslashes).")
@click.option("--level", type=click.Choice(["PATIENT", "STUDY", "SERIES", "IMAGE"], case_sensitive=False),
              default="STUDY", show_default=True, help="Query/Retrieve Level of the answers.")
@click.option("--tz-offset", default=None, help="Timezone Offset From UTC (+HHMM/-HHMM) of --date-range.")
@click.option("--flag", "flag_rule", default=None,
              help="ECGs the node flagged with this serial-comparison rule (st-elevation, qtc-prolongation...).")
@click.option("--since", default=None, help="With --flag/--qtc-over: acquired on or after this date (UTC), "
              "YYYY-MM-DD or YYYYMMDD.")
@click.option("--qtc-over", type=float, default=None, help="ECGs whose QTc measured by the node exceeds MS.")
@_JSON
@node_options
@handle_errors
def find(patient_id: str | None, name: str | None, date_range: str | None, accession: str | None,
         study_uid: str | None, level: str, tz_offset: str | None, flag_rule: str | None, since: str | None,
         qtc_over: float | None, as_json: bool, config: NodeConfig) -> None:
    """Run a C-FIND query on the catalog with the node's query engine (Study Root, relational).

    Answers come in serial order (earliest UTC acquisition first), one per entity of the level. With --flag,
    --since or --qtc-over the search runs on the node's own analysis instead: one row per ECG.
    """
    if flag_rule is not None or since is not None or qtc_over is not None:
        _find_analysed(config, flag_rule, since, qtc_over, patient_id, as_json)
        return
    from pydicom.dataset import Dataset

    from dicom_ecg_node.catalog.query import PATIENT_ROOT_FIND, STUDY_ROOT_FIND
    from dicom_ecg_node.services.maintenance import open_catalog
    from dicom_ecg_node.services.query import QueryService

    level = level.upper()
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for kw in _LEVEL_KEYS[level]:
        setattr(ds, kw, None)
    given = {"PatientID": patient_id, "PatientName": name, "StudyDate": date_range, "AccessionNumber": accession,
             "StudyInstanceUID": study_uid, "TimezoneOffsetFromUTC": tz_offset}
    for kw, value in given.items():
        if value is not None:
            setattr(ds, kw, value)
    model = PATIENT_ROOT_FIND if level == "PATIENT" else STUDY_ROOT_FIND
    with open_catalog(config) as catalog:
        answers = [a for _status, a in QueryService(catalog, config.aet).find(ds, model, relational=True)]
    keys = [k for k in _LEVEL_KEYS[level]]
    rows = [{k: _value(a, k) for k in keys} for a in answers]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, keys)


def _find_analysed(config: NodeConfig, rule: str | None, since: str | None, qtc_over: float | None,
                   patient_id: str | None, as_json: bool) -> None:
    """``find --flag/--since/--qtc-over``: ECGs by the node's analysis results (two queries)."""
    from datetime import UTC

    from dicom_ecg_node.catalog.analysis import search_analyses
    from dicom_ecg_node.services.maintenance import open_catalog

    when = None
    if since is not None:
        try:
            when = datetime.strptime(since.replace("-", ""), "%Y%m%d").replace(tzinfo=UTC)
        except ValueError as exc:
            raise click.BadParameter(f"{since!r} is not YYYY-MM-DD", param_hint="--since") from exc
    with open_catalog(config) as catalog:
        found = search_analyses(catalog, rule=rule, since=when, qtc_over=qtc_over, patient_id=patient_id)
    rows = [{
        "patient_id": r.patient_id, "acquisition_utc": r.acquisition_utc.isoformat() if r.acquisition_utc else None,
        "sop_instance_uid": r.sop_instance_uid, "study_instance_uid": r.study_instance_uid,
        "hr": r.measurements.get("heart_rate_bpm"), "qrs": r.measurements.get("qrs_ms"),
        "qtc": r.measurements.get("qtc_ms"), "prior_sop_instance_uid": r.prior_sop_instance_uid,
        "flags": _flag_text(r.flags) if not as_json else [
            {"rule": f.rule, "leads": list(f.leads), "values": f.values, "threshold": f.threshold,
             "source": f.source} for f in r.flags if rule is None or f.rule == rule],
    } for r in found]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["patient_id", "acquisition_utc", "hr", "qrs", "qtc", "flags", "sop_instance_uid"])


def _flag_text(flags: Any) -> str | None:
    """Flags as ``rule[leads]`` joined with spaces (``None`` when there are none)."""
    return " ".join(f.rule + (f"[{','.join(f.leads)}]" if f.leads else "") for f in flags) or None


def _fmt_interval(seconds: float) -> str:
    days, rest = divmod(round(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours:02d}:{minutes:02d}" if days else f"{hours:02d}:{minutes:02d}"


#: Which cart measurement answers which column: by code meaning (case-insensitive) or LOINC / SCPECG code.
_MEASURES: dict[str, tuple[str, ...]] = {
    "hr": ("heart rate", "8867-4", "ventricular rate"),
    "pr": ("pr interval", "5.13.5-7"),
    "qrs": ("qrs duration", "5.13.5-9"),
    "qt": ("qt interval", "5.13.5-11"),
    "qtc": ("qtc interval", "5.10.2.5-5"),
}


def _measure(entry: Any, name: str) -> float | None:
    for code, _scheme, meaning, value, _units in entry.measurements:
        if code in _MEASURES[name] or meaning.strip().lower() in _MEASURES[name]:
            return value
    return None


@click.command()
@click.argument("patient_id")
@click.option("--issuer", default=None, help="Issuer of Patient ID (any issuer when omitted).")
@_JSON
@node_options
@handle_errors
def timeline(patient_id: str, issuer: str | None, as_json: bool, config: NodeConfig) -> None:
    """A patient's ECGs in true time order (UTC), with local and UTC times, device and cart measurements.

    The interval column is the time since the previous ECG of the patient.
    """
    from dicom_ecg_node.catalog.analysis import analyses_for
    from dicom_ecg_node.services.clocks import corrected_times, serial_key
    from dicom_ecg_node.services.maintenance import open_catalog
    from dicom_ecg_node.services.query import QueryService, local_time

    with open_catalog(config) as catalog:
        entries = QueryService(catalog, config.aet).timeline(patient_id, issuer)
        # The node's own measurements and change flags (issue 6): two more queries, whatever the number of ECGs.
        analysed = analyses_for(catalog, [e.sop_instance_uid for e in entries])
        # Device clocks: with clock_correction = "trusted", serial order uses the corrected time (shown beside).
        corrected = ({} if config.clock_correction != "trusted" else
                     corrected_times(catalog, [e.sop_instance_uid for e in entries]))
    if corrected:
        entries = sorted(entries, key=lambda e: serial_key(e.sop_instance_uid, e.acquisition_utc, corrected))
    rows: list[dict[str, Any]] = []
    previous: datetime | None = None
    for e in entries:
        local = local_time(e)
        interval = None
        when = corrected.get(e.sop_instance_uid) or e.acquisition_utc
        if when is not None and previous is not None:
            interval = (when - previous).total_seconds()
        if when is not None:
            previous = when
        device = " ".join(x for x in (e.manufacturer, e.model_name, e.device_serial_number) if x) or None
        rows.append({
            "sop_instance_uid": e.sop_instance_uid, "study_instance_uid": e.study_instance_uid,
            "acquisition_local": local.isoformat() if local else e.acquisition_datetime,
            "acquisition_utc": e.acquisition_utc.isoformat() if e.acquisition_utc else None,
            "corrected_utc": corrected[e.sop_instance_uid].isoformat() if e.sop_instance_uid in corrected else None,
            "device": device,
            "hr": _measure(e, "hr"), "pr": _measure(e, "pr"), "qrs": _measure(e, "qrs"), "qt": _measure(e, "qt"),
            "qtc": _measure(e, "qtc"),
            "interval_s": interval, "interval": None if interval is None else _fmt_interval(interval),
            **_node_columns(analysed.get(e.sop_instance_uid), as_json),
        })
    if as_json:
        echo_json([{k: v for k, v in r.items() if k != "_flags"} for r in rows])
    else:
        echo_table(rows, ["acquisition_local", "acquisition_utc", *(["corrected_utc"] if corrected else []),
                          "interval", "hr", "pr", "qrs", "qt", "qtc",
                          "node_hr", "node_qrs", "node_qtc", "changes", "device", "sop_instance_uid"])
        for row in rows:  # what changed, with leads and values, under the table
            for f in row["_flags"]:
                values = "; ".join(f"{k} {v[0]} -> {v[1]}" for k, v in f.values.items())
                click.echo(f"{row['sop_instance_uid']}: {f.rule}"
                           + (f" in {','.join(f.leads)}" if f.leads else "") + f": {values}")


def _node_columns(row: Any, as_json: bool) -> dict[str, Any]:
    """Timeline columns from the node's own analysis: HR, QRS, QTc (with formula) and the change flags."""
    if row is None:
        return {"node_hr": None, "node_qrs": None, "node_qtc": None, "analysis": None, "changes": None,
                "prior_sop_instance_uid": None, "flags": [], "_flags": ()}
    m = row.measurements
    return {
        "node_hr": m.get("heart_rate_bpm"), "node_qrs": m.get("qrs_ms"), "node_qtc": m.get("qtc_ms"),
        "node_qtc_formula": m.get("qtc_formula"), "analysis": row.status,
        "changes": _flag_text(row.flags) or ("none" if row.prior_sop_instance_uid else None),
        "prior_sop_instance_uid": row.prior_sop_instance_uid,
        "flags": [{"rule": f.rule, "leads": list(f.leads), "values": f.values, "threshold": f.threshold,
                   "source": f.source} for f in row.flags],
        "_flags": row.flags,
    }
