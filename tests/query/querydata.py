"""Helpers of the query suite: catalog records, the oracle's per-level records, identifiers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset

from dicom_ecg_node.catalog import (
    Catalog,
    GroupData,
    InstanceRecord,
    MeasurementData,
    PatientData,
    SeriesData,
    StudyData,
)
from dicom_ecg_node.catalog.query import Level, Query, matches
from dicom_ecg_node.catalog.sql import run_query
from dicom_ecg_node.services.query import QueryService

ECG12 = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG = "1.2.840.10008.5.1.4.1.1.9.1.2"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def make_record(uid: str, *, patient_id: str = "P1", name: str | None = "Doe^Jane", issuer: str = "",
                birth: str | None = "19700101", sex: str | None = "F", study: str = "1.2.9.1",
                series: str | None = None, when: datetime | None = None, modality: str = "ECG",
                sop_class: str = ECG12, accession: str | None = None, study_id: str | None = "1",
                description: str | None = None, referring: str | None = None, series_number: int | None = 1,
                instance_number: int | None = 1, study_date: str | None = None, study_time: str | None = None,
                labels: tuple[str, ...] = ("RHYTHM",), hr: float = 72.0, manufacturer: str | None = "ACME",
                ) -> InstanceRecord:
    """One instance; study date/time and Acquisition DateTime are ``when``'s local values, as a cart writes."""
    if when is not None:
        local = when
        off = local.strftime("%z")
        acq_raw = local.strftime("%Y%m%d%H%M%S") + off
        study_date = study_date or local.strftime("%Y%m%d")
        study_time = study_time or local.strftime("%H%M%S")
        offset_min = int(local.utcoffset().total_seconds() // 60) if local.utcoffset() is not None else None
    else:
        acq_raw, offset_min = None, None
    return InstanceRecord(
        patient=PatientData(patient_id, issuer, name, birth, sex),
        study=StudyData(study, study_date=study_date, study_time=study_time, accession_number=accession,
                        study_id=study_id, study_description=description, referring_physician_name=referring),
        series=SeriesData(series or f"{study}.1", modality=modality, series_number=series_number),
        sop_instance_uid=uid, sop_class_uid=sop_class, path=f"archive/{uid}.dcm", size=100,
        sha256=f"{abs(hash(uid)):064x}"[:64], received_at=datetime.now(UTC), instance_number=instance_number,
        acquisition_datetime=acq_raw, acquisition_utc=when, utc_offset_minutes=offset_min,
        zone_source="datetime" if when is not None else None,
        content_date=study_date, content_time=study_time, manufacturer=manufacturer,
        groups=tuple(GroupData(i, lab, 500.0, 5000, 12 if lab == "RHYTHM" else 8, ("I", "II"), 10.0)
                     for i, lab in enumerate(labels)),
        measurements=(MeasurementData("8867-4", "LN", "Heart rate", hr, "/min"),
                      MeasurementData("5.10.2.5-5", "SCPECG", "QTc Interval", 420.0, "ms")),
    )


def oracle_records(records: Iterable[InstanceRecord], level: Level) -> dict[Any, dict[str, Any]]:
    """Per-entity records at ``level`` built in Python from what was added (first values win, as the catalog)."""
    patients: dict[tuple[str, str], dict[str, Any]] = {}
    studies: dict[str, dict[str, Any]] = {}
    series: dict[str, dict[str, Any]] = {}
    images: dict[str, dict[str, Any]] = {}
    for r in records:
        pk = (r.patient.patient_id, r.patient.issuer)
        p = patients.setdefault(pk, {"patient_id": r.patient.patient_id, "issuer": r.patient.issuer,
                                     "patient_name": r.patient.name, "birth_date": r.patient.birth_date,
                                     "sex": r.patient.sex})
        s = studies.setdefault(r.study.study_instance_uid, {
            **p, "study_uid": r.study.study_instance_uid, "study_date": r.study.study_date,
            "study_time": r.study.study_time, "accession_number": r.study.accession_number,
            "study_id": r.study.study_id, "study_description": r.study.study_description,
            "referring_physician": r.study.referring_physician_name, "modalities": set(), "sop_classes": set(),
            "study_utc": []})
        se = series.setdefault(r.series.series_instance_uid, {
            **{k: v for k, v in s.items() if k not in ("modalities", "sop_classes", "study_utc")},
            "series_uid": r.series.series_instance_uid, "modality": r.series.modality,
            "series_number": r.series.series_number, "series_description": r.series.series_description})
        if se["modality"]:  # the series keeps its first values, as the catalog does
            s["modalities"].add(se["modality"])
        s["sop_classes"].add(r.sop_class_uid)
        utc = None if r.acquisition_utc is None else r.acquisition_utc.astimezone(UTC).replace(tzinfo=None)
        if utc is not None:
            s["study_utc"].append(utc)
        images[r.sop_instance_uid] = {
            **se, "sop_uid": r.sop_instance_uid, "sop_class": r.sop_class_uid,
            "instance_number": r.instance_number, "acquisition_datetime": r.acquisition_datetime,
            "acquisition_utc": utc, "content_date": r.content_date, "content_time": r.content_time,
            "waveform_groups": tuple({"label": g.label, "n_channels": g.n_channels, "n_samples": g.n_samples,
                                      "sampling_frequency": g.sampling_frequency} for g in r.groups)}
    for s in studies.values():
        s["modalities"] = tuple(sorted(s["modalities"]))
        s["sop_classes"] = tuple(sorted(s["sop_classes"]))
        s["study_utc"] = tuple(s["study_utc"])
    for entity in (*series.values(), *images.values()):  # study-level derived values, for relational queries
        study = studies[entity["study_uid"]]
        entity.update({k: study[k] for k in ("modalities", "sop_classes", "study_utc")})
    return {Level.PATIENT: patients, Level.STUDY: studies, Level.SERIES: series, Level.IMAGE: images}[level]


def answer_key(values: dict[str, Any], level: Level) -> Any:
    """The unique identity of an answer at ``level``."""
    if level == Level.PATIENT:
        return (values["patient_id"], values["issuer"])
    return values[{Level.STUDY: "study_uid", Level.SERIES: "series_uid", Level.IMAGE: "sop_uid"}[level]]


def identifier(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for kw, value in keys.items():
        setattr(ds, kw, value)
    return ds


def compare(catalog: Catalog, records: list[InstanceRecord], ds: Dataset, model: str, *,
            relational: bool = True) -> tuple[list[Any], set[Any]]:
    """SQL answers (in order) and the oracle's answer set for one identifier."""
    query: Query = QueryService(catalog, "ECGNODE").parse(ds, model, relational=relational).query
    sql = [answer_key(a.values, query.level) for a in run_query(catalog, query)]
    oracle = {k for k, rec in oracle_records(records, query.level).items() if matches(query.conditions, rec)}
    return sql, oracle
