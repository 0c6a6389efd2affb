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
@_JSON
@node_options
@handle_errors
def find(patient_id: str | None, name: str | None, date_range: str | None, accession: str | None,
         study_uid: str | None, level: str, tz_offset: str | None, as_json: bool, config: NodeConfig) -> None:
    """Run a C-FIND query on the catalog with the node's query engine (Study Root, relational).

    Answers come in serial order (earliest UTC acquisition first), one per entity of the level.
    """
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
    from dicom_ecg_node.services.maintenance import open_catalog
    from dicom_ecg_node.services.query import QueryService, local_time

    with open_catalog(config) as catalog:
        entries = QueryService(catalog, config.aet).timeline(patient_id, issuer)
    rows: list[dict[str, Any]] = []
    previous: datetime | None = None
    for e in entries:
        local = local_time(e)
        interval = None
        if e.acquisition_utc is not None and previous is not None:
            interval = (e.acquisition_utc - previous).total_seconds()
        if e.acquisition_utc is not None:
            previous = e.acquisition_utc
        device = " ".join(x for x in (e.manufacturer, e.model_name, e.device_serial_number) if x) or None
        rows.append({
            "sop_instance_uid": e.sop_instance_uid, "study_instance_uid": e.study_instance_uid,
            "acquisition_local": local.isoformat() if local else e.acquisition_datetime,
            "acquisition_utc": e.acquisition_utc.isoformat() if e.acquisition_utc else None,
            "device": device,
            "hr": _measure(e, "hr"), "pr": _measure(e, "pr"), "qrs": _measure(e, "qrs"), "qt": _measure(e, "qt"),
            "qtc": _measure(e, "qtc"),
            "interval_s": interval, "interval": None if interval is None else _fmt_interval(interval),
        })
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["acquisition_local", "acquisition_utc", "interval", "hr", "pr", "qrs", "qt", "qtc",
                          "device", "sop_instance_uid"])
