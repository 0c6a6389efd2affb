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
    # Schema version 4 (access control): users of User Identity Negotiation; configuration, kept by a reindex.
    NodeUser: Any = None
    # Schema version 3 (Storage Commitment, PS3.4 J.3): transactions and their report queue; not derived from the
    # archive, so a reindex keeps them and all() does not list them.
    StorageCommitment: Any = None
    StorageCommitmentItem: Any = None
    # Schema version 6 (HL7 and worklist): configuration-like state fed by HL7, not derived from the archive,
    # so a reindex keeps it and all() does not list it.
    WorklistEntry: Any = None
    Hl7Message: Any = None
    PatientMerge: Any = None
    OutboxMessage: Any = None
    # Schema version 7 (device clocks, MPPS, reconciliation): records the node made on receipt, not re-derivable
    # from the archive files, so all() does not list them and a reindex keeps them.
    ClockObservation: Any = None
    DeviceClock: Any = None
    MppsInstance: Any = None
    MppsStep: Any = None
    MppsSeries: Any = None
    ReconcileItem: Any = None
    InstanceLink: Any = None
    # Schema version 5 (serial comparison, issue 6): the node's own measurements and change flags per ECG. Derived
    # from the archive (re-measurable), so a reindex may drop them: they cascade with their instance.
    EcgAnalysis: Any = None
    EcgChangeFlag: Any = None

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

        # Looked up through the unique (patient_id, issuer) index below, whose first column it is.
        patient_id = pw.CharField(max_length=64)
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
        """A known DICOM peer (schema version 2): C-MOVE destinations and, from version 4, who may connect."""

        ae_title = pw.CharField(max_length=16, unique=True)  # stored without padding spaces (PS3.5 6.2 AE)
        host = pw.CharField(max_length=255)
        port = pw.IntegerField()
        description = pw.TextField(default="")
        created_at = pw.DateTimeField()  # naive UTC
        # Schema version 4 (access control); lists are comma-separated text, identical on both databases.
        permissions = pw.TextField(default="echo")  # of echo,store,find,move,get,commit
        networks = pw.TextField(default="")  # CIDRs the AE may connect from; empty: any address
        username = pw.CharField(max_length=128, null=True)  # User Identity the AE must present (PS3.7 D.3.3.7)
        cert_fingerprint = pw.CharField(max_length=64, null=True)  # SHA-256 of its TLS client certificate (hex)
        move_destinations = pw.TextField(default="")  # AE titles its C-MOVEs may target; empty: any registered

    class NodeUser(Base):
        """A user of User Identity Negotiation (schema version 4): salted scrypt hash, never the password."""

        username = pw.CharField(max_length=128, unique=True)
        salt = pw.CharField(max_length=64)  # hex, 16 random bytes per user
        password_hash = pw.CharField(max_length=128)  # hex scrypt digest
        roles = pw.TextField(default="")  # comma-separated labels
        created_at = pw.DateTimeField()  # naive UTC

    # -- schema version 3: Storage Commitment Push Model transactions and their report queue (PS3.4 J.3) --------

    class StorageCommitment(Base):
        """One N-ACTION Request Storage Commitment (PS3.4 J.3.2) and the delivery of its N-EVENT-REPORT (J.3.3).

        ``state``: ``pending`` (to verify and/or report), ``reported`` (the requester answered the N-EVENT-REPORT
        with Success) or ``failed-to-report`` (every attempt failed). ``committed`` / ``failed_count`` stay
        NULL until verified. ``lease_owner`` / ``lease_until`` let one node process at a time work on a row.
        """

        transaction_uid = pw.CharField(max_length=64)
        requester_ae = pw.CharField(max_length=16, index=True)  # calling AE title, without padding
        requester_address = pw.CharField(max_length=255, default="")
        state = pw.CharField(max_length=16, default="pending", index=True)
        references = pw.IntegerField()
        committed = pw.IntegerField(null=True)
        failed_count = pw.IntegerField(null=True)
        attempts = pw.IntegerField(default=0)
        next_attempt_at = pw.DateTimeField(index=True)  # naive UTC
        received_at = pw.DateTimeField()  # naive UTC
        verified_at = pw.DateTimeField(null=True)  # naive UTC
        reported_at = pw.DateTimeField(null=True)  # naive UTC
        reported_via = pw.CharField(max_length=16, null=True)  # "association" (same) | "new-association"
        last_error = pw.TextField(default="")
        lease_owner = pw.CharField(max_length=64, null=True)
        lease_until = pw.DateTimeField(null=True)  # naive UTC

        class Meta:
            indexes = ((("requester_ae", "transaction_uid"), True),)

    class StorageCommitmentItem(Base):
        """One Referenced SOP Sequence item of a commitment request and its outcome (PS3.3 C.14.1.1 reasons)."""

        commitment = pw.ForeignKeyField(StorageCommitment, backref="items", on_delete="CASCADE", index=True)
        position = pw.IntegerField()
        sop_class_uid = pw.CharField(max_length=64)
        sop_instance_uid = pw.CharField(max_length=64)
        failure_reason = pw.IntegerField(null=True)  # NULL: committed (once the transaction is verified)

    # -- schema version 6: HL7 v2 intake, Modality Worklist, patient merges, ORU outbox -------------------------

    class WorklistEntry(Base):
        """One order's Scheduled Procedure Step (PS3.4 K.6.1; one step per order, so one row per step).

        Patient values are copied from the order's PID and kept current by ADT updates and merges.
        """

        order_key = pw.CharField(max_length=200, unique=True)  # placer order number (ORC-2), else filler (ORC-3)
        placer_order = pw.CharField(max_length=200, null=True)
        filler_order = pw.CharField(max_length=200, null=True)
        patient_id = pw.CharField(max_length=64, index=True)
        issuer = pw.CharField(max_length=64, default="")
        other_patient_ids = pw.TextField(default="")  # "id^issuer" joined with "\"
        patient_name = pw.TextField(null=True)
        patient_name_norm = pw.TextField(null=True, index=True)
        birth_date = pw.CharField(max_length=8, null=True)
        sex = pw.CharField(max_length=16, null=True)
        admission_id = pw.CharField(max_length=64, null=True)
        accession_number = pw.CharField(max_length=64, null=True, index=True)
        requested_procedure_id = pw.CharField(max_length=64, null=True)
        requested_procedure_description = pw.TextField(null=True)
        study_instance_uid = pw.CharField(max_length=64)
        referring_physician_name = pw.TextField(null=True)
        referring_physician_norm = pw.TextField(null=True)
        sps_id = pw.CharField(max_length=64, null=True)
        modality = pw.CharField(max_length=16, null=True)
        station_ae = pw.CharField(max_length=16, null=True, index=True)
        start_date = pw.CharField(max_length=8, null=True, index=True)
        start_time = pw.CharField(max_length=16, null=True)
        location = pw.TextField(null=True)
        protocol_code = pw.CharField(max_length=64, null=True)
        protocol_scheme = pw.CharField(max_length=64, null=True)
        protocol_meaning = pw.TextField(null=True)
        priority = pw.CharField(max_length=16, null=True)
        status = pw.CharField(max_length=16, default="SCHEDULED", index=True)
        created_at = pw.DateTimeField()  # naive UTC
        updated_at = pw.DateTimeField()  # naive UTC

    class Hl7Message(Base):
        """One processed HL7 message: the ACK answered, so a re-delivery gets it again (MSH-10 idempotency)."""

        sender = pw.CharField(max_length=255)  # MSH-3 "^" MSH-4
        control_id = pw.CharField(max_length=199)  # MSH-10
        message_type = pw.CharField(max_length=32)
        sha256 = pw.CharField(max_length=64)
        ack_code = pw.CharField(max_length=2)
        ack = pw.TextField()
        peer = pw.CharField(max_length=255, null=True)
        received_at = pw.DateTimeField()  # naive UTC

        class Meta:
            indexes = ((("sender", "control_id"), True),)

    class PatientMerge(Base):
        """An ADT A40 merge and what it moved, so that it can be undone."""

        prior_patient_id = pw.CharField(max_length=64, index=True)
        prior_issuer = pw.CharField(max_length=64, default="")
        surviving_patient_id = pw.CharField(max_length=64, index=True)
        surviving_issuer = pw.CharField(max_length=64, default="")
        prior_row = pw.TextField(default="")  # JSON of the prior patient row (re-created on undo)
        moved_studies = pw.TextField(default="")  # Study Instance UIDs, one per line
        moved_orders = pw.TextField(default="")  # worklist order keys, one per line
        control_id = pw.CharField(max_length=199, null=True)
        merged_at = pw.DateTimeField()  # naive UTC
        undone_at = pw.DateTimeField(null=True)  # naive UTC

    class OutboxMessage(Base):
        """An ORU^R01 result waiting for (or done with) delivery to one MLLP receiver."""

        sop_instance_uid = pw.CharField(max_length=64)
        receiver = pw.CharField(max_length=255)  # "host:port"
        status = pw.CharField(max_length=16, default="pending", index=True)  # pending | delivered | rejected
        control_id = pw.CharField(max_length=199, null=True)
        message = pw.TextField(null=True)  # built on the first attempt, then sent identically on every retry
        attempts = pw.IntegerField(default=0)
        next_attempt_at = pw.DateTimeField(index=True)  # naive UTC
        last_error = pw.TextField(default="")
        created_at = pw.DateTimeField()  # naive UTC
        delivered_at = pw.DateTimeField(null=True)  # naive UTC

        class Meta:
            indexes = ((("sop_instance_uid", "receiver"), True),)

    # -- Schema version 7: device clocks (IHE Consistent Time), MPPS (PS3.4 F.7), reconciliation -------------
    # Keyed by SOP Instance UID strings rather than foreign keys to Instance: a reindex clears and refills the
    # archive tables, and these records (receive times, cart reports, review decisions) cannot be re-derived.

    class ClockObservation(Base):
        """One stored instance's device-clock reading against the node's receive time (schema version 7)."""

        sop_instance_uid = pw.CharField(max_length=64, unique=True)
        ae_title = pw.CharField(max_length=16, index=True)
        device_serial = pw.CharField(max_length=64, default="")
        received_at = pw.DateTimeField(index=True)  # naive UTC, node clock
        creation_raw = pw.CharField(max_length=64, null=True)  # Instance Creation Date + Time as sent
        creation_utc = pw.DateTimeField(null=True)  # naive UTC, device clock
        utc_offset_minutes = pw.IntegerField(null=True)  # the device's UTC offset applied to creation_raw
        zone_source = pw.CharField(max_length=32, null=True)
        bound_s = pw.DoubleField(null=True)  # creation_utc - received_at: lower bound of the device offset
        acquisition_utc = pw.DateTimeField(null=True)  # naive UTC, device clock (as catalogued)
        acquisition_after_creation = pw.BooleanField(default=False)
        time_synchronized = pw.CharField(max_length=4, null=True)  # (0018,1800) as sent
        time_source = pw.TextField(null=True)  # (0018,1801)
        time_distribution_protocol = pw.CharField(max_length=16, null=True)  # (0018,1802)
        corrected_utc = pw.DateTimeField(null=True, index=True)  # acquisition_utc - trusted offset, naive UTC
        applied_offset_s = pw.DoubleField(null=True)

        class Meta:
            indexes = ((("ae_title", "device_serial", "received_at"), False),)

    class DeviceClock(Base):
        """The running clock estimate of one device (calling AE title + Device Serial Number)."""

        ae_title = pw.CharField(max_length=16)
        device_serial = pw.CharField(max_length=64, default="")
        offset_s = pw.DoubleField(null=True)  # device clock - node clock
        drift_s_per_day = pw.DoubleField(null=True)
        samples = pw.IntegerField(default=0)  # observations with a bound in the window
        total = pw.IntegerField(default=0)  # every observation ever
        trusted = pw.BooleanField(default=False)
        flags = pw.TextField(default="")  # comma-separated
        first_seen = pw.DateTimeField()
        last_seen = pw.DateTimeField()
        utc_offset_minutes = pw.IntegerField(null=True)  # last UTC offset the device sent
        time_synchronized = pw.CharField(max_length=4, null=True)
        time_source = pw.TextField(null=True)
        time_distribution_protocol = pw.CharField(max_length=16, null=True)
        manufacturer = pw.TextField(null=True)
        model_name = pw.TextField(null=True)

        class Meta:
            indexes = ((("ae_title", "device_serial"), True),)

    class MppsInstance(Base):
        """A Modality Performed Procedure Step SOP instance (PS3.4 F.7) as created and set by the modality."""

        sop_instance_uid = pw.CharField(max_length=64, unique=True)
        status = pw.CharField(max_length=16, index=True)  # IN PROGRESS, COMPLETED, DISCONTINUED
        calling_ae = pw.CharField(max_length=16, null=True)
        patient_id = pw.CharField(max_length=64, null=True, index=True)
        patient_name = pw.TextField(null=True)
        performed_procedure_step_id = pw.CharField(max_length=16, null=True)
        performed_station_ae = pw.CharField(max_length=16, null=True)
        modality = pw.CharField(max_length=16, null=True)
        start_date = pw.CharField(max_length=8, null=True)
        start_time = pw.CharField(max_length=32, null=True)
        end_date = pw.CharField(max_length=8, null=True)
        end_time = pw.CharField(max_length=32, null=True)
        attributes_json = pw.TextField(default="{}")  # the full attribute set (DICOM JSON, PS3.18 F.2)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

    class MppsStep(Base):
        """One Scheduled Step Attributes Sequence item of an MPPS (PS3.3 C.4.14)."""

        mpps = pw.ForeignKeyField(MppsInstance, backref="steps", on_delete="CASCADE", index=True)
        study_instance_uid = pw.CharField(max_length=64, null=True, index=True)
        accession_number = pw.CharField(max_length=64, null=True, index=True)
        requested_procedure_id = pw.CharField(max_length=64, null=True)
        scheduled_procedure_step_id = pw.CharField(max_length=64, null=True)

    class MppsSeries(Base):
        """One Performed Series Sequence item of an MPPS (PS3.3 C.4.15)."""

        mpps = pw.ForeignKeyField(MppsInstance, backref="series", on_delete="CASCADE", index=True)
        series_instance_uid = pw.CharField(max_length=64)
        sop_instance_uids = pw.TextField(default="")  # backslash-joined Referenced SOP Instance UIDs

    class ReconcileItem(Base):
        """A stored instance whose patient or order did not match: the review queue."""

        sop_instance_uid = pw.CharField(max_length=64, unique=True)
        study_instance_uid = pw.CharField(max_length=64, null=True)
        patient_id = pw.CharField(max_length=64)
        issuer = pw.CharField(max_length=64, default="")
        accession_number = pw.CharField(max_length=64, null=True)
        sender_ae = pw.CharField(max_length=16, null=True)
        status = pw.CharField(max_length=16, default="open", index=True)  # open, accepted, relinked
        score = pw.IntegerField()  # 0-100: evidence that the instance is on the right patient and order
        reasons = pw.TextField(default="")  # one reason code per line
        evidence = pw.TextField(default="{}")  # JSON
        candidate_patient_id = pw.CharField(max_length=64, null=True)
        candidate_accession = pw.CharField(max_length=64, null=True)
        created_at = pw.DateTimeField()
        resolved_at = pw.DateTimeField(null=True)
        resolved_by = pw.CharField(max_length=64, null=True)
        note = pw.TextField(null=True)
        corrected_sop_instance_uid = pw.CharField(max_length=64, null=True)

    class InstanceLink(Base):
        """IOCM-style correction: ``original`` is superseded by ``corrected``; both files and rows are kept."""

        original_sop_instance_uid = pw.CharField(max_length=64, index=True)
        corrected_sop_instance_uid = pw.CharField(max_length=64, unique=True)
        reason = pw.CharField(max_length=64)
        changes = pw.TextField(default="{}")  # JSON: attribute -> [before, after]
        actor = pw.CharField(max_length=64, null=True)
        created_at = pw.DateTimeField()

    # -- Schema version 5: the node's own ECG measurements and serial-comparison flags (issue 6) -----------------

    class EcgAnalysis(Base):
        """The node's measurements of one ECG instance and the state of its analysis (schema version 5).

        ``status``: ``running`` (claimed by ``claimed_by``), ``measured`` (measured, comparison pending),
        ``done`` (measured and compared with ``prior_sop_instance_uid``, or no prior exists) or ``failed``
        (``error`` says why). ``sha256`` is the file the row describes: an instance whose file was replaced has a
        row with another checksum and is analysed again. Instances without a row are the "to analyse" queue.
        """

        instance = pw.ForeignKeyField(Instance, backref="analysis", on_delete="CASCADE", unique=True)
        sha256 = pw.CharField(max_length=64)
        status = pw.CharField(max_length=16, index=True)
        error = pw.TextField(default="")
        claimed_by = pw.CharField(max_length=64, null=True)
        claimed_at = pw.DateTimeField(null=True)  # naive UTC
        analysed_at = pw.DateTimeField(null=True)  # naive UTC
        algorithm = pw.CharField(max_length=64, default="")
        heart_rate_bpm = pw.DoubleField(null=True)
        rr_ms = pw.DoubleField(null=True)
        pr_ms = pw.DoubleField(null=True)
        qrs_ms = pw.DoubleField(null=True)
        qt_ms = pw.DoubleField(null=True)
        qtc_ms = pw.DoubleField(null=True, index=True)
        qtc_formula = pw.CharField(max_length=16, null=True)
        qtc_bazett_ms = pw.DoubleField(null=True)
        qtc_fridericia_ms = pw.DoubleField(null=True)
        axis_deg = pw.DoubleField(null=True)
        source = pw.CharField(max_length=32, null=True)
        beats_used = pw.IntegerField(null=True)
        beats_rejected = pw.IntegerField(null=True)
        leads = pw.TextField(default="{}")  # JSON: lead -> {st_j_uv, st_j60_uv, ..., q_amplitude_uv}
        notes = pw.TextField(default="[]")  # JSON list of str
        patient_sex = pw.CharField(max_length=1, null=True)
        patient_age_years = pw.IntegerField(null=True)
        prior_sop_instance_uid = pw.CharField(max_length=64, null=True)
        compared_at = pw.DateTimeField(null=True)  # naive UTC
        n_flags = pw.IntegerField(default=0)
        not_evaluated = pw.TextField(default="{}")  # JSON: rule -> why it could not be evaluated
        sr_sop_instance_uid = pw.CharField(max_length=64, null=True)

    class EcgChangeFlag(Base):
        """One serial-comparison flag of an ECG against its prior (schema version 5)."""

        analysis = pw.ForeignKeyField(EcgAnalysis, backref="flags", on_delete="CASCADE", index=True)
        rule = pw.CharField(max_length=32, index=True)
        leads = pw.TextField(default="")  # comma-separated lead labels (-aVR for inverted aVR)
        values = pw.TextField(default="{}")  # JSON: key -> [before, after]
        threshold = pw.TextField(default="{}")  # JSON: name -> value
        source = pw.TextField(default="")
        detail = pw.TextField(default="")
        prior_sop_instance_uid = pw.CharField(max_length=64)

    return Models(SchemaVersion, Patient, Study, Series, Instance, WaveformGroup, CartMeasurement,
                  DemographicConflict, RemoteAE=RemoteAE, NodeUser=NodeUser,
                  StorageCommitment=StorageCommitment, StorageCommitmentItem=StorageCommitmentItem,
                  ClockObservation=ClockObservation, DeviceClock=DeviceClock, MppsInstance=MppsInstance,
                  MppsStep=MppsStep, MppsSeries=MppsSeries, ReconcileItem=ReconcileItem,
                  InstanceLink=InstanceLink, WorklistEntry=WorklistEntry, Hl7Message=Hl7Message,
                  PatientMerge=PatientMerge, OutboxMessage=OutboxMessage,
                  EcgAnalysis=EcgAnalysis, EcgChangeFlag=EcgChangeFlag)
