"""The catalog: patients, studies, series and instances of the archive, in SQLite or PostgreSQL.

Entry point: :class:`Catalog` (``Catalog.open(url)`` connects and migrates). The write side takes an
:class:`InstanceRecord` built by the ingest service; the read side returns plain dataclasses, never models.
"""

from dicom_ecg_node.catalog.catalog import (
    SCHEMA_VERSION,
    AddResult,
    Catalog,
    CatalogStats,
    ConflictRow,
    GroupData,
    InstanceDetail,
    InstanceFile,
    InstanceRecord,
    InstanceSummary,
    MeasurementData,
    PatientData,
    PatientSummary,
    SenderTotal,
    SeriesData,
    StudyData,
    StudySummary,
)
from dicom_ecg_node.catalog.database import open_database
from dicom_ecg_node.catalog.models import Models, build_models, normalize_person_name

__all__ = [
    "SCHEMA_VERSION",
    "AddResult",
    "Catalog",
    "CatalogStats",
    "ConflictRow",
    "GroupData",
    "InstanceDetail",
    "InstanceFile",
    "InstanceRecord",
    "InstanceSummary",
    "MeasurementData",
    "Models",
    "PatientData",
    "PatientSummary",
    "SenderTotal",
    "SeriesData",
    "StudyData",
    "StudySummary",
    "build_models",
    "normalize_person_name",
    "open_database",
]
