"""C-ECHO and C-STORE over real associations on loopback, pynetdicom as the client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest
from helpers import renumbered_copy, request_association, sample
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE, build_context
from pynetdicom.sop_class import CTImageStorage, Verification

from dicom_ecg_node.waveform.sopclass import ENCAPSULATED_PDF, WAVEFORM_SOP_CLASSES

MORTARA = sample("pydicom/waveform_ecg.dcm")
TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"


def associate(node, *contexts, calling="CART1", called=None):
    ae = AE(ae_title=calling)
    ae.requested_contexts = list(contexts) or [build_context(Verification)]
    return request_association(ae, node.host, node.port, ae_title=called or node.aet)


def store_file(node, path: Path, calling="CART1"):
    meta = pydicom.filereader.read_file_meta_info(path)
    assoc = associate(node, build_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID), calling=calling)
    assert assoc.is_established
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


def test_echo_succeeds(node):
    assoc = associate(node)
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0x0000


def test_wrong_called_aet_is_rejected(node):
    assoc = associate(node, called="NOTTHENODE")
    assert assoc.is_rejected
    # PS3.8 7.1.1.4 / Table 9-21: rejected-permanent, service-user, called AE title not recognised (7).
    assert assoc.acceptor.primitive.result == 0x01
    assert assoc.acceptor.primitive.diagnostic == 0x07


def test_store_real_ecg_is_archived_byte_for_byte_and_indexed(node, tmp_path):
    src = renumbered_copy(MORTARA, tmp_path / "ecg.dcm")
    status = store_file(node, src)
    assert status.Status == 0x0000
    ds = pydicom.dcmread(src)
    row = node.ingest.catalog.get_instance(ds.SOPInstanceUID).summary
    stored = node.config.data_dir / row.path
    # The dataset bytes after the file meta are exactly those sent (never re-encoded).
    sent = src.read_bytes()
    on_disk = stored.read_bytes()
    meta_end_sent = _dataset_offset(sent)
    meta_end_disk = _dataset_offset(on_disk)
    assert on_disk[meta_end_disk:] == sent[meta_end_sent:]
    assert row.sha256 == hashlib.sha256(on_disk).hexdigest()
    assert row.size == len(on_disk)
    assert row.sop_class_uid == TWELVE_LEAD
    # The peer's UID is not the file name (hashed, fanned out).
    assert ds.SOPInstanceUID not in str(stored)


def _dataset_offset(data: bytes) -> int:
    """Byte offset where the dataset starts after the 128-byte preamble, 'DICM' and the file meta group."""
    from io import BytesIO

    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = BytesIO(data)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    return fp.tell()


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_store_every_little_endian_syntax(node, tmp_path, syntax):
    ds = pydicom.dcmread(MORTARA)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    status = store_file(node, path)
    assert status.Status == 0x0000
    row = node.ingest.catalog.get_instance(ds.SOPInstanceUID).summary
    assert row.transfer_syntax_uid == syntax


def test_duplicate_is_success_and_stored_once(node, tmp_path):
    src = renumbered_copy(MORTARA, tmp_path / "ecg.dcm")
    assert store_file(node, src).Status == 0x0000
    assert store_file(node, src).Status == 0x0000
    uid = pydicom.dcmread(src).SOPInstanceUID
    assert len([r for r in node.ingest.catalog.list_instances() if r.sop_instance_uid == uid]) == 1
    archived = [p for p in (node.config.data_dir / "archive").rglob("*") if p.is_file() and p.stat().st_size]
    assert len(archived) == 1  # (and the empty file made ahead for the next store: Archive.prepare_stage)


def test_conflicting_resend_is_refused_and_original_kept(node, tmp_path):
    src = renumbered_copy(MORTARA, tmp_path / "ecg.dcm")
    assert store_file(node, src).Status == 0x0000
    uid = pydicom.dcmread(src).SOPInstanceUID
    original = (node.config.data_dir / node.ingest.catalog.get_instance(uid).summary.path).read_bytes()
    ds = pydicom.dcmread(src)
    ds.PatientName = "Someone^Else"
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed, enforce_file_format=True)
    status = store_file(node, changed)
    assert status.Status == 0x0111
    assert "ErrorComment" in status and status.ErrorComment
    assert (node.config.data_dir / node.ingest.catalog.get_instance(uid).summary.path).read_bytes() == original
    assert len(list((node.config.data_dir / "quarantine").glob("*.json"))) == 1


def test_object_without_waveform_sequence_gets_a900(node, tmp_path):
    src = renumbered_copy(MORTARA, tmp_path / "bad.dcm", WaveformSequence=None)
    status = store_file(node, src)
    assert status.Status == 0xA900
    assert "Waveform" in status.ErrorComment
    # The node keeps serving.
    good = renumbered_copy(MORTARA, tmp_path / "good.dcm")
    assert store_file(node, good).Status == 0x0000


def test_invalid_uids_are_refused_with_comment(node):
    # The ECG Toolkit file carries SOP/Study/Series UIDs with "..", which PS3.5 9.1 forbids.
    status = store_file(node, sample("ecgtoolkit/Example.dcm"))
    assert status.Status == 0xA900
    assert "UID" in status.ErrorComment
    assert list(node.ingest.catalog.list_instances()) == []


def test_sop_instance_uid_mismatch_with_request_is_refused(node, tmp_path, monkeypatch):
    # Sending a file path in chunked mode, pynetdicom announces the file meta's Media Storage SOP Instance UID as
    # the Affected SOP Instance UID without decoding the dataset: make the two disagree.
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    src = renumbered_copy(MORTARA, tmp_path / "ecg.dcm")
    ds = pydicom.dcmread(src)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(src, enforce_file_format=False)  # keep our file meta (enforcing would rewrite it from the dataset)
    status = store_file(node, src)
    assert status.Status == 0xA900
    assert "SOPInstanceUID" in status.ErrorComment
    assert list(node.ingest.catalog.list_instances()) == []


def test_unsupported_sop_class_is_rejected_at_negotiation(node):
    assoc = associate(node, build_context(CTImageStorage), build_context(Verification))
    assert assoc.is_established
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    rejected = {cx.abstract_syntax for cx in assoc.rejected_contexts}
    assoc.release()
    assert CTImageStorage in rejected
    assert Verification in accepted


def test_every_storage_class_and_syntax_is_negotiated(node):
    uids = [*WAVEFORM_SOP_CLASSES, ENCAPSULATED_PDF]
    syntaxes = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                "1.2.840.10008.1.2.2"]
    contexts = [build_context(uid, ts) for uid in uids for ts in syntaxes][:128]
    assoc = associate(node, *contexts)
    assert assoc.is_established
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    assoc.release()
    assert len(accepted) == min(128, len(uids) * len(syntaxes))


def test_encapsulated_pdf_beside_the_ecg_is_stored(node, tmp_path):
    from pydicom.dataset import FileMetaDataset

    ecg = pydicom.dcmread(renumbered_copy(MORTARA, tmp_path / "ecg.dcm"))
    pdf = Dataset()
    pdf.file_meta = FileMetaDataset()
    pdf.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pdf.SOPClassUID = ENCAPSULATED_PDF
    pdf.SOPInstanceUID = generate_uid()
    pdf.file_meta.MediaStorageSOPClassUID = pdf.SOPClassUID
    pdf.file_meta.MediaStorageSOPInstanceUID = pdf.SOPInstanceUID
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime"):
        setattr(pdf, kw, getattr(ecg, kw))
    pdf.SeriesInstanceUID = generate_uid()
    pdf.Modality = "DOC"
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    path = tmp_path / "report.dcm"
    pdf.save_as(path, enforce_file_format=True)
    ecg_path = tmp_path / "ecg2.dcm"
    ecg.save_as(ecg_path, enforce_file_format=True)
    assert store_file(node, ecg_path).Status == 0x0000
    assert store_file(node, path).Status == 0x0000
    assert node.ingest.catalog.get_instance(pdf.SOPInstanceUID).summary.sop_class_uid == ENCAPSULATED_PDF


def test_the_accept_loop_never_forces_a_full_garbage_collection(node):
    """pynetdicom's server runs gc.collect() every 60th pass of its accept loop (~25 ms of stopped threads here)."""
    import gc

    full: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    server = node.node._server
    gc.callbacks.append(count)
    try:
        for _ in range(3 * 60 + 1):  # what 181 associations (or idle poll intervals) run between accepts
            server.service_actions()
    finally:
        gc.callbacks.remove(count)
    assert full == []
    assoc = associate(node)  # and the node still serves
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
