"""Several receiving processes accepting from one shared port, sharing one archive and SQLite catalog."""

from __future__ import annotations

import os
import signal
import threading
import time

import pydicom
import pytest
from helpers import free_port, make_config, renumbered_copy, sample, start_node_process
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from dicom_ecg_node.net.workers import worker_count

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_two_workers_store_from_four_associations(tmp_path):
    port = free_port()
    data_dir = tmp_path / "data"
    log = tmp_path / "node.log"
    proc = start_node_process(data_dir, port, log, "--workers", "2")
    try:
        # start_node_process returns once one worker answers; the other may still be starting. The parent says
        # when both accept (the benchmark waits for that line too).
        deadline = time.monotonic() + 60
        while "all 2 workers accepting on port" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
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

        # Four carts at once, ten ECGs each: the associations overlap, so the workers must split them 2:2.
        threads = [threading.Thread(target=cart, args=(files[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [0] * 40
        # The derived work of both workers' stores runs in the parent (services/derived.py), which finds them in
        # the catalog: every stored ECG gets its device-clock observation without a store listener in that process.
        from dicom_ecg_node.catalog import Catalog

        catalog = Catalog.open(f"sqlite:///{data_dir / 'catalog.sqlite'}")
        try:
            observation = catalog.models.ClockObservation
            deadline = time.monotonic() + 30
            while observation.select().count() < 40:
                assert time.monotonic() < deadline, f"{observation.select().count()} of 40 observed"
                time.sleep(0.1)
            observed = {o.sop_instance_uid for o in observation.select(observation.sop_instance_uid)}
        finally:
            catalog.close()
        assert observed == {pydicom.dcmread(f).SOPInstanceUID for f in files}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "started 2 worker processes" in text
    assert text.count("listening as AE") == 2 and "[w0]" in text and "[w1]" in text
    # The less loaded worker takes the next connection (net.server.AcceptBalancer); SO_REUSEPORT's hash often
    # gave one worker three or four of them.
    accepted = [line for line in text.splitlines() if "association accepted: calling AE 'CART'" in line]
    assert len(accepted) == 4
    assert sum("[w0]" in line for line in accepted) == 2, accepted

    from dicom_ecg_node.catalog import Catalog

    catalog = Catalog.open(f"sqlite:///{data_dir / 'catalog.sqlite'}")
    try:
        stored = {r.sop_instance_uid for r in catalog.list_instances()}
    finally:
        catalog.close()
    assert stored == {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert not (data_dir / "node.running").exists()


def test_worker_count_zero_means_two_per_core():
    cores = os.cpu_count() or 1
    assert worker_count(0) == 2 * cores
    assert worker_count(1) == 1 and worker_count(3) == 3


@pytest.mark.timeout(120)
def test_workers_zero_starts_two_processes_per_core_on_one_port(tmp_path):
    port = free_port()
    log = tmp_path / "node.log"
    expected = 2 * (os.cpu_count() or 1)
    proc = start_node_process(tmp_path / "data", port, log, "--workers", "0")
    try:
        deadline = time.monotonic() + 60
        while f"all {expected} workers accepting on port {port}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        ae = AE(ae_title="CART")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="ECGNODE")
        assert assoc.is_established
        assert int(assoc.send_c_echo().Status) == 0
        assoc.release()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert f"started {expected} worker processes" in text
    assert text.count("listening as AE") == expected


def test_a_started_serving_process_freezes_its_heap_out_of_full_collections(tmp_path):
    """net/workers.py _freeze_heap: what the started node holds is left out of the collector's full passes."""
    import gc

    from dicom_ecg_node.net.workers import serve_in_process

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    config = make_config(tmp_path, port=free_port(), accept_unknown=True, analysis="off")
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=serve_in_process, args=(config, stop), kwargs={"ready": ready})
    runner.start()
    try:
        assert ready.wait(30)
        frozen = gc.get_freeze_count()
        ae = AE(ae_title="PROBE")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", config.port, ae_title=config.aet)
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        stop.set()
        runner.join(30)
        gc.unfreeze()  # this test process goes on: its objects are collectable again
    assert not runner.is_alive()
    assert frozen > 1000  # the node's modules, catalog and AE, at least
