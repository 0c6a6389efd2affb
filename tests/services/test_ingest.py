"""Ingest service: validation, durable archive, one catalog transaction, duplicates, conflicts, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from helpers import sample, sqlite_writer_state
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dicom_ecg_node.archive as archive_module
from dicom_ecg_node.archive import SPARE_STAGES, STAGING, TEMP_PREFIX, Archive
from dicom_ecg_node.archive.aio import FsyncPool, KernelFsync
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import (
    ArchiveError,
    CatalogError,
    DatasetError,
    InstanceConflictError,
    StorageFullError,
    UnreadableDatasetError,
    UnsupportedSOPClassError,
)
from dicom_ecg_node.services.ingest import IngestService, StorePreparation, validate_uid
from dicom_ecg_node.services.maintenance import verify
from dicom_ecg_node.waveform import Unsupported, attribute, read_object
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

VALID = ["pixelmed/39da47b7.dcm", "pydicom/waveform_ecg.dcm"]
DOTDOT = ["ecgtoolkit/Example.dcm", "cabolabs-dicom-waveform/Example.dcm", "cabolabs-dicom-waveform/out2_attrs.dcm"]


@pytest.fixture
def config(tmp_path: Path, catalog_url: str) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path / "data", db_url=catalog_url, prepare_archive=False)


@pytest.fixture
def service(config: NodeConfig) -> Iterator[IngestService]:
    svc = IngestService.open(config)
    yield svc
    svc.close()


def archived(svc: IngestService) -> list[str]:
    return list(svc.archive.iter_files())


def leftovers(data_dir: Path) -> list[Path]:
    """Temporary files holding bytes: not the empty spare staged files the service creates ahead of stores."""
    return [p for p in data_dir.rglob(f"{TEMP_PREFIX}*") if p.parent.name != STAGING or p.stat().st_size > 0]


def renumber(src: Path, **changes: object) -> bytes:
    """A sample file with fresh UIDs (and attribute changes), encoded in its own little endian syntax."""
    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in changes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def synth(**kw: object) -> bytes:
    kw.setdefault("duration_s", 2.0)
    kw.setdefault("include_median", False)
    kw.setdefault("annotations", False)
    return ecg_to_bytes(synthesize_ecg(**kw))


def staged_sizes(svc: IngestService) -> list[int]:
    """The sizes of the objects the service writes through the staging folder from now on (the real write runs)."""
    sizes: list[int] = []
    real = svc.archive.begin_stage

    def stage(data: bytes):
        sizes.append(len(data))
        return real(data)

    svc.archive.begin_stage = stage  # type: ignore[method-assign]
    return sizes


@pytest.fixture(params=["import", "c-store"])
def via(request: pytest.FixtureRequest) -> str:
    """How an object reaches the service: ``import`` (no request UIDs) or ``c-store`` (the network's path, which
    names the SOP Instance UID and so writes the bytes on the staging thread while they are validated)."""
    return str(request.param)


def store(svc: IngestService, data: bytes, *, via: str = "import", **kw: str):
    if via == "c-store" and "expected_sop_instance_uid" not in kw:
        try:  # what a C-STORE request would have named (a dataset pydicom cannot read: no UID, like a bad request)
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            kw["expected_sop_instance_uid"] = str(ds.SOPInstanceUID)
        except Exception:
            pass
    return svc.store(data, sender_ae=kw.pop("ae", "CART1"), sender_address="127.0.0.1", **kw)


@pytest.mark.parametrize("name", VALID)
def test_valid_samples_are_stored_byte_for_byte(service: IngestService, name: str, via: str) -> None:
    data = sample(name).read_bytes()
    staged = staged_sizes(service)
    out = store(service, data, via=via)
    assert out.status == "stored"
    assert staged == ([len(data)] if via == "c-store" else [])  # staged under its temporary name, then named
    assert leftovers(service.config.data_dir) == []
    assert out.path.is_absolute() and out.path.read_bytes() == data
    assert out.size == len(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert out.sop_instance_uid == ds.SOPInstanceUID
    # the peer's UID never appears in the path: hashed and fanned out
    rel = out.path.relative_to(service.config.data_dir)
    assert rel.parts[0] == "archive" and len(rel.parts) == 4 and ds.SOPInstanceUID not in str(rel)
    detail = service.catalog.get_instance(ds.SOPInstanceUID)
    assert detail.summary.sha256 == out.sha256 and detail.summary.path == rel.as_posix()
    assert detail.summary.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert (detail.summary.sender_ae, detail.summary.sender_address) == ("CART1", "127.0.0.1")
    assert detail.summary.acquisition_utc is not None
    assert detail.groups and detail.groups[0].n_channels == 12
    assert service.quarantine.entries() == []


def test_one_carts_ecgs_decode_their_channels_once_and_catalog_them_all(service: IngestService) -> None:
    # Every ECG of a cart carries the same channel definitions: the second and later ones take them from the
    # service's channel cache; each catalog row still holds its own groups and leads, as pydicom decodes them.
    datas = [ecg_to_bytes(synthesize_ecg(seed=seed, include_median=True, patient_id=f"P{seed}"))
             for seed in (11, 12, 13)]
    for data in datas:
        assert store(service, data, via="c-store").status == "stored"
    assert len(service.channel_cache) == 2  # rhythm and median beat definitions, decoded once each
    for data in datas:
        ds = pydicom.dcmread(io.BytesIO(data))
        groups = service.catalog.get_instance(ds.SOPInstanceUID).groups
        assert [(g.label, g.n_channels, g.leads) for g in groups] == [
            (str(item.MultiplexGroupLabel), len(item.ChannelDefinitionSequence),
             tuple(str(c.ChannelLabel) for c in item.ChannelDefinitionSequence))
            for item in ds.WaveformSequence]
        assert groups[0].leads[:3] == ("I", "II", "III")


@pytest.mark.parametrize("name", [*VALID, "pydicom/waveform_ecg.dcm#explicit-be", "pydicom/waveform_ecg.dcm#implicit",
                                  "pydicom/waveform_ecg.dcm#deflated"])
def test_fast_reader_and_pydicom_catalog_the_same_record(service: IngestService, name: str) -> None:
    # The ingest service reads a file once with the decoder's fast reader (waveform.read_object) and falls back to
    # pydicom for what that reader leaves; both must give the catalog the very same record.
    path, _, syntax = name.partition("#")
    data = sample(path).read_bytes()
    if syntax:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.PatientName = "Müller^Jürgen"  # text through the Specific Character Set
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.AccessionNumber, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "ACC7", "S1", "3", "11"
        ds.file_meta.TransferSyntaxUID = {"explicit-be": "1.2.840.10008.1.2.2", "implicit": "1.2.840.10008.1.2",
                                          "deflated": "1.2.840.10008.1.2.1.99"}[syntax]
        buf = io.BytesIO()
        if syntax == "explicit-be":
            pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=False, enforce_file_format=True)
        else:
            ds.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
    fast = read_object(data)
    syntax_uid = pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID
    assert fast is not None and fast.transfer_syntax_uid == syntax_uid
    received = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    via_fast = service._validate(data, "CART1", "127.0.0.1", received, "0" * 64, {}, None, None)
    ds = pydicom.dcmread(io.BytesIO(data))
    via_pydicom = service._validate_object(ds, str(ds.file_meta.TransferSyntaxUID),
                                           ds.file_meta.get("MediaStorageSOPInstanceUID"), data, "CART1",
                                           "127.0.0.1", received, "0" * 64, {}, None, None)
    assert via_fast == via_pydicom
    assert via_fast.patient.patient_id == str(ds.PatientID) and via_fast.groups
    if syntax:
        assert (via_fast.patient.name, via_fast.study.accession_number, via_fast.series.series_number,
                via_fast.instance_number) == ("Müller^Jürgen", "ACC7", 3, 11)
    # An attribute the fast reader does not keep is not guessed: the caller reads the file with pydicom.
    with pytest.raises(Unsupported):
        attribute(fast, "OperatorsName")


def test_a_value_neither_reader_can_convert_is_cannot_understand_both_ways(service: IngestService,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A Specific Character Set with a NUL in it: pydicom's reading fails at once, the fast reader's on the first
    text it decodes (Patient's Name); either way the refusal is UnreadableDatasetError (0xC000, cannot understand)."""
    ds = synthesize_ecg(seed=5, duration_s=1.0, transfer_syntax="explicit")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    data = ecg_to_bytes(ds).replace(b"ISO_IR 100", b"ISO_IR\x00100")  # same length: the structure is intact
    assert read_object(data) is not None  # the fast reader reads it
    received = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    with pytest.raises(UnreadableDatasetError, match="embedded null character"):
        service._validate(data, "CART1", "127.0.0.1", received, "0" * 64, {}, None, None)
    with pytest.raises(UnreadableDatasetError):
        store(service, data, via="c-store")
    [entry] = service.quarantine.entries()
    assert entry.reason["error"] == "UnreadableDatasetError"
    assert service.catalog.stats().instances == 0
    # The same file when the fast reader leaves it to pydicom.
    monkeypatch.setattr("dicom_ecg_node.services.ingest.read_object", lambda data: None)
    with pytest.raises(UnreadableDatasetError, match="embedded null character"):
        service._validate(data, "CART1", "127.0.0.1", received, "0" * 64, {}, None, None)


@pytest.mark.parametrize("name", DOTDOT)
def test_dotdot_uids_are_refused_and_quarantined(service: IngestService, name: str, via: str) -> None:
    data = sample(name).read_bytes()
    with pytest.raises(DatasetError, match=r"SOPInstanceUID: .*not a valid UID: it has an empty component"):
        store(service, data, via=via)
    assert archived(service) == [] and service.catalog.stats().instances == 0
    assert leftovers(service.config.data_dir) == []  # the staged bytes of a refused object are removed
    [entry] = service.quarantine.entries()
    assert entry.path.read_bytes() == data
    assert entry.reason["error"] == "DatasetError" and entry.reason["sender_ae"] == "CART1"
    assert "SOPInstanceUID" in entry.reason["comment"]
    json.loads(entry.path.with_suffix(".json").read_text())


def test_missing_study_uid_is_refused(service: IngestService, via: str) -> None:
    with pytest.raises(DatasetError, match="StudyInstanceUID: absent"):
        store(service, sample("pixelmed/1074466202.fixed.dcm").read_bytes(), via=via)
    assert len(service.quarantine.entries()) == 1
    assert archived(service) == [] and leftovers(service.config.data_dir) == []


@pytest.mark.parametrize(("uid", "why"), [
    ("1.2.03", "leading zero"), ("1.2.", "empty component"), ("1.2.a", "characters"), ("1." * 40 + "1", "64"),
])
def test_validate_uid(uid: str, why: str) -> None:
    with pytest.raises(DatasetError, match=why):
        validate_uid(uid, "StudyInstanceUID")
    assert validate_uid("1.2.0.3\0", "X") == "1.2.0.3"


def test_identity_checks(service: IngestService) -> None:
    src = sample("pydicom/waveform_ecg.dcm")
    with pytest.raises(UnsupportedSOPClassError):
        store(service, renumber(src, SOPClassUID="1.2.840.10008.5.1.4.1.1.2"))
    data = renumber(src)
    with pytest.raises(DatasetError, match="request said"):
        store(service, data, expected_sop_instance_uid="1.2.3")
    with pytest.raises(DatasetError, match="request said"):
        store(service, data, expected_sop_class_uid="1.2.840.10008.5.1.4.1.1.9.1.2")
    uid = pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID
    ok = store(service, data, expected_sop_instance_uid=uid, expected_sop_class_uid="1.2.840.10008.5.1.4.1.1.9.1.1")
    assert ok.status == "stored"
    with pytest.raises(DatasetError, match="not a readable DICOM"):
        store(service, b"hello, not DICOM")
    assert len(service.quarantine.entries()) == 4
    # the refused requests' bytes were staged (their UIDs were new) and removed again
    assert archived(service) == [ok.path.relative_to(service.config.data_dir).as_posix()]
    assert leftovers(service.config.data_dir) == []


def test_unidentified_patient_policy(config: NodeConfig) -> None:
    data = renumber(sample("pydicom/waveform_ecg.dcm"), PatientID=None)
    with IngestService.open(config) as svc, pytest.raises(DatasetError, match="PatientID"):
        store(svc, data)
    with IngestService.open(config.replace(unidentified_patient="accept")) as svc:
        out = store(svc, data)
        assert out.status == "stored"
        [patient] = svc.catalog.list_patients()
        assert patient.patient_id.startswith("UNIDENTIFIED-")
        assert any("generated ID" in w for w in out.warnings)


@pytest.mark.parametrize("alone", [True, False])
def test_duplicate_stores_nothing_twice(service: IngestService, via: str, alone: bool) -> None:
    """A re-send is a duplicate: one file, one row. It writes nothing, not even staged, unless it is a C-STORE
    while other stores are at work (``overlap`` false): its catalog transaction then finds the UID, and the bytes
    it staged and named are removed (services/ingest.py "Announced stores")."""
    data = sample("pydicom/waveform_ecg.dcm").read_bytes()
    first = store(service, data, via=via)
    staged = staged_sizes(service)
    seen = lookups(service)
    again = store(service, data, ae="OTHER", via=via, overlap=alone)
    assert again.status == "duplicate" and again.path == first.path and again.sha256 == first.sha256
    assert leftovers(service.config.data_dir) == []
    assert len(archived(service)) == 1 and service.catalog.stats().instances == 1
    looked_in_transaction = via == "c-store" and not alone
    assert staged == ([len(data)] if looked_in_transaction else [])
    assert seen == ([] if looked_in_transaction else [first.sop_instance_uid])


def test_conflicting_resend_is_refused_and_original_kept(service: IngestService, via: str) -> None:
    data = renumber(sample("pydicom/waveform_ecg.dcm"))
    first = store(service, data, via=via)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientComments = "changed"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(InstanceConflictError):
        store(service, buf.getvalue(), via=via)
    assert first.path.read_bytes() == data
    assert archived(service) == [first.path.relative_to(service.config.data_dir).as_posix()]
    assert leftovers(service.config.data_dir) == []
    [entry] = service.quarantine.entries()
    assert entry.reason["error"] == "InstanceConflictError" and entry.path.read_bytes() == buf.getvalue()


def lookups(svc: IngestService) -> list[str]:
    """The SOP Instance UIDs the service looks up in its catalog from now on (the real lookup runs)."""
    seen: list[str] = []
    real = svc.catalog.find_instance_file

    def find(uid: str):
        seen.append(uid)
        return real(uid)

    svc.catalog.find_instance_file = find  # type: ignore[method-assign]
    return seen


def changed_copy(data: bytes) -> bytes:
    """``data`` with other content under the same UIDs."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientComments = "changed"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_an_announced_absent_uid_is_not_looked_up_again(service: IngestService) -> None:
    """What prepare() found while the data set was on its way (services/ingest.py "Announced stores")."""
    data = renumber(sample("pydicom/waveform_ecg.dcm"))
    uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
    prepared = service.prepare(uid + "\0")  # padded to an even length, as the request carries it
    assert prepared == StorePreparation(uid, absent=True)
    seen = lookups(service)
    outcome = store(service, data, via="c-store", prepared=prepared)
    assert outcome.status == "stored" and seen == []
    assert outcome.path.read_bytes() == data
    assert service.catalog.find_instance_file(uid).sha256 == hashlib.sha256(data).hexdigest()


def test_a_stale_absent_preparation_still_meets_the_stored_instance(service: IngestService) -> None:
    """Stored by another association between the announcement and the data set: the same bytes are a duplicate,
    other bytes a refused conflict; one file and one row either way, nothing left behind."""
    data = renumber(sample("pydicom/waveform_ecg.dcm"))
    uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
    announced = [service.prepare(uid), service.prepare(uid)]
    assert all(p == StorePreparation(uid, absent=True) for p in announced)
    first = store(service, data, via="c-store")  # the other association's store
    again = store(service, data, via="c-store", prepared=announced[0])
    assert again.status == "duplicate" and again.path == first.path and again.sha256 == first.sha256
    with pytest.raises(InstanceConflictError):
        store(service, changed_copy(data), via="c-store", prepared=announced[1])
    assert first.path.read_bytes() == data
    assert archived(service) == [first.path.relative_to(service.config.data_dir).as_posix()]
    assert leftovers(service.config.data_dir) == [] and service.catalog.stats().instances == 1


def test_a_preparation_that_found_the_uid_or_names_another_is_not_trusted(service: IngestService) -> None:
    """Only an absent answer for the same UID saves the lookup: a found one is looked up again at store time."""
    data = renumber(sample("pydicom/waveform_ecg.dcm"))
    uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
    stored = store(service, data, via="c-store")
    found, other = service.prepare(uid), service.prepare("1.2.3.4.5")
    assert found == StorePreparation(uid, absent=False) and other == StorePreparation("1.2.3.4.5", absent=True)
    seen = lookups(service)
    for prepared in (found, other):
        outcome = store(service, data, via="c-store", prepared=prepared)
        assert outcome.status == "duplicate" and outcome.path == stored.path
    assert seen == [uid, uid]
    assert len(archived(service)) == 1 and leftovers(service.config.data_dir) == []


def test_a_preparation_the_catalog_cannot_answer_is_none(service: IngestService,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The store then looks the UID up itself (and reports the catalog's failure, if it lasts)."""
    def failing(uid: str) -> None:
        raise CatalogError("catalog database: database is locked")

    monkeypatch.setattr(service.catalog, "find_instance_file", failing)
    assert service.prepare("1.2.3.4") is None


def test_replace_policy(config: NodeConfig, via: str) -> None:
    data = renumber(sample("pydicom/waveform_ecg.dcm"))
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientComments = "corrected"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with IngestService.open(config.replace(on_conflict="replace")) as svc:
        first = store(svc, data, via=via)
        second = store(svc, buf.getvalue(), via=via)
        assert second.status == "replaced"
        assert not first.path.exists() and second.path.read_bytes() == buf.getvalue()
        assert len(archived(svc)) == 1 and leftovers(config.data_dir) == []
        assert svc.catalog.find_instance_file(ds.SOPInstanceUID).sha256 == second.sha256


def test_demographic_conflict(service: IngestService) -> None:
    src = sample("pydicom/waveform_ecg.dcm")
    store(service, renumber(src))
    out = store(service, renumber(src, PatientName="Other^Name", PatientBirthDate="19800101"))
    assert out.status == "stored"
    conflicts = service.catalog.list_conflicts()
    assert {c.attribute for c in conflicts} == {"PatientName", "PatientBirthDate"}
    detail = service.catalog.get_instance(out.sop_instance_uid)
    assert (detail.patient_name, detail.patient_birth_date) == ("Other^Name", "19800101")


def test_encapsulated_pdf_is_stored(service: IngestService) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("report.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "PDF1", "Doc^Pat", "DOC"
    ds.ContentDate, ds.ContentTime, ds.TimezoneOffsetFromUTC = "20240601", "120000", "+0200"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out = store(service, buf.getvalue())
    s = service.catalog.get_instance(out.sop_instance_uid).summary
    assert s.acquisition_utc == datetime(2024, 6, 1, 10, 0, tzinfo=UTC) and s.utc_offset_minutes == 120


def test_catalog_failure_removes_the_file(service: IngestService, via: str) -> None:
    """A real trigger makes the instance INSERT fail after the file is durable: CatalogError, no orphan."""
    db = service.catalog.db
    with service.catalog._write():
        if service.catalog.sqlite:
            db.execute_sql("CREATE TRIGGER refuse BEFORE INSERT ON instance "
                           "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        else:
            db.execute_sql("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                           "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql")
            db.execute_sql("CREATE TRIGGER refuse BEFORE INSERT ON instance FOR EACH ROW EXECUTE FUNCTION refuse()")
    data = sample("pydicom/waveform_ecg.dcm").read_bytes()
    with pytest.raises(CatalogError, match="injected failure"):
        store(service, data, via=via)
    assert archived(service) == [] and leftovers(service.config.data_dir) == []
    st = service.catalog.stats()
    assert (st.patients, st.studies, st.instances) == (0, 0, 0)  # the whole transaction rolled back
    assert service.quarantine.entries()[0].reason["error"] == "CatalogError"


def test_a_commit_whose_log_sync_fails_keeps_its_file(service: IngestService, via: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows commit, then the catalog log's ``fdatasync`` fails (EIO, injected where its answer comes): the
    store fails (CommitNotDurableError, a CatalogError: 0x0110) but the file the committed row names stays, so the
    archive and catalog agree (verify is clean) and the re-send is a duplicate."""
    import errno

    if not service.catalog.sqlite:
        pytest.skip("PostgreSQL commits synchronously by itself")
    from dicom_ecg_node.errors import CommitNotDurableError

    real = os.fdatasync
    wal = f"{service.catalog.db.database}-wal"

    def fdatasync(fd: int) -> None:
        if os.path.samestat(os.fstat(fd), os.stat(wal)):
            raise OSError(errno.EIO, "Input/output error (injected)")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    data = synth(sop_instance_uid=generate_uid())
    with pytest.raises(CommitNotDurableError, match="injected"):
        store(service, data, via=via)
    assert service.catalog.stats().instances == 1
    [relative] = archived(service)
    assert service.archive.read(relative) == data and leftovers(service.config.data_dir) == []
    monkeypatch.setattr(os, "fdatasync", real)  # the disk answers again
    assert verify(service.config).ok
    out = store(service, data, via=via)
    assert out.status == "duplicate" and out.path.read_bytes() == data


#: How a C-STORE's ``fsync``\ s run (services/ingest.py, "Overlap"): on the kernel's side (kernel AIO), on the
#: helper thread (no kernel AIO, the node serves one association) or on the storing thread (no kernel AIO, others).
FSYNC_MODES = ["kernel", "helper", "inline"]


def fsync_mode(svc: IngestService, mode: str) -> bool:
    """Make ``svc`` ``fsync`` a C-STORE's files the way ``mode`` says; returns the ``overlap`` to store with."""
    if mode == "kernel":
        probe = KernelFsync.create()
        if probe is None:
            pytest.skip("kernel AIO fsync (io_submit IOCB_CMD_FSYNC) is not available on this system")
        probe.close()
        return False
    svc.fsyncs = FsyncPool(kernel=False)
    return mode == "helper"


def spy(calls: list[tuple[str, str]], name: str, real: Callable[..., object]) -> Callable[..., object]:
    """``real``, recording ``(name, thread)`` of each call in ``calls``."""
    def wrapper(*args: object, **kw: object) -> object:
        calls.append((name, "helper" if threading.current_thread().name.startswith("ecg-node-stage") else "caller"))
        return real(*args, **kw)
    return wrapper


@pytest.mark.parametrize("mode", FSYNC_MODES)
def test_failed_placement_rolls_the_rows_back(service: IngestService, via: str, mode: str) -> None:
    """The file's final name cannot be made (its fan-out folder is a file here): ArchiveError, nothing kept.

    A C-STORE's name is made by the storing thread, leaving the directory's ``fsync`` to the kernel
    (``begin_place``), or on the helper thread while the rows are written; either way the commit waits for it.
    """
    overlap = fsync_mode(service, mode)
    calls: list[tuple[str, str]] = []
    service.archive.place = spy(calls, "place", service.archive.place)  # type: ignore[method-assign]
    service.archive.begin_place = spy(calls, "begin_place", service.archive.begin_place)  # type: ignore[method-assign]
    data = synth(sop_instance_uid=generate_uid())
    uid = str(read_object(data).media_storage_sop_instance_uid)
    digest = hashlib.sha256(uid.encode()).hexdigest()
    folder = service.archive.root / digest[:2] / digest[2]
    folder.parent.mkdir(exist_ok=True)  # no fan-out made ahead here (the default would have made both)
    folder.write_bytes(b"in the way")
    with pytest.raises(ArchiveError):
        store(service, data, via=via, overlap=overlap)
    st = service.catalog.stats()
    assert (st.patients, st.studies, st.instances) == (0, 0, 0)
    assert archived(service) == [] and leftovers(service.config.data_dir) == []
    folder.unlink()
    folder.mkdir()
    out = store(service, data, via=via, overlap=overlap)
    assert out.status == "stored" and out.path.read_bytes() == data  # the re-send once the folder is back
    expected = {"kernel": ("begin_place", "caller"), "helper": ("place", "helper"), "inline": ("place", "caller")}
    assert calls == ([expected[mode]] * 2 if via == "c-store" else [])


@pytest.mark.parametrize("mode", FSYNC_MODES)
def test_staged_bytes_are_synced_while_validating_unless_inline(service: IngestService, mode: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A C-STORE's staged bytes are ``fsync``-ed while the object is validated: by the kernel, or on the helper
    thread when the node serves no other association; inline, by the storing thread once the object is valid, so
    that a refused object's bytes are removed without ever being made durable. Either way a refused object leaves
    nothing behind, and the next store works (a kernel context is reused only once its ``fsync`` is collected)."""
    overlap = fsync_mode(service, mode)
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(archive_module.PendingStage, "sync",
                        spy(calls, "sync", archive_module.PendingStage.sync))
    monkeypatch.setattr(archive_module.PendingStage, "sync_in_kernel",
                        spy(calls, "sync_in_kernel", archive_module.PendingStage.sync_in_kernel))
    data = synth(sop_instance_uid=generate_uid())
    out = store(service, data, via="c-store", overlap=overlap)
    assert out.status == "stored" and out.path.read_bytes() == data
    # Refused after staging: the request names another SOP Instance UID than the dataset's.
    other = generate_uid()
    with pytest.raises(DatasetError, match="request said"):
        store(service, synth(sop_instance_uid=generate_uid()), via="c-store", overlap=overlap,
              expected_sop_instance_uid=other)
    again = synth(sop_instance_uid=generate_uid())
    last = store(service, again, via="c-store", overlap=overlap)
    assert last.status == "stored" and last.path.read_bytes() == again
    expected = {"kernel": [("sync_in_kernel", "caller")] * 3, "helper": [("sync", "helper")] * 3,
                "inline": [("sync", "caller")] * 2}
    assert calls == expected[mode]
    assert sorted(archived(service)) == sorted(p.relative_to(service.config.data_dir).as_posix()
                                               for p in (out.path, last.path))
    assert leftovers(service.config.data_dir) == []
    assert service.catalog.find_instance_file(other) is None


def test_where_the_kernel_refuses_aio_fsync_a_lone_store_syncs_on_the_helper_thread(
        service: IngestService, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that sets up AIO contexts but refuses IOCB_CMD_FSYNC (EINVAL, injected where it answers): the
    service finds out once, on the archive's folder, and then stores as where kernel AIO is missing (the helper
    thread overlaps the fsync for a lone association) instead of trying the kernel on every store."""
    import errno

    if KernelFsync.create() is None:
        pytest.skip("kernel AIO fsync (io_submit IOCB_CMD_FSYNC) is not available on this system")
    refused: list[int] = []

    def refuse(self: KernelFsync, fd: int) -> int:
        refused.append(fd)
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(KernelFsync, "start", refuse)
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(archive_module.PendingStage, "sync", spy(calls, "sync", archive_module.PendingStage.sync))
    sent = [synth(sop_instance_uid=generate_uid()) for _ in range(2)]
    outs = [store(service, data, via="c-store", overlap=True) for data in sent]
    assert [out.status for out in outs] == ["stored", "stored"]
    assert [out.path.read_bytes() for out in outs] == sent  # the bytes as received, durable under their names
    assert calls == [("sync", "helper")] * 2
    assert len(refused) == 1  # the probe only
    assert leftovers(service.config.data_dir) == []


@pytest.mark.parametrize("alone", [True, False])
def test_the_directory_fsync_is_awaited_outside_the_writer_lock_unless_alone(service: IngestService, alone: bool,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Module notes, "Overlap": alone, the rows are written while the directory's fsync runs and the commit waits
    for it inside the transaction; with other stores in flight it is waited for before the writer lock is taken.
    Either way the row is not committed before the name is durable."""
    fsync_mode(service, "kernel")
    if not service.catalog.sqlite:
        pytest.skip("the writer lock is SQLite's")
    archive_root = service.archive.root
    database = service.catalog.db.database
    real_start, real_wait = KernelFsync.start, KernelFsync.wait
    directories: set[int] = set()
    seen: list[tuple[bool, int]] = []  # (writer lock free?, instances committed) when the directory fsync is done

    def start(self: KernelFsync, fd: int) -> int:
        token = real_start(self, fd)
        if os.path.isdir(f"/proc/self/fd/{fd}") and os.readlink(f"/proc/self/fd/{fd}") != str(archive_root):
            directories.add(token)
        return token

    def wait(self: KernelFsync, token: int) -> None:
        real_wait(self, token)
        if token in directories:
            seen.append(sqlite_writer_state(database))

    monkeypatch.setattr(KernelFsync, "start", start)
    monkeypatch.setattr(KernelFsync, "wait", wait)
    out = store(service, synth(sop_instance_uid=generate_uid()), via="c-store", overlap=alone)
    assert out.status == "stored"
    assert seen == [(not alone, 0)]


@pytest.mark.parametrize("mode", FSYNC_MODES)
def test_a_placement_failing_after_its_link_leaves_no_file(service: IngestService, via: str, mode: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The final name is linked, then the directory ``fsync`` fails (EIO, injected where its answer comes: a disk
    error cannot be made on demand): ArchiveError, no row, no file under any name, and the object in quarantine."""
    import errno

    overlap = fsync_mode(service, mode)
    archive_root = service.archive.root
    real_fsync_dir = archive_module.fsync_dir
    real_wait = KernelFsync.wait
    directories: set[int] = set()
    real_start = KernelFsync.start

    def fsync_dir(path: Path) -> None:
        if Path(path).is_relative_to(archive_root):
            raise OSError(errno.EIO, "Input/output error (injected)")
        real_fsync_dir(path)

    def start(self: KernelFsync, fd: int) -> int:
        token = real_start(self, fd)
        if os.path.isdir(f"/proc/self/fd/{fd}") and os.readlink(f"/proc/self/fd/{fd}") != str(archive_root):
            directories.add(token)  # a fan-out folder's (the archive root's is the pool's probe, FsyncPool)
        return token

    def wait(self: KernelFsync, token: int) -> None:
        real_wait(self, token)
        if token in directories:
            raise OSError(errno.EIO, "Input/output error (injected)")

    monkeypatch.setattr(archive_module, "fsync_dir", fsync_dir)
    monkeypatch.setattr(KernelFsync, "start", start)
    monkeypatch.setattr(KernelFsync, "wait", wait)
    data = synth(sop_instance_uid=generate_uid())
    digest = hashlib.sha256(str(read_object(data).media_storage_sop_instance_uid).encode()).hexdigest()
    (service.archive.root / digest[:2] / digest[2]).mkdir(parents=True)  # the fan-out folder is there already
    with pytest.raises(ArchiveError, match="injected"):
        store(service, data, via=via, overlap=overlap)
    st = service.catalog.stats()
    assert (st.patients, st.studies, st.instances) == (0, 0, 0)
    assert archived(service) == [] and leftovers(service.config.data_dir) == []
    assert service.quarantine.entries()[0].reason["error"] == "ArchiveError"
    assert len(directories) == (1 if via == "c-store" and mode == "kernel" else 0)
    # Once the disk answers again, the re-send is stored.
    monkeypatch.setattr(archive_module, "fsync_dir", real_fsync_dir)
    monkeypatch.setattr(KernelFsync, "wait", real_wait)
    out = store(service, data, via=via, overlap=overlap)
    assert out.status == "stored" and out.path.read_bytes() == data


@pytest.mark.parametrize("mode", FSYNC_MODES)
def test_a_staged_file_whose_fsync_fails_is_refused_and_removed(service: IngestService, mode: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The staged file's ``fsync`` reports ENOSPC (injected where the answer comes): 0xA700's StorageFullError,
    no row, no staged or final file; the next store is stored (its kernel context was left clean)."""
    import errno

    overlap = fsync_mode(service, mode)
    staging = service.archive.root / STAGING
    real_wait = KernelFsync.wait
    real_start = KernelFsync.start
    real_fsync = os.fsync
    staged: set[int] = set()

    def start(self: KernelFsync, fd: int) -> int:
        token = real_start(self, fd)
        if Path(os.readlink(f"/proc/self/fd/{fd}")).parent == staging:
            staged.add(token)
        return token

    def wait(self: KernelFsync, token: int) -> None:
        real_wait(self, token)
        if token in staged:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

    def fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).parent == staging:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        real_fsync(fd)

    monkeypatch.setattr(KernelFsync, "start", start)
    monkeypatch.setattr(KernelFsync, "wait", wait)
    monkeypatch.setattr(archive_module.os, "fsync", fsync)
    with pytest.raises(StorageFullError, match="injected"):
        store(service, synth(sop_instance_uid=generate_uid()), via="c-store", overlap=overlap)
    assert service.catalog.stats().instances == 0
    assert archived(service) == [] and leftovers(service.config.data_dir) == []
    assert len(staged) == (1 if mode == "kernel" else 0)
    monkeypatch.setattr(KernelFsync, "wait", real_wait)
    monkeypatch.setattr(archive_module.os, "fsync", real_fsync)
    data = synth(sop_instance_uid=generate_uid())
    out = store(service, data, via="c-store", overlap=overlap)
    assert out.status == "stored" and out.path.read_bytes() == data


def test_disk_full(tmp_path: Path, catalog_url: str, via: str) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        # The catalog lives elsewhere: only the archive's file system is full.
        with IngestService.open(NodeConfig(data_dir=mnt / "data", db_url=catalog_url, prepare_archive=False)) as svc:
            data = sample("pydicom/waveform_ecg.dcm").read_bytes()  # 291 kB > 128 kB
            with pytest.raises(StorageFullError):
                store(svc, data, via=via)
            assert archived(svc) == [] and leftovers(mnt) == []
            # An object that is refused anyway is refused for what is wrong with it, whichever came first.
            with pytest.raises(DatasetError, match=r"the request said 1\.2\.3"):
                store(svc, data, via=via, expected_sop_class_uid="1.2.3")
            assert archived(svc) == [] and leftovers(mnt) == []
            assert svc.catalog.stats().instances == 0
            # the quarantine could not hold it either, and left nothing partial
            assert list((mnt / "data").rglob("*.dcm")) == []
            small = synth(patient_id="FITS", duration_s=1.0)
            assert store(svc, small, via=via).status == "stored"  # the node keeps working once space allows
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_archive_fan_out_is_created_once_and_used(config: NodeConfig) -> None:
    config = dataclasses.replace(config, prepare_archive=True)  # the default
    with IngestService.open(config) as service:
        _check_fan_out(service)


def _check_fan_out(service: IngestService) -> None:
    root = service.config.data_dir / "archive"
    leaves = [p for p in root.glob("*/*") if p.is_dir()]
    assert len(leaves) == 256 * 16
    assert {p.name for p in root.iterdir()} == {f"{a:02x}" for a in range(256)} | {STAGING}
    out = store(service, sample("pydicom/waveform_ecg.dcm").read_bytes())
    digest = hashlib.sha256(out.sop_instance_uid.encode()).hexdigest()
    assert out.path.parent == root / digest[:2] / digest[2]  # no directory made on the way
    assert [p for p in root.glob("*/*") if p.is_dir()] == leaves
    # A directory an admin removed (or an earlier layout's) is made again, durably, when a file goes there.
    shutil.rmtree(root / "7f")
    written = service.archive.write("archive/7f/0/x.dcm", b"DICM", sha256="0" * 64)
    assert written.path.read_bytes() == b"DICM" and written.sha256 == "0" * 64  # the caller's digest, not rehashed


def test_archive_without_fan_out_makes_each_folder_with_its_first_file(service: IngestService) -> None:
    """``prepare_archive = false``: no folder ahead; a store makes its file's two folders, and then finds them."""
    root = service.config.data_dir / "archive"
    assert {p.name for p in root.iterdir()} == {STAGING}
    data = synth(patient_id="LAZY1")
    first = store(service, data)
    digest = hashlib.sha256(first.sop_instance_uid.encode()).hexdigest()
    assert first.path.parent == root / digest[:2] / digest[2]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()) == sorted(
        [STAGING, digest[:2], f"{digest[:2]}/{digest[2]}"])
    assert first.status == "stored" and first.path.read_bytes() == data
    # A second file under the same top folder only adds its own leaf, if that is new.
    uid = next(u for u in (f"2.25.{n}" for n in range(100_000))
               if (h := hashlib.sha256(u.encode()).hexdigest())[:2] == digest[:2] and h[2] != digest[2])
    second = store(service, synth(patient_id="LAZY2", sop_instance_uid=uid))
    assert second.status == "stored" and second.path.parent.parent == root / digest[:2]
    assert len([p for p in root.rglob("*") if p.is_dir()]) == 4
    assert verify(service.config).ok


def test_startup_cleans_stale_temp_files(config: NodeConfig) -> None:
    with IngestService.open(config):
        pass
    stale = config.data_dir / "archive" / "ab" / "cd" / f"{TEMP_PREFIX}dead.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = stale.with_name(f"{TEMP_PREFIX}inflight.part")
    fresh.write_bytes(b"another worker's write in progress")
    with IngestService.open(config):
        assert not stale.exists() and fresh.exists()


def test_log_line_per_object_without_patient_name(service: IngestService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dicom_ecg_node.ingest")
    out = store(service, sample("pydicom/waveform_ecg.dcm").read_bytes())
    lines = [r for r in caplog.records if r.name == "dicom_ecg_node.ingest" and r.levelno == logging.INFO]
    assert len(lines) == 1
    msg = lines[0].getMessage()
    assert out.sop_instance_uid in msg and "stored" in msg and "ms" in msg and "Anonymous" not in msg


@pytest.mark.slow
def test_16_threads_store_concurrently(service: IngestService) -> None:
    payloads = [[synth(patient_id=f"T{t % 4}", patient_name=f"THREAD^{t % 4}", seed=t * 100 + i,
                       sop_instance_uid=generate_uid(), instance_number=i + 1) for i in range(25)]
                for t in range(16)]
    shared = synth(patient_id="SHARED", sop_instance_uid=generate_uid())
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for data in payloads[t]:
                assert store(service, data, ae=f"CART{t}").status == "stored"
            status = store(service, shared, ae=f"CART{t}").status
            with lock:
                results.append(status)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert sorted(results) == ["duplicate"] * 15 + ["stored"]
    assert service.catalog.stats().instances == 16 * 25 + 1
    assert len(archived(service)) == 16 * 25 + 1
    assert leftovers(service.config.data_dir) == []


def staging_files(svc: IngestService) -> dict[str, int]:
    """``{name: size}`` of the files in the staging folder."""
    return {p.name: p.stat().st_size for p in (svc.archive.root / STAGING).iterdir()}


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_staged_files_are_created_ahead_of_the_stores_that_fill_them(service: IngestService) -> None:
    first = synth(sop_instance_uid=generate_uid(), seed=1)
    out = store(service, first, via="c-store")
    assert out.status == "stored"
    # After the store, the helper makes the next store's file: empty, in the staging folder, not a leftover.
    assert wait_for(lambda: len(staging_files(service)) == 1)
    (spare, size), = staging_files(service).items()
    assert size == 0 and spare.startswith(TEMP_PREFIX)
    assert leftovers(service.config.data_dir) == []
    assert verify(service.config).ok  # a running node's spare is not "a leftover of an interrupted write"
    # The next store writes into that very file and links it to its final name.
    inode = (service.archive.root / STAGING / spare).stat().st_ino
    second = synth(sop_instance_uid=generate_uid(), seed=2)
    out2 = store(service, second, via="c-store")
    assert out2.path.stat().st_ino == inode and out2.path.read_bytes() == second
    assert spare not in staging_files(service)
    # At most SPARE_STAGES wait; closing the service removes them.
    for seed in range(3, 8):
        store(service, synth(sop_instance_uid=generate_uid(), seed=seed), via="c-store")
    assert wait_for(lambda: len(staging_files(service)) == 1)  # one used, one made per store
    for _ in range(SPARE_STAGES + 2):
        service.archive.prepare_stage()
    assert len(staging_files(service)) == SPARE_STAGES
    service.close()
    assert staging_files(service) == {}
    assert len(archived(service)) == 7


def test_archive_spares_stale_removed_and_unmakeable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = Archive(tmp_path / "data")
    archive.create()
    staging = archive.root / STAGING
    archive.prepare_stage(keep=1)
    archive.prepare_stage(keep=1)  # one is waiting already
    (spare,) = staging.iterdir()
    pending = archive.begin_stage(b"ECG bytes")
    assert pending.path == spare and spare.read_bytes() == b"ECG bytes"
    archive.discard(pending.sync())
    # A sibling worker starting removes temporary files older than 300 s: a spare is used only while far younger.
    archive.prepare_stage()
    (old,) = staging.iterdir()
    monkeypatch.setattr(archive_module, "SPARE_MAX_AGE_S", 0.0)
    pending = archive.begin_stage(b"fresh")
    assert pending.path != old and not old.exists() and pending.path.read_bytes() == b"fresh"
    archive.discard(pending.sync())
    # A spare that cannot be made (here the staging folder is gone) is no error there: the store that needs a
    # file makes it and reports why it cannot.
    staging.rmdir()
    archive.prepare_stage()
    with pytest.raises(ArchiveError, match="writing a received object"):
        archive.begin_stage(b"x")
    staging.mkdir()
    archive.prepare_stage()
    assert len(list(staging.iterdir())) == 1
    archive.close()
    assert list(staging.iterdir()) == []


def _takes_direct_io(folder: Path) -> bool:
    """Whether ``folder``'s file system opens files with ``O_DIRECT`` (probed here, apart from the archive)."""
    probe = folder / "probe-odirect"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


def _cached_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache, by util-linux ``fincore`` (``mincore(2)``)."""
    out = subprocess.run(["fincore", "--bytes", "--raw", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _page_cache_visible(folder: Path) -> str | None:
    """Why what is in the page cache says nothing about direct writes in ``folder`` (``None``: it does)."""
    if not _takes_direct_io(folder):
        return f"the file system of {folder} refuses O_DIRECT"
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(folder)], capture_output=True, text=True,
                          check=True).stdout.strip()
    if kind in ("tmpfs", "ramfs"):
        return f"{folder} is on {kind}, whose files live in the page cache whatever the writes"
    if shutil.which("fincore") is None:
        return "util-linux fincore is needed to see what is in the page cache"
    return None


@pytest.mark.parametrize("size", [0, 100, 4096, 3 * 4096 + 17, (1 << 20) * 2 + 5000])
def test_staged_blocks_go_to_the_disk_directly_and_the_tail_through_the_page_cache(tmp_path: Path,
                                                                                   size: int) -> None:
    archive = Archive(tmp_path / "data")
    archive.create(fan_out=False)
    data = os.urandom(size)  # every block different: a block written at the wrong place would show
    staged = archive.begin_stage(data).sync()
    assert staged.size == size
    unseen = _page_cache_visible(staged.path.parent)
    if unseen is None:
        # Only the last partial block went through the page cache; whole blocks were written past it.
        assert _cached_bytes(staged.path) == (4096 if size % 4096 else 0)
    assert staged.path.read_bytes() == data
    archive.discard(staged)
    archive.close()
    if unseen is not None:
        pytest.skip(f"bytes checked; how they were written cannot be: {unseen}")


def test_staging_on_a_file_system_without_direct_io_writes_through_the_page_cache(tmp_path: Path) -> None:
    mnt = tmp_path / "ram"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        assert not _takes_direct_io(mnt)  # ramfs refuses O_DIRECT (EINVAL)
        archive = Archive(mnt / "data")
        archive.create(fan_out=False)
        first, second = os.urandom(3 * 4096 + 17), os.urandom(5 * 4096)
        for data in (first, second):  # the refusal found with the first, the second not tried directly
            staged = archive.begin_stage(data).sync()
            assert staged.size == len(data) and staged.path.read_bytes() == data
            archive.discard(staged)
        assert list((archive.root / STAGING).iterdir()) == []
        archive.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_verify_reports_a_staged_file_with_bytes(service: IngestService) -> None:
    service.archive.prepare_stage()
    partial = service.archive.root / STAGING / f"{TEMP_PREFIX}crashed.part"
    partial.write_bytes(b"half an ECG")
    report = verify(service.config)
    assert [(p.kind, p.path) for p in report.problems] == [("temp", f"archive/{STAGING}/{partial.name}")]


def test_work_after_the_answer_is_left_to_the_caller(service: IngestService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dicom_ecg_node.ingest")
    heard: list[str] = []
    service.listeners.append(lambda outcome: heard.append(outcome.sop_instance_uid))
    after: list[Callable[[], None]] = []
    out = store(service, synth(sop_instance_uid=generate_uid()), via="c-store", after=after)
    assert out.status == "stored" and out.path.exists()
    assert heard == [] and not [r for r in caplog.records if r.name == "dicom_ecg_node.ingest"]
    for work in after:
        work()
    assert heard == [out.sop_instance_uid]
    assert [r.getMessage().split()[0] for r in caplog.records if r.name == "dicom_ecg_node.ingest"] == ["stored"]
    assert wait_for(lambda: len(staging_files(service)) == 1)  # and the next staged file was made
    # A refused object: its refusal is logged at once; what is left is only the next staged file.
    after.clear()
    with pytest.raises(DatasetError):
        store(service, synth(sop_instance_uid=generate_uid()), via="c-store", expected_sop_class_uid="1.2.3",
              after=after)
    assert len(after) == 1 and heard == [out.sop_instance_uid]
