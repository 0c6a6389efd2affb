"""ORU^R01 results: queued when an ECG is stored, kept across a node restart, delivered to a receiver that comes up
late; ``ecg-node outbox`` shows the queue."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import hl7
import pytest
from click.testing import CliRunner
from helpers import free_port

from dicom_ecg_node.cli import main
from dicom_ecg_node.hl7.mllp import MllpReader, frame
from dicom_ecg_node.services.outbox import Outbox, backoff_seconds
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg


class Receiver:
    """A test MLLP receiver (plain sockets): records every message, answers AA."""

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.messages: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                reader = MllpReader()
                while data := conn.recv(65536):
                    for msg in reader.feed(data):
                        assert isinstance(msg, bytes)
                        self.messages.append(msg)
                        ctrl = msg.split(b"\r")[0].split(b"|")[9]
                        conn.sendall(frame(b"MSH|^~\\&|RIS||ECGNODE||20260301||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|"
                                           + ctrl + b"\r"))

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does (EINVAL).
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the test receiver did not stop"


@pytest.fixture
def receiver_port() -> Iterator[int]:
    yield free_port()


def wait_for(predicate, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert backoff_seconds(50) == 600.0


def test_results_survive_restart_and_reach_a_late_receiver(hl7_factory, receiver_port: int) -> None:
    target = f"127.0.0.1:{receiver_port}"
    first = hl7_factory(hl7_results_to=(target,), hl7_port=None)
    ingest = first.running.ingest
    data = ecg_to_bytes(synthesize_ecg(seed=3, patient_id="R1", patient_name="Result^Rita",
                                       accession_number="ACC-R1"))
    outcome = ingest.store(data, sender_ae="CART", sender_address="local")
    box = Outbox(ingest.catalog)
    # The receiver is down: the first attempt fails and the row waits for its back-off.
    wait_for(lambda: [i.attempts for i in box.list()] == [1])
    [item] = box.list()
    assert item.status == "pending" and item.sop_instance_uid == outcome.sop_instance_uid and item.last_error
    # A duplicate store queues nothing more.
    ingest.store(data, sender_ae="CART", sender_address="local")
    assert len(box.list()) == 1
    first.hl7.stop()
    first.running.node.stop()
    first.running.ingest.close()

    result = CliRunner().invoke(main, ["outbox", "--json", "--data-dir", str(first.running.config.data_dir)])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["status"] == "pending" and row["attempts"] == 1 and row["receiver"] == target

    receiver = Receiver(receiver_port)
    try:
        second = hl7_factory(hl7_results_to=(target,), hl7_port=None)  # same data directory: a restart
        box2 = Outbox(second.running.ingest.catalog)
        wait_for(lambda: [i.status for i in box2.list()] == ["delivered"])
        assert len(receiver.messages) == 1
    finally:
        receiver.close()
    msg = hl7.parse(receiver.messages[0].decode("utf-8"))
    assert str(msg.segment("MSH")(9)) == "ORU^R01^ORU_R01"
    assert str(msg.segment("MSH")(10)) == row["control_id"]  # built once, before the restart, sent unchanged
    pid = msg.segment("PID")
    assert str(pid(3)).startswith("R1") and str(pid(5)) == "Result^Rita"
    assert str(msg.segment("OBR")(18)) == "ACC-R1"
    obx = msg.segments("OBX")
    numeric = [o for o in obx if str(o(2)) == "NM"]
    assert numeric and all(str(o(6)).endswith("^UCUM") for o in numeric)
    [pdf] = [o for o in obx if str(o(2)) == "ED"]
    ed = str(pdf(5)).split("^")
    assert ed[1:4] == ["AP", "PDF", "Base64"]
    assert base64.b64decode(ed[4]).startswith(b"%PDF")
