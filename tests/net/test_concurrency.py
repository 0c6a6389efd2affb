"""Many carts at once: 16 simultaneous associations × 25 ECGs, every one stored exactly once."""

from __future__ import annotations

import hashlib
import threading

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from dicom_ecg_node.waveform.synth import synthesize_ecg, write_ecg

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
ASSOCIATIONS = 16
PER_ASSOCIATION = 25


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sixteen_carts_at_once(node, tmp_path, monkeypatch):
    from pynetdicom import _config

    # The carts send each file's bytes as stored (no decode and re-encode on the client side), so the 16 client
    # associations running in this process leave the CPU to the node under test.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    files = []
    for a in range(ASSOCIATIONS):
        batch = []
        for i in range(PER_ASSOCIATION):
            path = tmp_path / f"a{a:02d}_{i:02d}.dcm"
            write_ecg(path, synthesize_ecg(patient_id=f"P{a:02d}", seed=a * 100 + i))
            batch.append(path)
        files.append(batch)
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(ASSOCIATIONS)
    errors: list[BaseException] = []

    def cart(index: int) -> None:
        try:
            ae = AE(ae_title=f"CART{index:02d}")
            ae.add_requested_context(TWELVE_LEAD, ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", node.port, ae_title=node.aet)
            if not assoc.is_established:
                raise RuntimeError(f"cart {index}: association failed")
            barrier.wait(timeout=60)  # all 16 associations are open at the same time
            for path in files[index]:
                status = assoc.send_c_store(path)
                with lock:
                    statuses[str(path)] = int(status.Status) if "Status" in status else -1
            assoc.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=cart, args=(i,)) for i in range(ASSOCIATIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(statuses) == ASSOCIATIONS * PER_ASSOCIATION
    assert set(statuses.values()) == {0}

    rows = {r.sop_instance_uid: r for r in node.ingest.catalog.list_instances()}
    assert len(rows) == ASSOCIATIONS * PER_ASSOCIATION
    for a, batch in enumerate(files):
        for path in batch:
            ds = pydicom.dcmread(path)
            row = rows[ds.SOPInstanceUID]
            # Not mixed up: each instance sits under its own patient and its archived bytes hash as recorded.
            assert row.patient_id == f"P{a:02d}"
            stored = (node.config.data_dir / row.path).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == row.sha256
    archived = [p for p in (node.config.data_dir / "archive").rglob("*.dcm")]
    assert len(archived) == ASSOCIATIONS * PER_ASSOCIATION
