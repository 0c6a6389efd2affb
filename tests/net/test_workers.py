"""Several receiving processes behind one port (SO_REUSEPORT) sharing one archive and SQLite catalog."""

from __future__ import annotations

import signal
import threading

import pydicom
import pytest
from helpers import free_port, renumbered_copy, sample, start_node_process
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_two_workers_store_from_four_associations(tmp_path):
    port = free_port()
    data_dir = tmp_path / "data"
    log = tmp_path / "node.log"
    proc = start_node_process(data_dir, port, log, "--workers", "2")
    try:
        files = [renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / f"e{i:02d}.dcm") for i in range(40)]
        statuses: list[int] = []
        lock = threading.Lock()

        def cart(chunk):
            ae = AE(ae_title="CART")
            ae.add_requested_context("1.2.840.10008.5.1.4.1.1.9.1.1", ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", port, ae_title="ECGNODE")
            for path in chunk:
                status = assoc.send_c_store(path)
                with lock:
                    statuses.append(int(status.Status))
            assoc.release()

        threads = [threading.Thread(target=cart, args=(files[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [0] * 40
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "started 2 worker processes" in text
    # Both workers bound the shared port (which one serves a connection is the kernel's choice).
    assert text.count("listening as AE") == 2 and "[w0]" in text and "[w1]" in text

    from dicom_ecg_node.catalog import Catalog

    catalog = Catalog.open(f"sqlite:///{data_dir / 'catalog.sqlite'}")
    try:
        stored = {r.sop_instance_uid for r in catalog.list_instances()}
    finally:
        catalog.close()
    assert stored == {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert not (data_dir / "node.running").exists()
