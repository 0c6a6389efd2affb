r"""The :class:`Catalog`: schema migrations, the one-transaction instance write, and the listings the CLI needs.

Concurrency
    Readers never lock. Writers keep the transaction short: everything slow (parsing, decoding, hashing,
    ``fsync``) happens before :meth:`Catalog.add_instance` is called. On SQLite (one writer at a time) a
    :class:`~dicom_ecg_node.catalog.writerlock.SqliteWriterLock` queues the writers of every thread and worker
    process around the transaction only (a lock file hands over sooner than SQLite's sleeping busy handler), and
    ``BEGIN IMMEDIATE`` plus ``busy_timeout`` still serialise them with any other program (taking the write lock
    up front avoids the deadlock-prone read→write upgrade). PostgreSQL runs writers in parallel; races on the
    same patient, study or series are absorbed by ``INSERT ... ON CONFLICT DO NOTHING`` then ``SELECT``, a race
    on the same SOP Instance UID by the unique index (the loser retries and sees the winner's row).

    Measured and not kept: one catalog writer process committing the stores of every worker process in groups
    (the workers sent each validated record over a Unix socket and waited for its commit). It would have spared
    each transaction the page reads that another process's commit causes (SQLite drops a connection's page cache
    when it finds the database changed: on 4 associations about 35 page reads per store against 1.6 on one) and
    shared one log sync between stores. With ``storescu`` over 4 associations it stored 6% fewer ECGs per second
    with 6% more CPU per ECG (6 interleaved rounds): the groups held 1.2 to 1.7 stores on average (each sender waits
    for its answer), the round trip (pickling ~34 µs each way, two cross-process wake-ups) cost the worker about
    0.18 ms of the ~0.5 ms it saved, and the writer spent 0.52 ms per store. Savepoints per record made it worse
    still (SQLite keeps a savepoint's undo log in a temporary file: 55 page writes per record).
Durability
    SQLite runs its WAL with ``synchronous=NORMAL`` (catalog/database.py): a commit appends its frames to the log
    without waiting for the disk. A durable write (:meth:`Catalog._write`, every store) then ``fdatasync``\ s the
    log itself, after the commit and after the writer lock is released, and only then returns: the wait for the disk
    is no longer inside the one-writer-at-a-time section, so the next writer commits meanwhile and the writers'
    syncs run side by side (measured here with ``storescu`` over 4 associations and 4 worker processes: 4.9% more
    ECGs stored per second over 6 interleaved rounds, 3.3% over 8; 1 association unchanged; the storing threads
    waited for the writer lock 0.15 times per ECG instead of 0.6, with services/ingest.py's "Overlap" change). Why
    that is as durable as ``synchronous=FULL``: the log is only appended to between checkpoints, so syncing it makes
    this commit and every earlier one durable; frames are overwritten only once a checkpoint has copied them into
    the database and synced it (``NORMAL`` syncs the log before a checkpoint, the database after it and the log's
    header when the log is reused), so a sync that comes late finds the commit either still in the log or already in
    the synced database. A crash before the sync can lose the commit, but nothing was answered yet. PostgreSQL
    commits synchronously by itself.
Connections
    Each public method checks a pooled connection out for its duration (peewee connections are per thread;
    the pool hands them to whichever thread asks next).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import peewee as pw

from dicom_ecg_node.catalog.database import SQLITE_BUSY_TIMEOUT_S, is_sqlite, open_database
from dicom_ecg_node.catalog.lookupcache import LookupCache
from dicom_ecg_node.catalog.models import Models, build_models, normalize_person_name
from dicom_ecg_node.catalog.prepared import Builder, Prepared, PreparedCache
from dicom_ecg_node.catalog.writerlock import SqliteWriterLock
from dicom_ecg_node.errors import CatalogError, CommitNotDurableError

#: Latest schema version this code writes.
SCHEMA_VERSION = 9
_WRITE_ATTEMPTS = 5
#: :meth:`Catalog.refresh_statistics`: SQLite gets planner statistics once the catalog holds this many instances,
#: and again each time it has grown by this factor since the last ones.
STATS_MIN_INSTANCES = 1000
STATS_GROWTH = 2.0
#: ``PRAGMA analysis_limit``: ``ANALYZE`` samples about this many rows of each index (SQLite 3.32+; an older SQLite
#: ignores the pragma and reads them all).
STATS_ANALYSIS_LIMIT = 1000


def utc_naive(value: datetime | None) -> datetime | None:
    """The naive-UTC form stored in datetime columns (aware values are converted, naive ones taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _as_utc(value: Any) -> datetime | None:
    """A datetime column value (or SQLite aggregate string) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------------------------
# What the ingest service hands in


@dataclass(frozen=True, slots=True)
class PatientData:
    """Patient module values as sent (PS3.3 C.7.1.1)."""

    patient_id: str
    issuer: str = ""
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    generated_id: bool = False


@dataclass(frozen=True, slots=True)
class StudyData:
    """General Study module values (PS3.3 C.7.2.1)."""

    study_instance_uid: str
    study_date: str | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_id: str | None = None
    study_description: str | None = None
    referring_physician_name: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesData:
    """General Series module values (PS3.3 C.7.3.1)."""

    series_instance_uid: str
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    series_date: str | None = None
    series_time: str | None = None


@dataclass(frozen=True, slots=True)
class GroupData:
    """Summary of one multiplex group."""

    index: int
    label: str
    sampling_frequency: float
    n_samples: int
    n_channels: int
    leads: tuple[str, ...]
    duration_s: float
    interpretation: str | None = None
    bits_allocated: int | None = None


@dataclass(frozen=True, slots=True)
class MeasurementData:
    """A cart measurement (coded concept, value, UCUM units)."""

    code_value: str
    coding_scheme: str
    code_meaning: str
    value: float
    units: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """Everything one stored instance puts in the catalog, written in one transaction.

    ``acquisition_utc`` and ``received_at`` may be aware (converted) or naive UTC; ``path`` is relative to the
    data directory.
    """

    patient: PatientData
    study: StudyData
    series: SeriesData
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    size: int
    sha256: str
    received_at: datetime
    instance_number: int | None = None
    acquisition_datetime: str | None = None
    acquisition_utc: datetime | None = None
    utc_offset_minutes: int | None = None
    zone_source: str | None = None
    content_date: str | None = None
    content_time: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    device_serial_number: str | None = None
    transfer_syntax_uid: str | None = None
    sender_ae: str | None = None
    sender_address: str | None = None
    warnings: tuple[str, ...] = ()
    groups: tuple[GroupData, ...] = ()
    measurements: tuple[MeasurementData, ...] = ()


@dataclass(frozen=True, slots=True)
class AddResult:
    """Outcome of :meth:`Catalog.add_instance`.

    Attributes
    ----------
    status : {"stored", "duplicate", "replaced", "conflict"}
        ``duplicate``: the UID exists with the same SHA-256, nothing written. ``conflict``: the UID exists with
        other content and ``replace`` was false, nothing written. ``replaced``: the row now describes the new
        file; ``previous_path`` is the superseded file, which the caller deletes.
    path, sha256 : str
        The row's file and checksum after the call (the existing ones for duplicate/conflict).
    previous_path : str or None
        For ``replaced``, the old file.
    conflicts : tuple of str
        Demographic attributes that differed from the patient row (recorded in DemographicConflict).
    """

    status: Literal["stored", "duplicate", "replaced", "conflict"]
    path: str
    sha256: str
    previous_path: str | None = None
    conflicts: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------------------
# What the listings return


@dataclass(frozen=True, slots=True)
class PatientSummary:
    """A patient with its study and instance counts."""

    patient_id: str
    issuer: str
    patient_name: str | None
    birth_date: str | None
    sex: str | None
    studies: int
    instances: int


@dataclass(frozen=True, slots=True)
class StudySummary:
    """A study with its patient and counts; ``first_acquisition_utc`` is the earliest instance time."""

    study_instance_uid: str
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_description: str | None
    patient_id: str
    patient_name: str | None
    series: int
    instances: int
    first_acquisition_utc: datetime | None


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """One stored instance with its series and study identity."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    patient_id: str
    instance_number: int | None
    acquisition_datetime: str | None
    acquisition_utc: datetime | None
    utc_offset_minutes: int | None
    path: str
    size: int
    sha256: str
    transfer_syntax_uid: str | None
    sender_ae: str | None
    sender_address: str | None
    received_at: datetime
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InstanceDetail:
    """An instance with its patient values as sent, waveform groups and cart measurements."""

    summary: InstanceSummary
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    groups: tuple[GroupData, ...]
    measurements: tuple[MeasurementData, ...]


@dataclass(frozen=True, slots=True)
class SenderTotal:
    """Instances and bytes received from one AE."""

    sender_ae: str | None
    instances: int
    bytes: int


@dataclass(frozen=True, slots=True)
class CatalogStats:
    """Counts and storage totals."""

    patients: int
    studies: int
    series: int
    instances: int
    total_bytes: int
    conflicts: int
    senders: tuple[SenderTotal, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ConflictRow:
    """A recorded demographic conflict."""

    patient_id: str
    issuer: str
    sop_instance_uid: str
    attribute: str
    stored_value: str | None
    received_value: str | None
    sender_ae: str | None
    detected_at: datetime | None


@dataclass(frozen=True, slots=True)
class InstanceFile:
    """What verification needs of one instance."""

    sop_instance_uid: str
    path: str
    size: int
    sha256: str


# --------------------------------------------------------------------------------------------------------------


def _migrate_v1(models: Models, db: pw.Database) -> None:
    """Version 1: every table and index (``safe=True``: tolerant of a half-created schema)."""
    db.create_tables([m for m in models.all() if m is not models.SchemaVersion], safe=True)


def _migrate_v2(models: Models, db: pw.Database) -> None:
    """Version 2: the AE registry (``remote_ae``), where C-MOVE destinations are looked up."""
    db.create_tables([models.RemoteAE], safe=True)


#: version → step (e.g. ``playhouse.migrate`` add_column calls). Version 3 is reserved for the query engine.
MIGRATIONS: dict[int, Callable[[Models, pw.Database], None]] = {1: _migrate_v1, 2: _migrate_v2}


def _migrate_v3(models: Models, db: pw.Database) -> None:
    """Version 3: Storage Commitment transactions and their report queue (PS3.4 J.3)."""
    db.create_tables([models.StorageCommitment, models.StorageCommitmentItem], safe=True)


MIGRATIONS[3] = _migrate_v3


def _migrate_v4(models: Models, db: pw.Database) -> None:
    """Version 4: access control: per-AE permissions, networks, username, certificate; the user table.

    Columns are added only where missing: a database created at version 2 by this code already has them (its
    ``create_tables`` used today's model), an older one gets them with their defaults (``echo`` only).
    """
    from playhouse.migrate import SchemaMigrator, migrate

    table = models.RemoteAE._meta.table_name
    present = {c.name for c in db.get_columns(table)}
    fields = models.RemoteAE._meta.fields
    missing = [name for name in ("permissions", "networks", "username", "cert_fingerprint", "move_destinations")
               if name not in present]
    if missing:
        migrator = SchemaMigrator.from_database(db)
        migrate(*(migrator.add_column(table, name, fields[name]) for name in missing))
    db.create_tables([models.NodeUser], safe=True)


MIGRATIONS[4] = _migrate_v4


def _migrate_v5(models: Models, db: pw.Database) -> None:
    """Version 5: the node's own ECG measurements and serial-comparison flags (issue 6); new tables only."""
    db.create_tables([models.EcgAnalysis, models.EcgChangeFlag], safe=True)


MIGRATIONS[5] = _migrate_v5


def _migrate_v6(models: Models, db: pw.Database) -> None:
    """Version 6: HL7 v2 intake and the Modality Worklist (worklist entries, HL7 message log, merges, outbox)."""
    db.create_tables([models.WorklistEntry, models.Hl7Message, models.PatientMerge, models.OutboxMessage], safe=True)


MIGRATIONS[6] = _migrate_v6


def _migrate_v7(models: Models, db: pw.Database) -> None:
    """Version 7: device clock observations and estimates, MPPS instances, reconciliation queue and re-links."""
    db.create_tables([models.ClockObservation, models.DeviceClock, models.MppsInstance, models.MppsStep,
                      models.MppsSeries, models.ReconcileItem, models.InstanceLink], safe=True)


MIGRATIONS[7] = _migrate_v7


def _migrate_v8(models: Models, db: pw.Database) -> None:
    """Version 8: the web viewer's per-user review marks (``ecg_review``, see :mod:`.viewing`)."""
    from dicom_ecg_node.catalog.viewing import migrate_v8  # late: viewing imports this module

    migrate_v8(models, db)


MIGRATIONS[8] = _migrate_v8


def _migrate_v9(models: Models, db: pw.Database) -> None:
    """Version 9: drop the index on Patient ID alone; the unique (Patient ID, Issuer) index serves those lookups.

    Its first column is Patient ID, so SQLite and PostgreSQL use it for ``patient_id = ?`` and for prefix matches
    just as well; the other index only cost a B-tree page written for every new patient. Idempotent.
    """
    db.execute_sql('DROP INDEX IF EXISTS "patient_patient_id"')


MIGRATIONS[9] = _migrate_v9


@dataclass(frozen=True, slots=True)
class _InsertSQL:
    """Parameterised SQL of the store path, written once per catalog.

    Peewee regenerates a statement's SQL on every call, which cost about half of each instance's catalog time;
    these statements are the same for every instance, so their text is built once and only values are bound.
    """

    select_instance: str
    select_patient: str
    insert_patient: str
    select_study: str
    insert_study: str
    select_series: str
    insert_series: str
    insert_instance: str
    instance_columns: tuple[str, ...]
    groups_table: str
    measurements_table: str
    param: str

    @classmethod
    def build(cls, m: Models, db: pw.Database, sqlite: bool) -> _InsertSQL:
        """Write the statements for ``m``'s tables in ``db``'s dialect."""
        p = db.param

        def q(name: str) -> str:  # a standard SQL quoted identifier, the same on SQLite and PostgreSQL
            return '"' + name.replace('"', '""') + '"'

        def t(model: Any) -> str:
            return q(model._meta.table_name)

        def insert_ignore(model: Any, columns: list[str], returning: bool = False) -> str:
            cols = ", ".join(q(c) for c in columns)
            return (f"INSERT INTO {t(model)} ({cols}) VALUES ({', '.join([p] * len(columns))}) "
                    "ON CONFLICT DO NOTHING" + (" RETURNING id" if returning and not sqlite else ""))

        instance_columns = tuple(f.column_name for f in m.Instance._meta.sorted_fields if f.name != "id")
        # Keys of _instance_values are field names; "series" is the only one whose column name differs.
        insert_instance = (f"INSERT INTO {t(m.Instance)} ({', '.join(q(c) for c in instance_columns)}) "
                           f"VALUES ({', '.join([p] * len(instance_columns))})" + ("" if sqlite else " RETURNING id"))
        # PostgreSQL: lock an existing row so that two concurrent replaces of one UID serialise.
        lock = "" if sqlite else " FOR UPDATE"
        return cls(
            select_instance=f"SELECT id, sha256, path FROM {t(m.Instance)} WHERE sop_instance_uid = {p}{lock}",
            select_patient=(f"SELECT id, patient_name, patient_name_norm, birth_date, sex FROM {t(m.Patient)} "
                            f"WHERE patient_id = {p} AND issuer = {p}"),
            insert_patient=insert_ignore(m.Patient, ["patient_id", "issuer", "patient_name", "patient_name_norm",
                                                     "birth_date", "sex", "generated_id", "created_at"],
                                          returning=True),
            select_study=f"SELECT id FROM {t(m.Study)} WHERE study_instance_uid = {p}",
            insert_study=insert_ignore(m.Study, [
                "study_instance_uid", "patient_id", "study_date", "study_time", "accession_number", "study_id",
                "study_description", "referring_physician_name", "referring_physician_name_norm", "created_at"],
                returning=True),
            select_series=f"SELECT id FROM {t(m.Series)} WHERE series_instance_uid = {p}",
            insert_series=insert_ignore(m.Series, [
                "series_instance_uid", "study_id", "modality", "series_number", "series_description",
                "series_date", "series_time", "created_at"], returning=True),
            insert_instance=insert_instance,
            instance_columns=tuple("series" if c == "series_id" else c for c in instance_columns),
            groups_table=t(m.WaveformGroup),
            measurements_table=t(m.CartMeasurement),
            param=p,
        )

    def insert_groups(self, n: int) -> str:
        """A multi-row insert of ``n`` waveform group summaries."""
        row = "(" + ", ".join([self.param] * 10) + ")"
        return (f"INSERT INTO {self.groups_table} (instance_id, group_index, label, sampling_frequency, n_samples, "
                f"n_channels, leads, duration_s, interpretation, bits_allocated) VALUES {', '.join([row] * n)}")

    def insert_measurements(self, n: int) -> str:
        """A multi-row insert of ``n`` cart measurements."""
        row = "(" + ", ".join([self.param] * 6) + ")"
        return (f"INSERT INTO {self.measurements_table} (instance_id, code_value, coding_scheme, code_meaning, "
                f"value, units) VALUES {', '.join([row] * n)}")


class Catalog:
    """The catalog database of one node.

    Parameters
    ----------
    url : str
        ``sqlite:///PATH`` or ``postgresql://...`` (see :func:`~dicom_ecg_node.catalog.database.open_database`).

    Notes
    -----
    Model classes are built per instance (:func:`~dicom_ecg_node.catalog.models.build_models`), so several
    catalogs can be open in one process. Call :meth:`migrate` once before use and :meth:`close` at the end.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = open_database(url)
        self.models = build_models(self.db)
        self.sqlite = is_sqlite(self.db)
        # Queues the writers of every thread and process on SQLite (catalog/writerlock.py); PostgreSQL needs none.
        self._writer_lock = SqliteWriterLock(self.db.database, SQLITE_BUSY_TIMEOUT_S) if self.sqlite else None
        self._write_lock: contextlib.AbstractContextManager[Any] = self._writer_lock or contextlib.nullcontext()
        self._insert_sql: _InsertSQL | None = None
        self._prepared = PreparedCache(self.db)  # other per-store statements (catalog/prepared.py)
        #: Registered AEs as the access policy reads them per association (catalog/lookupcache.py).
        self.registry_cache = LookupCache()

    @classmethod
    def open(cls, url: str) -> Catalog:
        """Open ``url`` and bring its schema up to date (:meth:`migrate`)."""
        catalog = cls(url)
        try:
            catalog.migrate()
        except BaseException:
            catalog.close()
            raise
        return catalog

    def close(self) -> None:
        """Close every pooled connection (and the writer lock file)."""
        with contextlib.suppress(pw.PeeweeException):
            self.db.close_all()
        if self._writer_lock is not None:
            self._writer_lock.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[None]:
        try:
            with self.db.connection_context():
                yield
        except pw.PeeweeException as exc:
            raise CatalogError(f"catalog database: {exc}") from exc

    @contextlib.contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[None]:
        """A serialised write transaction (see the module notes).

        Durable by default: on SQLite the log is synced once the transaction has committed and the writer lock is
        released (module notes, "Durability"); a failing sync raises :class:`CommitNotDurableError`.
        ``durable=False`` is for rows the node can derive again from durable ones (work the dispatcher catches
        up): the commit does not wait for the disk. SQLite then skips that sync and PostgreSQL commits with
        ``synchronous_commit = off``; both keep the log in commit order, so a power loss can only drop the newest
        such commits, never corrupt the catalog or a durable commit made before them. The next durable commit
        makes everything before it durable as well.
        """
        with self._write_lock, self._connection():
            txn = self.db.atomic(lock_type="IMMEDIATE") if self.sqlite else self.db.atomic()
            with txn:
                if not durable and not self.sqlite:
                    self.db.execute_sql("SET LOCAL synchronous_commit = off")
                yield
        if durable and self.sqlite:
            self._sync_log()

    def _sync_log(self) -> None:
        """``fdatasync`` SQLite's write-ahead log, making every commit so far durable (module notes, "Durability").

        The log is opened by name each time: SQLite removes it when the last connection closes (after a
        checkpoint that synced the database), and a descriptor kept open would then sync a deleted file. No log
        at all is that case: there is nothing left to sync.

        Raises
        ------
        CommitNotDurableError
            The sync failed (``EIO``, ``ENOSPC``...); what was committed stays visible.
        """
        try:
            fd = os.open(f"{self.db.database}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CommitNotDurableError(f"catalog log: {exc.strerror or exc}") from exc
        try:
            os.fdatasync(fd)
        except OSError as exc:
            raise CommitNotDurableError(f"catalog log not synced to disk: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    # -- schema ------------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version of the database (0 when empty)."""
        with self._connection():
            if not self.models.SchemaVersion.table_exists():
                return 0
            return int(self.models.SchemaVersion.select(pw.fn.MAX(self.models.SchemaVersion.version)).scalar()
                       or 0)

    def migrate(self) -> int:
        """Create or upgrade the schema to :data:`SCHEMA_VERSION`; returns the version reached.

        Each step runs in the same transaction as its SchemaVersion row. Concurrent starters are serialised by
        ``BEGIN IMMEDIATE`` (SQLite) or a transaction-scoped advisory lock (PostgreSQL).

        Raises
        ------
        CatalogError
            The database is unreachable, or its schema is newer than this software.
        """
        sv = self.models.SchemaVersion
        with self._write():
            if not self.sqlite:
                self.db.execute_sql("SELECT pg_advisory_xact_lock(7369221)")  # arbitrary, fixed key
            sv.create_table(safe=True)
            current = int(sv.select(pw.fn.MAX(sv.version)).scalar() or 0)
            if current > SCHEMA_VERSION:
                raise CatalogError(f"catalog schema version {current} is newer than this software "
                                   f"({SCHEMA_VERSION}); upgrade dicom-ecg-node")
            # Every step not yet recorded, in version order: a step added below the latest applied version (steps
            # developed in parallel) is still applied; each step is idempotent (``safe=True`` / column checks).
            applied = {int(v) for (v,) in sv.select(sv.version).tuples()}
            for version in sorted(MIGRATIONS):
                if version not in applied:
                    MIGRATIONS[version](self.models, self.db)
                    sv.insert(version=version, applied_at=_now()).execute()
                    current = max(current, version)
        return current

    # -- writes ------------------------------------------------------------------------------------------------

    def add_instance(self, record: InstanceRecord, *, replace: bool = False,
                     before_commit: Callable[[], object] | None = None, absent: bool = False) -> AddResult:
        """Insert patient/study/series/instance + groups + measurements in one transaction.

        Parameters
        ----------
        record : InstanceRecord
            The values to store (file already durable at ``record.path``).
        replace : bool
            When the SOP Instance UID exists with other content, point its row at the new file (status
            ``replaced``) instead of answering ``conflict``.
        before_commit : callable, optional
            Called once the rows are written, before the commit, when the result is ``stored`` or ``replaced``:
            what the row needs before it may be committed (the file's final name made durable, on another thread
            meanwhile). An exception it raises rolls the transaction back and propagates.
        absent : bool
            The caller has just looked the SOP Instance UID up and found nothing: the transaction does not look
            again. Should a concurrent writer have added it since, the instance's unique key refuses the insert and
            the transaction is retried, looking this time.

        Returns
        -------
        AddResult

        Raises
        ------
        CatalogError
            The database failed (the transaction was rolled back: nothing of ``record`` is stored).
        """
        last: Exception | None = None
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._write():
                    result = self._add(record, replace, look=not absent or attempt > 0)
                    if before_commit is not None and result.status in ("stored", "replaced"):
                        before_commit()
                    return result
            except pw.IntegrityError as exc:
                # A concurrent writer inserted the same UID first; retry so that we see its committed row.
                last = exc
            except CatalogError as exc:
                if isinstance(exc.__cause__, pw.IntegrityError):
                    last = exc.__cause__
                    continue
                raise
        raise CatalogError(f"catalog write for {record.sop_instance_uid} kept conflicting: {last}") from last

    def _sql(self) -> _InsertSQL:
        """The hot path's SQL text, built once per catalog (peewee would regenerate it on every call)."""
        if self._insert_sql is None:
            self._insert_sql = _InsertSQL.build(self.models, self.db, self.sqlite)
        return self._insert_sql

    def prepared(self, key: str, build: Builder) -> Prepared:
        """A statement of this catalog compiled once (see :mod:`dicom_ecg_node.catalog.prepared`).

        Parameters
        ----------
        key : str
            Names the statement among this catalog's (the same key always means the same statement).
        build : callable
            ``build(p)`` returns the peewee query, ``p(name)`` standing for each value bound at execution.
        """
        return self._prepared.get(key, build)

    @property
    def statement_cache(self) -> PreparedCache:
        """The compiled statements of the catalog (:meth:`prepared`; the query formatter's shapes, catalog/sql.py)."""
        return self._prepared

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        return self.db.execute_sql(sql, params).fetchone()

    def _insert_id(self, sql: str, params: tuple[Any, ...]) -> int:
        cursor = self.db.execute_sql(sql, params)
        # SQLite reports the new rowid on the cursor; PostgreSQL answers the statement's RETURNING id.
        return int(cursor.lastrowid if self.sqlite else cursor.fetchone()[0])

    def _add(self, rec: InstanceRecord, replace: bool, look: bool = True) -> AddResult:
        q = self._sql()
        existing = self._one(q.select_instance, (rec.sop_instance_uid,)) if look else None
        if existing is not None:
            existing_id, existing_sha, existing_path = existing
            if existing_sha == rec.sha256:
                return AddResult("duplicate", existing_path, existing_sha)
            if not replace:
                return AddResult("conflict", existing_path, existing_sha)
        patient_id, conflicts = self._patient(rec)
        study_id = self._study(rec, patient_id)
        series_id = self._series(rec, study_id)
        values = self._instance_values(rec, series_id)
        if existing is not None:
            previous = existing_path
            m = self.models
            m.Instance.update(**values).where(m.Instance.id == existing_id).execute()
            m.WaveformGroup.delete().where(m.WaveformGroup.instance == existing_id).execute()
            m.CartMeasurement.delete().where(m.CartMeasurement.instance == existing_id).execute()
            instance_id = existing_id
        else:
            previous = None
            instance_id = self._insert_id(q.insert_instance, tuple(values[c] for c in q.instance_columns))
        if rec.groups:
            self.db.execute_sql(q.insert_groups(len(rec.groups)), tuple(
                v for g in rec.groups
                for v in (instance_id, g.index, g.label, g.sampling_frequency, g.n_samples, g.n_channels,
                          "\\".join(g.leads), g.duration_s, g.interpretation, g.bits_allocated)))
        if rec.measurements:
            self.db.execute_sql(q.insert_measurements(len(rec.measurements)), tuple(
                v for c in rec.measurements
                for v in (instance_id, c.code_value, c.coding_scheme, c.code_meaning, c.value, c.units)))
        if conflicts:
            self.models.DemographicConflict.insert_many([
                {"patient": patient_id, "sop_instance_uid": rec.sop_instance_uid, "attribute": attr,
                 "stored_value": stored, "received_value": received, "sender_ae": rec.sender_ae,
                 "detected_at": _now()}
                for attr, stored, received in conflicts]).execute()
        return AddResult("replaced" if previous else "stored", rec.path, rec.sha256, previous,
                         tuple(c[0] for c in conflicts))

    def _patient(self, rec: InstanceRecord) -> tuple[int, list[tuple[str, str | None, str | None]]]:
        p, q = rec.patient, self._sql()
        key = (p.patient_id, p.issuer)
        row = self._one(q.select_patient, key)
        if row is None:
            # ON CONFLICT DO NOTHING: a concurrent writer may create the same patient first, and only then is its
            # row read back (and compared); a row this insert made holds the record's own values.
            new_id = self._inserted_id(self.db.execute_sql(q.insert_patient, (
                p.patient_id, p.issuer, p.name, normalize_person_name(p.name), p.birth_date, p.sex, p.generated_id,
                _now())))
            if new_id is not None:
                return new_id, []
            row = self._one(q.select_patient, key)
            if row is None:
                raise CatalogError(f"patient {p.patient_id!r} vanished during its insert")
        patient_id, stored_name, stored_norm, stored_birth, stored_sex = row
        conflicts: list[tuple[str, str | None, str | None]] = []
        # Only a value present on both sides can conflict; case/padding differences in names do not count.
        if p.name and stored_name and normalize_person_name(p.name) != stored_norm:
            conflicts.append(("PatientName", stored_name, p.name))
        if p.birth_date and stored_birth and p.birth_date != stored_birth:
            conflicts.append(("PatientBirthDate", stored_birth, p.birth_date))
        if p.sex and stored_sex and p.sex != stored_sex:
            conflicts.append(("PatientSex", stored_sex, p.sex))
        return int(patient_id), conflicts

    def _study(self, rec: InstanceRecord, patient_id: int) -> int:
        s, q = rec.study, self._sql()
        return self._find_or_insert(q.select_study, (s.study_instance_uid,), q.insert_study, (
            s.study_instance_uid, patient_id, s.study_date, s.study_time, s.accession_number, s.study_id,
            s.study_description, s.referring_physician_name, normalize_person_name(s.referring_physician_name),
            _now()), f"study {s.study_instance_uid}")

    def _series(self, rec: InstanceRecord, study_id: int) -> int:
        s, q = rec.series, self._sql()
        return self._find_or_insert(q.select_series, (s.series_instance_uid,), q.insert_series, (
            s.series_instance_uid, study_id, s.modality, s.series_number, s.series_description, s.series_date,
            s.series_time, _now()), f"series {s.series_instance_uid}")

    def _find_or_insert(self, select: str, key: tuple[Any, ...], insert: str, values: tuple[Any, ...],
                        what: str) -> int:
        """The id of the row ``select`` finds, else of the row ``insert`` (``ON CONFLICT DO NOTHING``) adds.

        The new id comes from the insert itself (SQLite's ``lastrowid``, PostgreSQL's ``RETURNING id``); only when
        a concurrent writer inserted the row first is it read back.
        """
        row = self._one(select, key)
        if row is not None:
            return int(row[0])
        new_id = self._inserted_id(self.db.execute_sql(insert, values))
        if new_id is not None:
            return new_id
        row = self._one(select, key)
        if row is None:
            raise CatalogError(f"{what} vanished during its insert")
        return int(row[0])

    def _inserted_id(self, cursor: Any) -> int | None:
        """The id of the row an ``INSERT ... ON CONFLICT DO NOTHING`` added, ``None`` when it added none."""
        if self.sqlite:
            return int(cursor.lastrowid) if cursor.rowcount == 1 and cursor.lastrowid else None
        inserted = cursor.fetchone()  # RETURNING id: no row when the conflict left the insert out
        return None if inserted is None else int(inserted[0])

    @staticmethod
    def _instance_values(rec: InstanceRecord, series_id: int) -> dict[str, Any]:
        return {
            "sop_instance_uid": rec.sop_instance_uid, "sop_class_uid": rec.sop_class_uid, "series": series_id,
            "instance_number": rec.instance_number, "patient_name": rec.patient.name,
            "patient_birth_date": rec.patient.birth_date, "patient_sex": rec.patient.sex,
            "acquisition_datetime": rec.acquisition_datetime, "acquisition_utc": utc_naive(rec.acquisition_utc),
            "utc_offset_minutes": rec.utc_offset_minutes, "zone_source": rec.zone_source,
            "content_date": rec.content_date, "content_time": rec.content_time,
            "manufacturer": rec.manufacturer, "model_name": rec.model_name,
            "device_serial_number": rec.device_serial_number, "path": rec.path, "size": rec.size,
            "sha256": rec.sha256, "transfer_syntax_uid": rec.transfer_syntax_uid, "sender_ae": rec.sender_ae,
            "sender_address": rec.sender_address, "received_at": utc_naive(rec.received_at),
            "warnings": "\n".join(rec.warnings),
        }

    def remove_instance(self, sop_instance_uid: str) -> str | None:
        """Delete an instance row (and its groups and measurements); returns its file path, or ``None``.

        Series, studies and patients left empty are deleted too.
        """
        m = self.models
        with self._write():
            row = m.Instance.get_or_none(m.Instance.sop_instance_uid == sop_instance_uid)
            if row is None:
                return None
            series_id = row.series_id
            row.delete_instance(recursive=True)
            self._prune(series_id)
            return str(row.path)

    def _prune(self, series_id: int) -> None:
        m = self.models
        series = m.Series.get_or_none(m.Series.id == series_id)
        if series is None or m.Instance.select().where(m.Instance.series == series_id).exists():
            return
        study_id = series.study_id
        series.delete_instance()
        if m.Series.select().where(m.Series.study == study_id).exists():
            return
        study = m.Study.get(m.Study.id == study_id)
        patient_id = study.patient_id
        study.delete_instance()
        if not m.Study.select().where(m.Study.patient == patient_id).exists():
            m.DemographicConflict.delete().where(m.DemographicConflict.patient == patient_id).execute()
            m.Patient.delete().where(m.Patient.id == patient_id).execute()

    def clear(self) -> None:
        """Delete every row (not the schema); used by a full reindex."""
        m = self.models
        with self._write():
            for model in reversed(m.all()):
                if model is not m.SchemaVersion:
                    model.delete().execute()

    # -- reads -------------------------------------------------------------------------------------------------

    def list_patients(self) -> list[PatientSummary]:
        """Every patient with study and instance counts (one query), ordered by Patient ID."""
        m = self.models
        P, S, Se, I = m.Patient, m.Study, m.Series, m.Instance  # noqa: N806, E741
        query = (P.select(P.patient_id, P.issuer, P.patient_name, P.birth_date, P.sex,
                          pw.fn.COUNT(S.id.distinct()).alias("n_studies"),
                          pw.fn.COUNT(I.id).alias("n_instances"))
                 .join(S, pw.JOIN.LEFT_OUTER, on=(S.patient == P.id))
                 .join(Se, pw.JOIN.LEFT_OUTER, on=(Se.study == S.id))
                 .join(I, pw.JOIN.LEFT_OUTER, on=(I.series == Se.id))
                 .group_by(P.id).order_by(P.patient_id, P.issuer).dicts())
        with self._connection():
            return [PatientSummary(r["patient_id"], r["issuer"], r["patient_name"], r["birth_date"], r["sex"],
                                   int(r["n_studies"]), int(r["n_instances"])) for r in query]

    def list_studies(self, patient_id: str | None = None) -> list[StudySummary]:
        """Studies (optionally of one Patient ID) with counts, in one query, ordered by date then UID."""
        m = self.models
        P, S, Se, I = m.Patient, m.Study, m.Series, m.Instance  # noqa: N806, E741
        query = (S.select(S.study_instance_uid, S.study_date, S.study_time, S.accession_number,
                          S.study_description, P.patient_id, P.patient_name,
                          pw.fn.COUNT(Se.id.distinct()).alias("n_series"),
                          pw.fn.COUNT(I.id).alias("n_instances"),
                          pw.fn.MIN(I.acquisition_utc).alias("first_utc"))
                 .join(P, on=(S.patient == P.id))
                 .join_from(S, Se, pw.JOIN.LEFT_OUTER, on=(Se.study == S.id))
                 .join_from(Se, I, pw.JOIN.LEFT_OUTER, on=(I.series == Se.id))
                 .group_by(S.id, P.id).order_by(S.study_date, S.study_instance_uid).dicts())
        if patient_id is not None:
            query = query.where(P.patient_id == patient_id)
        with self._connection():
            return [StudySummary(r["study_instance_uid"], r["study_date"], r["study_time"], r["accession_number"],
                                 r["study_description"], r["patient_id"], r["patient_name"], int(r["n_series"]),
                                 int(r["n_instances"]), _as_utc(r["first_utc"])) for r in query]

    def _instance_query(self) -> Any:
        m = self.models
        P, S, Se, I = m.Patient, m.Study, m.Series, m.Instance  # noqa: N806, E741
        return (I.select(I, Se.series_instance_uid, Se.modality, S.study_instance_uid, P.patient_id)
                .join(Se, on=(I.series == Se.id)).join(S, on=(Se.study == S.id)).join(P, on=(S.patient == P.id)))

    @staticmethod
    def _summary(r: dict[str, Any]) -> InstanceSummary:
        return InstanceSummary(
            r["sop_instance_uid"], r["sop_class_uid"], r["study_instance_uid"], r["series_instance_uid"],
            r["modality"], r["patient_id"], r["instance_number"], r["acquisition_datetime"],
            _as_utc(r["acquisition_utc"]), r["utc_offset_minutes"], r["path"], int(r["size"]), r["sha256"],
            r["transfer_syntax_uid"], r["sender_ae"], r["sender_address"], _as_utc(r["received_at"]),  # type: ignore[arg-type]
            tuple(w for w in (r["warnings"] or "").split("\n") if w))

    def list_instances(self, study_instance_uid: str | None = None) -> list[InstanceSummary]:
        """Instances (optionally of one study) in one query, ordered by acquisition time then UID."""
        m = self.models
        query = self._instance_query()
        if study_instance_uid is not None:
            query = query.where(m.Study.study_instance_uid == study_instance_uid)
        query = query.order_by(m.Instance.acquisition_utc, m.Instance.sop_instance_uid).dicts()
        with self._connection():
            return [self._summary(r) for r in query]

    def get_instance(self, sop_instance_uid: str) -> InstanceDetail | None:
        """One instance with groups and measurements (three queries), or ``None`` when unknown."""
        m = self.models
        with self._connection():
            r = self._instance_query().where(m.Instance.sop_instance_uid == sop_instance_uid).dicts().first()
            if r is None:
                return None
            groups = tuple(
                GroupData(g.group_index, g.label, g.sampling_frequency, g.n_samples, g.n_channels,
                          tuple(x for x in g.leads.split("\\") if x), g.duration_s, g.interpretation,
                          g.bits_allocated)
                for g in m.WaveformGroup.select().where(m.WaveformGroup.instance == r["id"])
                .order_by(m.WaveformGroup.group_index))
            meas = tuple(
                MeasurementData(c.code_value, c.coding_scheme, c.code_meaning, c.value, c.units)
                for c in m.CartMeasurement.select().where(m.CartMeasurement.instance == r["id"])
                .order_by(m.CartMeasurement.id))
        return InstanceDetail(self._summary(r), r["patient_name"], r["patient_birth_date"], r["patient_sex"],
                              groups, meas)

    def refresh_statistics(self, *, min_instances: int = STATS_MIN_INSTANCES, growth: float = STATS_GROWTH,
                           force: bool = False) -> bool:
        """Give SQLite's query planner table statistics (``ANALYZE``) when they are missing or stale.

        Without statistics SQLite orders the joins of a STUDY-level query by its rules of thumb: a Patient Name
        wildcard query (10 answers) scanned every study, 35 ms at 100,000 instances against 1.5 ms with the
        patient name index that statistics make it choose. Statistics describe proportions, which change slowly,
        so they are refreshed only as the catalog grows, from a sample of each index (:data:`STATS_ANALYSIS_LIMIT`:
        3 ms at 100,000 instances instead of 89 ms for a full ``ANALYZE``, the same plans; the row counts it records
        are estimates). PostgreSQL's autovacuum keeps its own statistics: nothing is done there.

        Parameters
        ----------
        min_instances : int
            No statistics below this many instances (the rules of thumb suit small tables).
        growth : float
            Refresh when the instance table has grown by this factor since the last ``ANALYZE``.
        force : bool
            Analyse now whatever the sizes.

        Returns
        -------
        bool
            Whether ``ANALYZE`` ran.

        Raises
        ------
        CatalogError
        """
        if not self.sqlite:
            return False
        table = self.models.Instance._meta.table_name
        try:
            with self._connection():
                rows = int(self.db.execute_sql(f'SELECT max(rowid) FROM "{table}"').fetchone()[0] or 0)
                analysed = None
                if self.db.execute_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
                    stat = self.db.execute_sql("SELECT stat FROM sqlite_stat1 WHERE tbl = ? LIMIT 1",
                                               (table,)).fetchone()
                    analysed = int(str(stat[0]).split()[0]) if stat else None  # rows then (estimated)
            if not force and (rows < min_instances or (analysed is not None and rows < analysed * growth)):
                return False
            with self._write():
                self.db.execute_sql(f"PRAGMA analysis_limit = {int(STATS_ANALYSIS_LIMIT)}")
                self.db.execute_sql("ANALYZE")
        except pw.PeeweeException as exc:
            raise CatalogError(f"catalog statistics: {exc}") from exc
        return True

    def stats(self) -> CatalogStats:
        """Counts, total bytes and per-sender totals (a fixed number of queries)."""
        m = self.models
        with self._connection():
            counts = [model.select().count() for model in (m.Patient, m.Study, m.Series, m.Instance,
                                                           m.DemographicConflict)]
            total = m.Instance.select(pw.fn.COALESCE(pw.fn.SUM(m.Instance.size), 0)).scalar()
            senders = tuple(
                SenderTotal(r["sender_ae"], int(r["n"]), int(r["b"] or 0))
                for r in m.Instance.select(m.Instance.sender_ae, pw.fn.COUNT(m.Instance.id).alias("n"),
                                           pw.fn.SUM(m.Instance.size).alias("b"))
                .group_by(m.Instance.sender_ae).order_by(m.Instance.sender_ae).dicts())
        return CatalogStats(counts[0], counts[1], counts[2], counts[3], int(total or 0), counts[4], senders)

    def list_conflicts(self) -> list[ConflictRow]:
        """Every demographic conflict, oldest first (one query)."""
        m = self.models
        D, P = m.DemographicConflict, m.Patient  # noqa: N806
        query = (D.select(D, P.patient_id, P.issuer).join(P, on=(D.patient == P.id))
                 .order_by(D.detected_at, D.id).dicts())
        with self._connection():
            return [ConflictRow(r["patient_id"], r["issuer"], r["sop_instance_uid"], r["attribute"],
                                r["stored_value"], r["received_value"], r["sender_ae"], _as_utc(r["detected_at"]))
                    for r in query]

    def iter_instance_files(self, batch: int = 1000) -> Iterator[InstanceFile]:
        """Every instance's UID, path, size and checksum, fetched in keyset-paginated batches.

        Batches (rather than one server-side cursor) keep no connection or transaction open between them.
        """
        I = self.models.Instance  # noqa: N806, E741
        last = 0
        while True:
            with self._connection():
                rows = list(I.select(I.id, I.sop_instance_uid, I.path, I.size, I.sha256)
                            .where(I.id > last).order_by(I.id).limit(batch).tuples())
            if not rows:
                return
            for row_id, uid, path, size, sha in rows:
                last = row_id
                yield InstanceFile(uid, path, int(size), sha)

    def find_instance_file(self, sop_instance_uid: str) -> InstanceFile | None:
        """The file entry of one instance, or ``None``."""
        I = self.models.Instance  # noqa: N806, E741
        select = self.prepared("catalog.instance-file", lambda p: I.select(I.sop_instance_uid, I.path, I.size,
                                                                           I.sha256)
                               .where(I.sop_instance_uid == p("uid")).limit(1))
        with self._connection():
            row = select.one(uid=sop_instance_uid)
        return None if row is None else InstanceFile(row[0], row[1], int(row[2]), row[3])
