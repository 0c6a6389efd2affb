"""Peewee models of the catalog, built per database so that several catalogs can live in one process.

:func:`build_models` defines fresh model classes bound to one ``peewee.Database``; nothing is bound at import
time and no class is shared between two :class:`~dicom_ecg_node.catalog.Catalog` objects (peewee's
``DatabaseProxy`` would be one process-wide slot, so two catalogs could not coexist).

Conventions
    * DICOM attributes are kept as their DICOM strings (DA ``YYYYMMDD``, TM, DT, PN with its ``=`` groups).
    * Person names also get a normalised search column (:func:`normalize_person_name`) so that
      case-insensitive matching (allowed by PS3.4 C.2.2.2.1, documented by the query layer) can use an index.
    * Every datetime column holds **naive UTC** (``TIMESTAMP`` without zone on PostgreSQL, ISO text on SQLite),
      identical on both databases; convert with ``.replace(tzinfo=UTC)`` when reading.
    * An absent Issuer of Patient ID is stored as ``""`` so that the (patient id, issuer) unique index holds
      (SQL treats NULLs as distinct).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import peewee as pw


def normalize_person_name(value: str | None) -> str | None:
    """Search form of a PN value: NFKC, case-folded, trailing empty components and padding removed.

    ``"Smith^John^^^"`` and ``"SMITH^JOHN"`` both become ``"smith^john"``; the ideographic and phonetic groups
    (after ``=``, PS3.5 6.2.1) are kept, each trimmed the same way.
    """
    if value is None:
        return None
    groups = []
    for group in unicodedata.normalize("NFKC", value).split("="):
        comps = [c.strip() for c in group.split("^")]
        while comps and comps[-1] == "":
            comps.pop()
        groups.append("^".join(comps))
    while groups and groups[-1] == "":
        groups.pop()
    return "=".join(groups).casefold()


@dataclass(frozen=True, slots=True)
class Models:
    """The model classes of one catalog database."""

    SchemaVersion: Any
    Patient: Any
    Study: Any
    Series: Any
    Instance: Any
    WaveformGroup: Any
    CartMeasurement: Any
    DemographicConflict: Any
    RemoteAE: Any

    def all(self) -> list[Any]:
        """Every model of the archive index, parents before children (creation order).

        The AE registry (:attr:`RemoteAE`) is configuration, not derived from the archive, so it is not listed:
        a reindex (which clears these tables) keeps it.
        """
        return [self.SchemaVersion, self.Patient, self.Study, self.Series, self.Instance, self.WaveformGroup,
                self.CartMeasurement, self.DemographicConflict]


def build_models(database: pw.Database) -> Models:
    """Define the catalog's model classes bound to ``database``.

    Parameters
    ----------
    database : peewee.Database
        The database the models are bound to.

    Returns
    -------
    Models
    """

    class Base(pw.Model):
        class Meta:
            legacy_table_names = False

    Base._meta.set_database(database)

    class SchemaVersion(Base):
        """One row per applied schema step."""

        version = pw.IntegerField(primary_key=True)
        applied_at = pw.DateTimeField()  # naive UTC

    class Patient(Base):
        """A patient, identified by Patient ID and Issuer of Patient ID (first values received are kept)."""

        patient_id = pw.CharField(max_length=64, index=True)
        issuer = pw.CharField(max_length=64, default="")
        patient_name = pw.TextField(null=True)
        patient_name_norm = pw.TextField(null=True, index=True)
        birth_date = pw.CharField(max_length=8, null=True)
        sex = pw.CharField(max_length=16, null=True)
        generated_id = pw.BooleanField(default=False)
        created_at = pw.DateTimeField()

        class Meta:
            indexes = ((("patient_id", "issuer"), True),)

    class Study(Base):
        """A study (Study Instance UID), attributes from the first instance received."""

        study_instance_uid = pw.CharField(max_length=64, unique=True)
        patient = pw.ForeignKeyField(Patient, backref="studies", on_delete="CASCADE", index=True)
        study_date = pw.CharField(max_length=8, null=True, index=True)
        study_time = pw.CharField(max_length=32, null=True)
        accession_number = pw.CharField(max_length=64, null=True, index=True)
        study_id = pw.CharField(max_length=64, null=True)
        study_description = pw.TextField(null=True)
        referring_physician_name = pw.TextField(null=True)
        referring_physician_name_norm = pw.TextField(null=True)
        created_at = pw.DateTimeField()

    class Series(Base):
        """A series (Series Instance UID)."""

        series_instance_uid = pw.CharField(max_length=64, unique=True)
        study = pw.ForeignKeyField(Study, backref="series", on_delete="CASCADE", index=True)
        modality = pw.CharField(max_length=16, null=True, index=True)
        series_number = pw.IntegerField(null=True)
        series_description = pw.TextField(null=True)
        series_date = pw.CharField(max_length=8, null=True)
        series_time = pw.CharField(max_length=32, null=True)
        created_at = pw.DateTimeField()

    class Instance(Base):
        """A stored SOP instance: identity, times, file and provenance."""

        sop_instance_uid = pw.CharField(max_length=64, unique=True)
        sop_class_uid = pw.CharField(max_length=64)
        series = pw.ForeignKeyField(Series, backref="instances", on_delete="CASCADE", index=True)
        instance_number = pw.IntegerField(null=True)
        # Per-instance demographics as sent (may differ from the patient row: see DemographicConflict).
        patient_name = pw.TextField(null=True)
        patient_birth_date = pw.CharField(max_length=8, null=True)
        patient_sex = pw.CharField(max_length=16, null=True)
        acquisition_datetime = pw.CharField(max_length=64, null=True)  # the DICOM string as sent
        acquisition_utc = pw.DateTimeField(null=True, index=True)  # naive UTC
        utc_offset_minutes = pw.IntegerField(null=True)
        zone_source = pw.CharField(max_length=32, null=True)
        content_date = pw.CharField(max_length=8, null=True)
        content_time = pw.CharField(max_length=32, null=True)
        manufacturer = pw.TextField(null=True)
        model_name = pw.TextField(null=True)
        device_serial_number = pw.TextField(null=True)
        path = pw.TextField()  # relative to the data directory
        size = pw.BigIntegerField()
        sha256 = pw.CharField(max_length=64)
        transfer_syntax_uid = pw.CharField(max_length=64, null=True)
        sender_ae = pw.CharField(max_length=16, null=True, index=True)
        sender_address = pw.CharField(max_length=255, null=True)
        received_at = pw.DateTimeField()  # naive UTC
        warnings = pw.TextField(default="")  # one warning per line

    class WaveformGroup(Base):
        r"""Summary of one multiplex group (PS3.3 C.10.9.1); leads joined with ``\`` like a DICOM multi-value."""

        instance = pw.ForeignKeyField(Instance, backref="groups", on_delete="CASCADE", index=True)
        group_index = pw.IntegerField()
        label = pw.CharField(max_length=64, default="")
        sampling_frequency = pw.DoubleField()
        n_samples = pw.IntegerField()
        n_channels = pw.IntegerField()
        leads = pw.TextField(default="")
        duration_s = pw.DoubleField()
        interpretation = pw.CharField(max_length=4, null=True)
        bits_allocated = pw.IntegerField(null=True)

    class CartMeasurement(Base):
        """A numeric annotation the cart sent (PS3.3 C.10.10.1.1)."""

        instance = pw.ForeignKeyField(Instance, backref="measurements", on_delete="CASCADE", index=True)
        code_value = pw.CharField(max_length=64)
        coding_scheme = pw.CharField(max_length=64)
        code_meaning = pw.TextField()
        value = pw.DoubleField()
        units = pw.CharField(max_length=64, null=True)

    class DemographicConflict(Base):
        """A known Patient ID arrived with another name, birth date or sex (the instance keeps what it sent)."""

        patient = pw.ForeignKeyField(Patient, backref="conflicts", on_delete="CASCADE", index=True)
        sop_instance_uid = pw.CharField(max_length=64)
        attribute = pw.CharField(max_length=32)
        stored_value = pw.TextField(null=True)
        received_value = pw.TextField(null=True)
        sender_ae = pw.CharField(max_length=16, null=True)
        detected_at = pw.DateTimeField()  # naive UTC

    class RemoteAE(Base):
        """A known DICOM peer: C-MOVE destinations are looked up here by AE title (schema version 2)."""

        ae_title = pw.CharField(max_length=16, unique=True)  # stored without padding spaces (PS3.5 6.2 AE)
        host = pw.CharField(max_length=255)
        port = pw.IntegerField()
        description = pw.TextField(default="")
        created_at = pw.DateTimeField()  # naive UTC

    return Models(SchemaVersion, Patient, Study, Series, Instance, WaveformGroup, CartMeasurement,
                  DemographicConflict, RemoteAE=RemoteAE)
