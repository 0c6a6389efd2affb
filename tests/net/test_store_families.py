"""Every waveform SOP class family and every transfer syntax, stored over a real association."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from dicom_ecg_node.waveform import decode
from dicom_ecg_node.waveform.sopclass import WAVEFORM_SOP_CLASSES
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

GENERAL_32BIT = "1.2.840.10008.5.1.4.1.1.9.1.4"


def send_bytes(node, tmp_path, data: bytes, sop_class: str, syntax: str):
    path = tmp_path / f"{generate_uid()}.dcm"
    path.write_bytes(data)
    ae = AE(ae_title="CART")
    ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.aet)
    assert assoc.is_established
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


@pytest.mark.parametrize("syntax", ["implicit", "explicit", "big", "deflated"])
def test_every_transfer_syntax_stores_and_decodes_identically(node, tmp_path, syntax):
    ds = synthesize_ecg(patient_id="TS1", transfer_syntax=syntax, seed=3,
                        acquisition_datetime=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    data = ecg_to_bytes(ds)
    status = send_bytes(node, tmp_path, data, ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assert status.Status == 0x0000
    row = node.ingest.catalog.get_instance(ds.SOPInstanceUID).summary
    assert row.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    stored = decode(node.config.data_dir / row.path)
    sent = decode(data)
    # Microvolts decoded from the archived file equal those of the bytes sent, sample for sample.
    assert (stored.groups[0].samples == sent.groups[0].samples).all()
    assert stored.acquisition_utc == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("sop_class", sorted(WAVEFORM_SOP_CLASSES))
def test_every_waveform_sop_class_is_stored(node, tmp_path, sop_class):
    info = WAVEFORM_SOP_CLASSES[sop_class]
    if sop_class == GENERAL_32BIT:
        ds = synthesize_ecg(patient_id="FAM", sample_interpretation="SL", sop_class_uid=sop_class, seed=1)
    else:
        # A synthetic ECG relabelled as the class: the node stores it, recording any IOD constraint it breaks
        # (channel counts, modality) as a warning rather than refusing a decodable object.
        ds = synthesize_ecg(patient_id="FAM", seed=1)
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.Modality = info.modality
    status = send_bytes(node, tmp_path, ecg_to_bytes(ds), sop_class, ds.file_meta.TransferSyntaxUID)
    assert status.Status == 0x0000, status
    assert node.ingest.catalog.get_instance(ds.SOPInstanceUID).summary.sop_class_uid == sop_class
