"""Shared helpers of the retrieve tests (kept out of conftest.py so that test modules can import them by a
unique module name)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def ecg_bytes(**kwargs: Any) -> bytes:
    kwargs.setdefault("acquisition_datetime", T0)
    kwargs.setdefault("seed", 1)
    return ecg_to_bytes(synthesize_ecg(**kwargs))


def fill(node: Any, n: int, *, patient_id: str = "P1", study_instance_uid: str | None = None,
         transfer_syntax: str = "explicit", start: datetime = T0, step: timedelta = timedelta(days=1)) -> list[str]:
    """Store ``n`` ECGs of one patient (one synthesis, renumbered), return their SOP Instance UIDs in time order."""
    from pydicom.uid import generate_uid

    base = synthesize_ecg(patient_id=patient_id, acquisition_datetime=start, seed=1, transfer_syntax=transfer_syntax,
                          study_instance_uid=study_instance_uid)
    uids = []
    for i in range(n):
        uid = generate_uid()
        base.SOPInstanceUID = uid
        base.file_meta.MediaStorageSOPInstanceUID = uid
        base.AcquisitionDateTime = (start + i * step).strftime("%Y%m%d%H%M%S+0000")
        node.ingest.store(ecg_to_bytes(base), sender_ae="CART", sender_address="127.0.0.1")
        uids.append(uid)
    return uids


