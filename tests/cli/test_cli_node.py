"""``ecg-node serve``, ``echo`` and ``send`` as an admin runs them."""

from __future__ import annotations

import signal
import time

import pydicom
import pytest
from click.testing import CliRunner
from helpers import free_port, renumbered_copy, sample, start_node_process
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from dicom_ecg_node.cli import main

MORTARA = sample("pydicom/waveform_ecg.dcm")


def test_echo_command(node):
    result = CliRunner().invoke(main, ["echo", "127.0.0.1", str(node.port), "--aet", node.aet])
    assert result.exit_code == 0, result.output
    assert "status 0x0000" in result.output


def test_echo_command_to_nobody_fails_cleanly():
    result = CliRunner().invoke(main, ["echo", "127.0.0.1", str(free_port()), "--timeout", "2"])
    assert result.exit_code == 2
    assert "association" in result.output


def test_send_command_reports_refusals(node, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    good = [renumbered_copy(MORTARA, folder / f"g{i}.dcm") for i in range(3)]
    bad = folder / "bad.dcm"
    bad.write_bytes(sample("ecgtoolkit/Example.dcm").read_bytes())
    result = CliRunner().invoke(main, ["send", "127.0.0.1", str(node.port), str(folder), "--aet", node.aet])
    assert result.exit_code == 1
    assert "sent 3 of 4 files" in result.output
    assert "0xA900" in result.output
    stored = {r.sop_instance_uid for r in node.ingest.catalog.list_instances()}
    assert stored == {pydicom.dcmread(p).SOPInstanceUID for p in good}


def test_serve_finishes_the_association_in_flight_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / "node.log"
    proc = start_node_process(tmp_path / "data", port, log)
    try:
        ae = AE(ae_title="CART1")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.9.1.1", ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="ECGNODE")
        assert assoc.is_established
        proc.send_signal(signal.SIGTERM)
        # The node no longer accepts new associations...
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            late = AE(ae_title="LATE")
            late.add_requested_context("1.2.840.10008.1.1")
            probe = late.associate("127.0.0.1", port, ae_title="ECGNODE")
            if not probe.is_established:
                break
            probe.release()
            time.sleep(0.05)
        # ...but the one in flight still stores.
        status = assoc.send_c_store(renumbered_copy(MORTARA, tmp_path / "late.dcm"))
        assert status.Status == 0x0000
        assoc.release()
        assert proc.wait(timeout=30) == 0
        assert "associations in flight" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_taken_port_says_so_and_exits(tmp_path, workers):
    import socket
    import subprocess
    import sys

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "dicom_ecg_node", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(tmp_path / "data"), "--workers", workers],
            capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
