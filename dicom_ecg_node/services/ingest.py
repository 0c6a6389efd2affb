r"""The ingest use case: validate → archive durably → catalog in one transaction → only then report success.

Shared by the network C-STORE handler and ``ecg-node import``. The C-STORE contract (PS3.4 B.2.3) is that a
Success status means the object is stored; therefore :meth:`IngestService.store` returns only after the file
is ``fsync``\ ed and the catalog row committed, and raises otherwise (the network edge maps the error to a
DIMSE status).

Crash safety
    The order is: write + fsync the file under a fresh name → commit the row. A crash before the commit leaves,
    at worst, a file without a row (an *orphan*) or a temporary file. The sender was never told Success, so it
    will re-send; ``verify`` reports orphans and ``reindex`` indexes (or quarantines) them, and
    :meth:`IngestService.open` removes stale temporary files. A crash after the commit leaves a stored, indexed
    instance. Nothing else is possible.
Overlap
    For a C-STORE (the request names the SOP Instance UID) the bytes are written to ``archive/.staging`` before
    they are parsed, and their ``fsync`` runs while this thread hashes, parses and decodes them; once the object is
    valid the staged file is linked to its final name (:meth:`~dicom_ecg_node.archive.Archive.begin_place`) and
    that directory's ``fsync`` runs while the rows are written; the commit waits for it (while other stores are in
    flight it is waited for before the transaction instead: they queue for the catalog's writer lock, which is
    then held for less time). Both ``fsync``\ s run on
    the kernel's side (Linux kernel AIO, :mod:`dicom_ecg_node.archive.aio`): no thread of ours waits for the disk,
    so nothing is handed back and forth. Measured here against the helper thread below (interleaved rounds of
    1,000 ECGs), while this shared machine was slow (context switches dear): on 1 association as many ECGs/s with
    20% less node CPU per ECG (4.86 → 3.90 ms), on 4 associations 9% more ECGs/s with 11% less CPU (4.61 → 4.09
    ms); while it was fast, the same within noise (median per-round ratios 1.05 and 0.95, CPU per ECG ±2%).
    Where kernel AIO is not available (:class:`~dicom_ecg_node.archive.aio.FsyncPool`): when the caller says that
    this store is the only one the node serves (``overlap``), the ``fsync``\ s run on a helper thread (it needs
    the GIL only to start each one: when it also wrote the file, each of its calls waited for the GIL again and the
    overlap was mostly lost). Otherwise this thread does both itself, once the object is valid and before the
    transaction: with other associations at work the cores have something to do while this one waits on the disk,
    and the helper's hand-offs (a thread woken per store, the GIL passed back and forth, each a cross-CPU wake-up)
    cost more than they saved (measured here on 4 associations: 8-13% less node CPU per ECG, 4-8% more ECGs/s).
    Either way the order above holds. Nothing is staged when the catalog already holds the UID (a re-send), and a
    refused object's staged bytes are removed (never ``fsync``\ ed when it was refused before that, on this
    thread's own path). Once the answer is out (``store(after=...)``) this thread creates the staged file of a
    later store (:meth:`~dicom_ecg_node.archive.Archive.prepare_stage`), so that no store waits for a file's
    creation. On the helper instead it cost ~0.8 ms more CPU per ECG on 4 associations (measured here): a thread
    woken per store that competes for the GIL with the storing threads.
Announced stores
    A C-STORE request's command set (PS3.7 9.3.1.1) names the SOP Instance UID before its data set arrives, and
    a cart sends that data set only once it has read the object again: measured here with DCMTK ``storescu``
    about 0.3 ms later, on each ECG, with this thread idle meanwhile. The network edge calls :meth:`prepare` then:
    the catalog lookup of the UID is done in that wait instead of after the bytes arrived (1 association, 8
    interleaved rounds of 1,000 ECGs: 5% more ECGs/s, every round faster). Only an *absent* answer is used
    later: a stale one costs nothing, since the transaction's unique key still refuses a UID that a concurrent
    store committed meanwhile (then the transaction looks again), as it does for the lookup made in
    :meth:`store`. A UID found stored is looked up again at store time, so that a re-send is judged against the
    catalog as it is then. The network edge announces a store only while it serves that association alone
    (``overlap``). With other stores at work the cores have no idle time to lend, and a lookup of its own, in a
    read transaction that finds the catalog changed by the other processes and reads its pages again, cost
    ~0.12 ms of CPU per ECG on 4 associations; such a C-STORE leaves the lookup to its catalog transaction,
    which reads those index pages for its insert anyway (4 associations, 8 interleaved rounds of 1,000 ECGs:
    3.8% less node CPU per ECG, 1.8% more ECGs/s). A re-send is then found only by the transaction: its bytes
    were staged, and named, for nothing and are removed again; it is answered as before (a duplicate, or the
    conflict refused).
Unidentified patients
    With ``unidentified_patient = "accept"`` an object without Patient ID is stored under
    ``UNIDENTIFIED-<first 16 hex digits of SHA-256(Study Instance UID)>``: stable, so every object of one study
    lands on one patient, and never equal to a real ID from a cart (the prefix is reserved by this node).
Refusals
    Every refused object is kept in ``DATA_DIR/quarantine`` with a JSON reason (best effort: when the disk is
    full the quarantine cannot be written either, which is logged).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_ecg_node.archive import Archive, PendingStage, Quarantine, Staged, WriteResult, ensure_dir
from dicom_ecg_node.archive.aio import FsyncPool, KernelFsync
from dicom_ecg_node.catalog import (
    Catalog,
    GroupData,
    InstanceFile,
    InstanceRecord,
    MeasurementData,
    PatientData,
    SeriesData,
    StudyData,
)
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import (
    ArchiveError,
    CatalogError,
    CommitNotDurableError,
    DatasetError,
    EcgNodeError,
    InstanceConflictError,
    UnreadableDatasetError,
    UnsupportedSOPClassError,
)
from dicom_ecg_node.waveform import (
    ChannelCache,
    FastItem,
    Recording,
    Unsupported,
    attribute_text,
    attribute_uid,
    decode,
    read_object,
)
from dicom_ecg_node.waveform._datetime import localize, parse_da_tm, parse_dt, parse_offset
from dicom_ecg_node.waveform.sopclass import STORAGE_SOP_CLASSES, is_waveform_class

logger = logging.getLogger("dicom_ecg_node.ingest")

#: PS3.5 9.1: components of digits, no leading zero unless the component is "0", separated by single dots.
_UID_RE = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*$")
#: Patient IDs this node generates under ``unidentified_patient = "accept"``.
UNIDENTIFIED_PREFIX = "UNIDENTIFIED-"


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """Result of a successful :meth:`IngestService.store`.

    Attributes
    ----------
    status : {"stored", "duplicate", "replaced"}
        ``duplicate``: the same bytes were already stored under this SOP Instance UID; nothing was written.
    sop_class_uid, sop_instance_uid, study_instance_uid : str
    path : Path
        Absolute path of the archived file (the existing one for a duplicate).
    size : int
    sha256 : str
    warnings : tuple of str
        Rules the object breaks without its meaning being in doubt (decoder and identity checks).
    elapsed_ms : float
    patient_id, patient_name : str or None
        As the object names them (``None`` when absent; a generated ID is not the object's); ``None`` in outcomes
        rebuilt from the catalog.
    """

    status: Literal["stored", "duplicate", "replaced"]
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    path: Path
    size: int
    sha256: str
    warnings: tuple[str, ...]
    elapsed_ms: float
    patient_id: str | None = None
    patient_name: str | None = None


@dataclass(frozen=True, slots=True)
class StorePreparation:
    """What :meth:`IngestService.prepare` found out about an announced C-STORE before its data set arrived.

    Attributes
    ----------
    sop_instance_uid : str
        The Affected SOP Instance UID of the request (trailing padding removed).
    absent : bool
        No instance with this UID was in the catalog when it was looked up.
    """

    sop_instance_uid: str
    absent: bool


def validate_uid(value: Any, keyword: str) -> str:
    """Check a UI value (PS3.5 6.2 and 9.1) and return it without its padding.

    Parameters
    ----------
    value : Any
        The attribute value (``None`` when absent).
    keyword : str
        DICOM keyword, named in the error.

    Returns
    -------
    str

    Raises
    ------
    DatasetError
        Absent, empty, longer than 64 characters, or not dot-separated numeric components without leading zeros.
    """
    if value is None:
        raise DatasetError(f"{keyword}: absent (a valid UID is required)")
    text = str(value).rstrip("\0 ")  # PS3.5 6.2: UI values are padded with NUL to even length
    if not text:
        raise DatasetError(f"{keyword}: empty (a valid UID is required)")
    if len(text) > 64:
        raise DatasetError(f"{keyword}: {text!r} is longer than 64 characters (PS3.5 6.2 UI)")
    if not _UID_RE.match(text):
        if ".." in text or text.startswith(".") or text.endswith("."):
            why = "has an empty component"
        elif re.search(r"(?:^|\.)0[0-9]", text):
            why = "has a component with a leading zero"
        else:
            why = "contains characters other than digits and dots"
        raise DatasetError(f"{keyword}: {text!r} is not a valid UID: it {why} (PS3.5 9.1)")
    return text


def _text(ds: Dataset | FastItem, keyword: str) -> str | None:
    """An attribute as its DICOM string, stripped; ``None`` when absent or empty."""
    return attribute_text(ds, keyword)


def _int(ds: Dataset | FastItem, keyword: str, warnings: list[str]) -> int | None:
    """An IS attribute as int; an unparseable value becomes ``None`` and a warning."""
    text = _text(ds, keyword)
    if text is None:
        return None
    try:
        return int(float(text))
    except ValueError:
        warnings.append(f"{keyword}: {text!r} is not an integer string; ignored")
        return None


def _document_time(ds: Dataset | FastItem, zone: tzinfo,
                   warnings: list[str]) -> tuple[str | None, datetime | None, str | None]:
    """Acquisition time of a non-waveform object (Encapsulated PDF): raw string, aware datetime, zone source.

    Same precedence as the decoder: Acquisition DateTime, else Content Date + Time, else Study Date + Time;
    the value's own offset, else Timezone Offset From UTC (PS3.3 C.12.1.1.8), else the configured zone.
    """
    try:
        own: tzinfo | None
        raw = _text(ds, "AcquisitionDateTime")
        if raw:
            naive, own, _precision = parse_dt(raw)
        else:
            for d_kw, t_kw in (("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
                d, t = _text(ds, d_kw), _text(ds, t_kw)
                if d:
                    raw = d + (t or "")
                    naive, own = parse_da_tm(d, t or "000000"), None
                    break
            else:
                return None, None, None
        if own is not None:
            return raw, naive.replace(tzinfo=own), "datetime"
        offset = _text(ds, "TimezoneOffsetFromUTC")
        if offset:
            return raw, naive.replace(tzinfo=parse_offset(offset)), "TimezoneOffsetFromUTC"
        aware, note = localize(naive, zone)
        if note:
            warnings.append(note)
        return raw, aware, "default"
    except ValueError as exc:
        warnings.append(f"acquisition time not understood: {exc}")
        return None, None, None


class IngestService:
    """Store DICOM objects: validation, durable archive write, one catalog transaction.

    Parameters
    ----------
    config : NodeConfig
    catalog : Catalog
        An open, migrated catalog.
    archive : Archive
    """

    def __init__(self, config: NodeConfig, catalog: Catalog, archive: Archive) -> None:
        self.config = config
        self.catalog = catalog
        self.archive = archive
        self.quarantine = Quarantine(config.data_dir)
        #: Called with each successful :class:`StoreOutcome` (duplicates included) after the commit; a listener's
        #: error is logged and never turns a stored object into a failure. They run on the storing thread, after
        #: the C-STORE response (``store(after=...)``): a slow one still delays the association's next request and
        #: belongs in :class:`~dicom_ecg_node.services.dispatch.StoreDispatcher`.
        self.listeners: list[Callable[[StoreOutcome], None]] = []
        #: Kernel AIO contexts for the ``fsync``\ s of C-STOREs, one per store in flight at most (see "Overlap" in
        #: the module notes), tried once on the archive's file system; ``FsyncPool(kernel=False)`` makes the service
        #: work as where kernel AIO is unavailable.
        self.fsyncs = FsyncPool(probe=archive.root)
        # Threads start on demand, one per store in flight at most (see "Overlap" in the module notes).
        self._stager = ThreadPoolExecutor(max_workers=max(1, config.max_associations),
                                          thread_name_prefix="ecg-node-stage")
        #: Channel definitions repeat from one ECG of a cart to the next: decoded once (~0.7 ms per ECG).
        self.channel_cache = ChannelCache()
        #: Stores running now, on any thread (see :meth:`_store`).
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    @classmethod
    def open(cls, config: NodeConfig) -> IngestService:
        """Create the data directories, remove stale temporary files, open and migrate the catalog.

        Raises
        ------
        ArchiveError, CatalogError
        """
        try:
            ensure_dir(Path(config.data_dir))
        except OSError as exc:
            raise ArchiveError(f"data directory {config.data_dir}: {exc.strerror}") from exc
        archive = Archive(config.data_dir)
        archive.create(fan_out=config.prepare_archive)
        for path in archive.clean_temp():
            logger.info("removed temporary file left by an interrupted write: %s", path)
        return cls(config, Catalog.open(config.catalog_url), archive)

    def close(self) -> None:
        """Finish the staging writes in flight and close the catalog."""
        self._stager.shutdown(wait=True)
        self.fsyncs.close()
        self.archive.close()
        self.catalog.close()

    def __enter__(self) -> IngestService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------------------

    def prepare(self, sop_instance_uid: str) -> StorePreparation | None:
        """Look up the SOP Instance UID a C-STORE request announced, while its data set is on its way.

        See "Announced stores" in the module notes. Pass the result to :meth:`store` as ``prepared``.

        Parameters
        ----------
        sop_instance_uid : str
            The request's Affected SOP Instance UID, as received.

        Returns
        -------
        StorePreparation or None
            ``None`` when the catalog could not answer now: :meth:`store` then looks it up itself (and reports
            the error, if it lasts, as a refusal of that object).
        """
        uid = sop_instance_uid.rstrip("\0 ")
        try:
            existing = self.catalog.find_instance_file(uid)
        except CatalogError:
            return None
        return StorePreparation(uid, existing is None)

    def store(self, data: bytes, *, sender_ae: str, sender_address: str,
              expected_sop_instance_uid: str | None = None,
              expected_sop_class_uid: str | None = None,
              after: list[Callable[[], None]] | None = None, overlap: bool = False,
              prepared: StorePreparation | None = None) -> StoreOutcome:
        """Store one DICOM Part 10 file exactly as received.

        Parameters
        ----------
        data : bytes
            Preamble, ``DICM``, file meta and dataset as received (never re-encoded).
        sender_ae, sender_address : str
            Who sent it (``"IMPORT"``/``"local"`` for the import command).
        expected_sop_instance_uid, expected_sop_class_uid : str, optional
            Affected SOP Instance / Class UID of the C-STORE request, which the dataset must match.
        after : list, optional
            When given, the work that follows and need not delay the sender's answer (the object's log line, the
            :attr:`listeners`, making the next staged file) is appended here as callables, for the caller to run
            once it has answered, whether the store succeeded or raised; otherwise it is done before returning.
        overlap : bool
            ``fsync`` a C-STORE's staged file on the helper thread while the object is validated, and give it its
            final name there while the catalog rows are written (the commit waits for it). Only worth it while the
            node serves no other association, which the caller knows (the network edge, across worker processes);
            the naming is not done on the helper while another store runs in this process. See "Overlap" above.
        prepared : StorePreparation, optional
            What :meth:`prepare` found when the request announced ``expected_sop_instance_uid`` (ignored for
            another UID).

        Returns
        -------
        StoreOutcome
            Returned only once the file is durable and the row committed.

        Raises
        ------
        DatasetError, UnsupportedSOPClassError
            Unparseable, unsupported class, or identifying attributes missing, invalid or not as expected.
        WaveformError
            A waveform object that cannot be decoded faithfully.
        InstanceConflictError
            The UID is stored with other content and ``on_conflict`` is ``"refuse"``.
        StorageFullError, ArchiveError
            The file could not be written (nothing is left behind).
        CatalogError
            The row could not be committed (the file is removed again).
        """
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            return self._store_received(data, sender_ae, sender_address, expected_sop_instance_uid,
                                        expected_sop_class_uid, after, overlap, prepared)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _store_received(self, data: bytes, sender_ae: str, sender_address: str, expected_sop_instance_uid: str | None,
                        expected_sop_class_uid: str | None, after: list[Callable[[], None]] | None,
                        overlap: bool, prepared: StorePreparation | None = None) -> StoreOutcome:
        start = time.perf_counter()
        received_at = datetime.now(UTC)
        sha256 = ""
        ident: dict[str, str | None] = {"sop_class_uid": None, "sop_instance_uid": None}
        staged: _Staging | None = None
        aio = self.fsyncs.take() if expected_sop_instance_uid is not None else None
        try:
            checked, existing, in_transaction = False, None, False
            if expected_sop_instance_uid is not None:
                # The UID the request names: if the dataset says otherwise it is refused before anything is kept.
                checked = True
                uid = expected_sop_instance_uid.rstrip("\0 ")
                if prepared is not None and prepared.absent and prepared.sop_instance_uid == uid:
                    pass  # looked up while the data set was on its way (module notes, "Announced stores")
                elif overlap or prepared is not None:
                    existing = self.catalog.find_instance_file(uid)
                else:
                    in_transaction = True  # other stores at work: the transaction looks ("Announced stores")
                if existing is None:
                    staged = self._stage(data, overlap, aio)
                else:
                    sha256 = hashlib.sha256(data).hexdigest()
                    if existing.sha256 != sha256 and self.config.on_conflict == "replace":
                        staged = self._stage(data, overlap, aio)
            # Hashing releases the GIL: a helper thread staging the bytes starts its fsync meanwhile (see _stage).
            sha256 = sha256 or hashlib.sha256(data).hexdigest()
            record = self._validate(data, sender_ae, sender_address, received_at, sha256, ident,
                                    expected_sop_instance_uid, expected_sop_class_uid)
            outcome = self._store(data, record, start, staged, checked, existing, overlap, aio, in_transaction)
        except Exception as exc:
            self._release(staged)
            self._refuse(data, exc, sender_ae, sender_address, received_at, sha256, ident)
            raise
        finally:
            if aio is not None:  # every fsync it started has been waited for (_release, _store)
                self.fsyncs.give(aio)
            if staged is not None:  # the next store's file, made once this one's answer is out
                _later(after, self.archive.prepare_stage)
        _later(after, partial(self._stored, outcome, sender_ae, sender_address))
        return outcome

    def _stored(self, outcome: StoreOutcome, sender_ae: str, sender_address: str) -> None:
        """The log line and the listeners of a stored object."""
        logger.info("%s sop_class=%s sop_instance=%s from=%s@%s %.1f ms", outcome.status, outcome.sop_class_uid,
                    outcome.sop_instance_uid, sender_ae, sender_address, outcome.elapsed_ms)
        self._notify(outcome)

    def _stage(self, data: bytes, helper: bool, aio: KernelFsync | None = None) -> _Staging:
        """Write ``data`` to staging; its ``fsync`` starts now (kernel ``aio``, helper thread) or runs when asked.

        See the module notes, "Overlap". A write that fails is reported by the returned object's ``result()``, as
        a failed ``fsync`` is: a refusal for another reason found meanwhile (an invalid object) is still the one
        reported.
        """
        try:
            pending = self.archive.begin_stage(data)
        except EcgNodeError as exc:
            failed: Future[Staged] = Future()
            failed.set_exception(exc)
            return failed
        if aio is not None:
            return _Deferred(pending.sync_in_kernel(aio))
        return self._stager.submit(pending.sync) if helper else _SyncWhenAsked(pending)

    def _notify(self, outcome: StoreOutcome) -> None:
        """Run the store listeners (clock observation, reconciliation...); the object is stored whatever they do."""
        for listener in self.listeners:
            try:
                listener(outcome)
            except Exception:
                logger.exception("store listener %r failed for sop_instance=%s", listener, outcome.sop_instance_uid)

    def _validate(self, data: bytes, sender_ae: str, sender_address: str, received_at: datetime, sha256: str,
                  ident: dict[str, str | None], expected_iuid: str | None,
                  expected_cuid: str | None) -> InstanceRecord:
        """Parse, check identity (PS3.4 B.2.3, PS3.5 9.1), decode; the record still lacks its file path.

        The waveform decoder's fast reader reads the file (the elements decoded and cataloged, ~4x cheaper than a
        pydicom dataset); whatever it leaves to pydicom is read by pydicom, with the same values.
        """
        fast = read_object(data)
        if fast is not None:
            try:
                return self._validate_object(fast, fast.transfer_syntax_uid, fast.media_storage_sop_instance_uid,
                                             data, sender_ae, sender_address, received_at, sha256, ident,
                                             expected_iuid, expected_cuid)
            except Unsupported:
                pass  # an attribute the fast reader does not keep or convert: pydicom reads the file
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
            ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") or None
            meta_iuid = ds.file_meta.get("MediaStorageSOPInstanceUID")
        except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise UnreadableDatasetError(f"not a readable DICOM Part 10 file: {exc}") from exc
        return self._validate_object(ds, ts, None if meta_iuid is None else str(meta_iuid), data, sender_ae,
                                     sender_address, received_at, sha256, ident, expected_iuid, expected_cuid)

    def _validate_object(self, ds: Dataset | FastItem, ts: str | None, meta_iuid: str | None, data: bytes,
                         sender_ae: str, sender_address: str, received_at: datetime, sha256: str,
                         ident: dict[str, str | None], expected_iuid: str | None,
                         expected_cuid: str | None) -> InstanceRecord:
        try:
            raw_cuid, raw_iuid = attribute_uid(ds, "SOPClassUID"), attribute_uid(ds, "SOPInstanceUID")
        except (EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UnreadableDatasetError(f"not a readable DICOM Part 10 file: {exc}") from exc
        ident["sop_class_uid"] = None if raw_cuid is None else str(raw_cuid)
        ident["sop_instance_uid"] = None if raw_iuid is None else str(raw_iuid)
        warnings: list[str] = []
        try:
            cuid = validate_uid(raw_cuid, "SOPClassUID")
            if not (is_waveform_class(cuid) or cuid in STORAGE_SOP_CLASSES):
                raise UnsupportedSOPClassError(f"SOPClassUID: {cuid} is not a waveform storage class or "
                                               "Encapsulated PDF or Comprehensive SR; this node does not store it")
            iuid = validate_uid(raw_iuid, "SOPInstanceUID")
            # PS3.4 B.2.3 / PS3.7 9.1.1: the dataset must be the one the request announced.
            if expected_cuid is not None and expected_cuid.rstrip("\0 ") != cuid:
                raise DatasetError(f"SOPClassUID: dataset says {cuid} but the request said {expected_cuid}")
            if expected_iuid is not None and expected_iuid.rstrip("\0 ") != iuid:
                raise DatasetError(f"SOPInstanceUID: dataset says {iuid} but the request said {expected_iuid}")
            study_uid = validate_uid(attribute_uid(ds, "StudyInstanceUID"), "StudyInstanceUID")
            series_uid = validate_uid(attribute_uid(ds, "SeriesInstanceUID"), "SeriesInstanceUID")
            if meta_iuid is not None and meta_iuid.rstrip("\0 ") != iuid:  # PS3.10 7.1
                warnings.append("MediaStorageSOPInstanceUID differs from SOPInstanceUID")
            patient_id = _text(ds, "PatientID")
            generated = False
            if patient_id is None:
                if self.config.unidentified_patient != "accept":
                    raise DatasetError("PatientID: absent or empty (set unidentified_patient = \"accept\" to store "
                                       "such objects under a generated ID)")
                patient_id = UNIDENTIFIED_PREFIX + hashlib.sha256(study_uid.encode()).hexdigest()[:16].upper()
                generated = True
                warnings.append(f"PatientID absent; stored under generated ID {patient_id}")
            patient = PatientData(patient_id, _text(ds, "IssuerOfPatientID") or "", _text(ds, "PatientName"),
                                  _text(ds, "PatientBirthDate"), _text(ds, "PatientSex"), generated)
            study = StudyData(study_uid, _text(ds, "StudyDate"), _text(ds, "StudyTime"),
                              _text(ds, "AccessionNumber"), _text(ds, "StudyID"), _text(ds, "StudyDescription"),
                              _text(ds, "ReferringPhysicianName"))
            series = SeriesData(series_uid, _text(ds, "Modality"), _int(ds, "SeriesNumber", warnings),
                                _text(ds, "SeriesDescription"), _text(ds, "SeriesDate"), _text(ds, "SeriesTime"))
            instance_number = _int(ds, "InstanceNumber", warnings)
        except (EcgNodeError, Unsupported):
            raise  # Unsupported: the fast reader's object, read again by pydicom (see _validate)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # lazily converted values
            # Cannot understand (0xC000), as when pydicom's reading fails above: which of the two meets a broken
            # value (a Specific Character Set with a NUL...) depends on the reader, the answer must not.
            raise UnreadableDatasetError(f"dataset cannot be read: {exc}") from exc

        groups: tuple[GroupData, ...] = ()
        measurements: tuple[MeasurementData, ...] = ()
        if is_waveform_class(cuid):
            # WaveformError propagates
            rec: Recording = decode(ds, default_zone=self.config.zone, channel_cache=self.channel_cache)
            warnings.extend(rec.warnings)
            acq_raw, acq, zone_source = rec.acquisition_datetime_raw, rec.acquisition_datetime, rec.zone_source
            groups = tuple(
                GroupData(g.index, g.label, float(g.sampling_frequency), int(g.n_samples), g.n_channels,
                          tuple(c.label for c in g.channels), float(g.duration_s), g.interpretation,
                          g.bits_allocated)
                for g in rec.groups)
            measurements = tuple(
                MeasurementData(m.concept.value, m.concept.scheme, m.concept.meaning, float(m.value), m.units)
                for m in rec.measurements)
        else:
            acq_raw, acq, zone_source = _document_time(ds, self.config.zone, warnings)
        offset: timedelta | None = acq.utcoffset() if acq is not None else None
        return InstanceRecord(
            patient=patient, study=study, series=series, sop_instance_uid=iuid, sop_class_uid=cuid, path="",
            size=len(data), sha256=sha256, received_at=received_at, instance_number=instance_number,
            acquisition_datetime=acq_raw,
            acquisition_utc=acq.astimezone(UTC) if acq is not None and acq.tzinfo is not None else None,
            utc_offset_minutes=None if offset is None else int(offset.total_seconds() // 60),
            zone_source=zone_source, content_date=_text(ds, "ContentDate"), content_time=_text(ds, "ContentTime"),
            manufacturer=_text(ds, "Manufacturer"), model_name=_text(ds, "ManufacturerModelName"),
            device_serial_number=_text(ds, "DeviceSerialNumber"), transfer_syntax_uid=ts, sender_ae=sender_ae,
            sender_address=sender_address, warnings=tuple(warnings), groups=groups, measurements=measurements)

    def index_file(self, relative: str, *, sender_ae: str = "REINDEX",
                   sender_address: str = "local") -> Literal["stored", "duplicate", "conflict"]:
        """Catalog a file already in the archive (``reindex``), without copying or quarantining it.

        Parameters
        ----------
        relative : str
            Archive path relative to the data directory.
        sender_ae, sender_address : str
            Provenance recorded for the row (the original sender is not known any more).

        Returns
        -------
        {"stored", "duplicate", "conflict"}
            ``duplicate``/``conflict``: the UID is already indexed (same / other content) under another file.

        Raises
        ------
        DatasetError, WaveformError, ArchiveError, CatalogError
        """
        data = self.archive.read(relative)
        path = self.archive.resolve(relative)
        received_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        ident: dict[str, str | None] = {"sop_class_uid": None, "sop_instance_uid": None}
        record = self._validate(data, sender_ae, sender_address, received_at, hashlib.sha256(data).hexdigest(),
                                ident, None, None)
        result = self.catalog.add_instance(replace(record, path=relative), replace=False)
        return "stored" if result.status == "stored" else result.status  # type: ignore[return-value]

    def _outcome(self, status: Literal["stored", "duplicate", "replaced"], record: InstanceRecord, path: str,
                 sha256: str, start: float) -> StoreOutcome:
        patient = record.patient
        return StoreOutcome(status, record.sop_class_uid, record.sop_instance_uid, record.study.study_instance_uid,
                            self.archive.resolve(path), record.size, sha256, record.warnings,
                            (time.perf_counter() - start) * 1000.0,
                            None if patient.generated_id else patient.patient_id, patient.name)

    def _release(self, staged: _Staging | None) -> None:
        """Wait for a staging write that will not be named and remove its file."""
        if staged is None:
            return
        if isinstance(staged, _SyncWhenAsked) and staged.abandon():
            return  # never fsynced: removed without it
        # A failed staging write left nothing behind; the store's own error is the one reported.
        with contextlib.suppress(EcgNodeError):
            self.archive.discard(staged.result())

    def _store(self, data: bytes, record: InstanceRecord, start: float, staged: _Staging | None = None,
               checked: bool = False, existing: InstanceFile | None = None, overlap: bool = False,
               aio: KernelFsync | None = None, in_transaction: bool = False) -> StoreOutcome:
        """Archive then catalog a validated object (see the module notes for the crash-safety argument).

        ``checked``: ``existing`` is the catalog's file for this UID, looked up by :meth:`store` (or, with
        ``in_transaction``, left to the catalog transaction); ``staged``: the bytes being written in the staging
        folder (``None``: written here).
        """
        uid = record.sop_instance_uid
        replace_policy = self.config.on_conflict == "replace"
        # Cheap pre-check so that a plain re-send writes nothing; the transaction re-checks under its lock.
        if not checked:
            existing = self.catalog.find_instance_file(uid)
        absent = existing is None and not in_transaction  # the transaction need not look the UID up again
        if existing is not None:
            if existing.sha256 == record.sha256:
                self._release(staged)  # stored by a concurrent store since store() looked
                return self._outcome("duplicate", record, existing.path, existing.sha256, start)
            if not replace_policy:
                raise InstanceConflictError(
                    f"SOPInstanceUID {uid} is already stored with different content "
                    f"(stored sha256 {existing.sha256[:12]}…, received {record.sha256[:12]}…)")
        # ``data`` is immutable bytes, hashed once by store(): the archive does not hash it again.
        relative = self.archive.placement(uid)
        if staged is not None and (aio is not None or (overlap and self._in_flight == 1)):
            # The staged file gets its final name while the rows are written here: linked now, its directory's
            # fsync left to the kernel (kernel AIO), or linked and synced on the helper thread when alone in this
            # process. The commit waits for it, so a committed row always names a durable file. Without kernel AIO
            # and with other threads busy, the helper would wait for the GIL while this thread holds the catalog's
            # writer lock (measured: more CPU per ECG and fewer ECGs/s on 4 associations): the name is made here,
            # before the transaction (below).
            staged_file = staged.result()
            placing: _Deferred[WriteResult] | Future[WriteResult]
            if aio is not None:
                placing = _Deferred(self.archive.begin_place(staged_file, relative, record.sha256, aio))
            else:
                placing = self._stager.submit(self.archive.place, staged_file, relative, record.sha256)
            record = replace(record, path=relative, size=staged_file.size)
            try:
                if not overlap:
                    # Other stores wait for the catalog's writer lock: wait for the directory's fsync before taking
                    # it, not inside it (measured on 4 associations, 8 interleaved rounds: 1.4% more ECGs/s and
                    # 5% less CPU per ECG, fewer hand-overs of the lock); alone, the rows are written meanwhile.
                    placing.result()
                result = self.catalog.add_instance(record, replace=replace_policy, before_commit=placing.result,
                                                   absent=absent)
            except CommitNotDurableError:
                raise  # the committed row names the file: it stays (a re-send is a duplicate, verify checks it)
            except BaseException:
                self._unplace(placing, relative)
                raise
            if result.status in ("duplicate", "conflict"):
                self._unplace(placing, relative)
                self._release(staged)  # the staged name, if placing failed
        else:
            if staged is not None:
                written = self.archive.place(staged.result(), relative, record.sha256)
            else:
                written = self.archive.write(relative, data, sha256=record.sha256)
            record = replace(record, path=relative, size=written.size)
            try:
                result = self.catalog.add_instance(record, replace=replace_policy, absent=absent)
            except CommitNotDurableError:
                raise  # as above
            except BaseException:
                self._discard(relative)
                raise
            if result.status in ("duplicate", "conflict"):
                self._discard(relative)
        if result.status in ("duplicate", "conflict"):  # a concurrent store of this UID committed first
            if result.status == "conflict":
                raise InstanceConflictError(f"SOPInstanceUID {uid} is already stored with different content")
            return self._outcome("duplicate", record, result.path, result.sha256, start)
        if result.previous_path:
            # The row now names the new file; the old one is garbage. Should this fail, verify reports an orphan.
            self._discard(result.previous_path)
        if result.conflicts:
            logger.warning("demographic conflict for sop_instance=%s: %s differ from the stored patient",
                           uid, ", ".join(result.conflicts))
        return self._outcome(result.status, record, relative, record.sha256, start)  # type: ignore[arg-type]

    def _unplace(self, placing: Future[WriteResult] | _Deferred[WriteResult], relative: str) -> None:
        """Undo a placement whose row is not committed: once it has finished, remove the file at ``relative``.

        The name has a random token, so whatever is there is this store's (a placement that failed after the link
        has taken it back itself); the staged name of a placement that failed before is removed by :meth:`_release`.
        """
        with contextlib.suppress(Exception):  # its error, if any, is the store's (raised by before_commit)
            placing.result()
        if self.archive.resolve(relative).exists():
            self._discard(relative)

    def _discard(self, relative: str) -> None:
        """Remove a file this store wrote (or superseded); a failure is logged, never raised over the cause."""
        try:
            self.archive.remove(relative)
        except ArchiveError:
            logger.exception("could not remove %s; verify will report it as an orphan", relative)

    def _refuse(self, data: bytes, exc: Exception, sender_ae: str, sender_address: str, received_at: datetime,
                sha256: str, ident: dict[str, str | None]) -> None:
        """Quarantine a refused object with its reason and log the refusal (no patient data in the log)."""
        reason = {
            "received_at": received_at.isoformat(), "sender_ae": sender_ae, "sender_address": sender_address,
            "status": "refused", "error": type(exc).__name__, "comment": str(exc), "size": len(data),
            "sha256": sha256, **ident,
        }
        logger.warning("refused sop_class=%s sop_instance=%s from=%s@%s: %s: %s", ident["sop_class_uid"],
                       ident["sop_instance_uid"], sender_ae, sender_address, type(exc).__name__, exc)
        try:
            self.quarantine.put(data, reason)
        except EcgNodeError as qexc:
            logger.error("could not quarantine the refused object: %s", qexc)


def _later(after: list[Callable[[], None]] | None, work: Callable[[], None]) -> None:
    """Queue ``work`` on ``after`` (see :meth:`IngestService.store`), or do it now."""
    if after is None:
        work()
    else:
        after.append(work)


_T = TypeVar("_T")


class _Deferred(Generic[_T]):
    """Work started elsewhere (a kernel ``fsync``) whose ``finish`` runs the first time ``result()`` is asked for.

    Same ``result()`` as the helper thread's ``Future``: the value, or the error, every time.
    """

    __slots__ = ("_error", "_finish", "_value")

    def __init__(self, finish: Callable[[], _T]) -> None:
        self._finish: Callable[[], _T] | None = finish
        self._value: _T | None = None
        self._error: BaseException | None = None

    def result(self) -> _T:
        """Finish once; return the value or raise the error."""
        finish, self._finish = self._finish, None
        if finish is not None:
            try:
                self._value = finish()
            except BaseException as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class _SyncWhenAsked:
    r"""A staged file that the storing thread itself ``fsync``\ s, the first time its ``result()`` is asked for.

    The counterpart of the helper thread's ``Future`` (module notes, "Overlap"): same ``result()``, and an object
    refused before it was asked for is removed without ever being made durable (:meth:`abandon`).
    """

    __slots__ = ("_error", "_pending", "_staged")

    def __init__(self, pending: PendingStage) -> None:
        self._pending = pending
        self._staged: Staged | None = None
        self._error: EcgNodeError | None = None

    def result(self) -> Staged:
        """``fsync`` the file (once) and return it; raises the write's error (StorageFullError, ArchiveError)."""
        if self._staged is None and self._error is None:
            try:
                self._staged = self._pending.sync()
            except EcgNodeError as exc:  # sync removed the file
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._staged  # type: ignore[return-value]

    def abandon(self) -> bool:
        r"""Remove the file if it was never ``fsync``\ ed; ``False``: it was (the caller discards it as usual)."""
        if self._staged is not None or self._error is not None:
            return False
        self._pending.abandon()
        self._error = ArchiveError("staged file abandoned")  # a later result() must not sync a closed file
        return True


#: A staged file being made durable: on the helper thread (a future) or by the storing thread when asked.
_Staging = Future[Staged] | _SyncWhenAsked | _Deferred[Staged]


__all__ = ["UNIDENTIFIED_PREFIX", "IngestService", "StoreOutcome", "validate_uid"]
