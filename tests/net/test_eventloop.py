"""The event-driven reactors of accepted associations (net/eventloop.py): same behaviour, no polling."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from helpers import free_port, sample, start_node_process
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_ecg_node.net.eventloop import EventDrivenAssociation
from dicom_ecg_node.net.reactorgate import ReactorGate


def _requestor() -> AE:
    """A cart that also proposes Storage Commitment: pynetdicom's association serves it (a storage-only one is
    served on its connection's thread, net/lightassoc.py)."""
    ae = AE(ae_title="LOOPTEST")
    ae.add_requested_context(Verification)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.9.1.1")  # 12-lead ECG
    ae.add_requested_context("1.2.840.10008.1.20.1")  # Storage Commitment Push Model
    return ae


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_accepted_associations_are_event_driven_and_serve_store_echo_release(node) -> None:
    assoc = _requestor().associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    try:
        server = node.node._server
        assert _wait(lambda: len(server.active_associations) == 1)
        accepted = server.active_associations[0]
        assert isinstance(accepted, EventDrivenAssociation)
        # Senders from other threads (Storage Commitment reports) pause it through a race-free gate.
        assert isinstance(accepted._reactor_checkpoint, ReactorGate)
        ds = dcmread(sample("pydicom/waveform_ecg.dcm"))
        for _ in range(3):  # back to back: the reactor must look again before waiting after each message
            assert assoc.send_c_echo().Status == 0x0000
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert assoc.is_released
    # The acceptor's two threads end once the peer released.
    assert _wait(lambda: not accepted.is_alive() and not accepted.dul.is_alive())
    assert accepted.is_released and not accepted.is_aborted
    assert node.ingest.catalog.stats().instances == 1


def test_peer_abort_ends_the_accepted_association(node) -> None:
    assoc = _requestor().associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    server = node.node._server
    assert _wait(lambda: len(server.active_associations) == 1)
    accepted = server.active_associations[0]
    assoc.abort()
    assert _wait(lambda: not accepted.is_alive())
    assert accepted.is_aborted


def test_a_pdu_the_state_machine_cannot_take_ends_the_association_cleanly(node, monkeypatch) -> None:
    """An A-ABORT whose source is not a PS3.8 9.3.8 value (0x23): pynetdicom's state machine raises while turning
    it into a primitive, on the DUL reactor's thread, which died with the exception (as in pynetdicom's own
    reactor; found by differential fuzzing of P-DATA-TF). The association must end as after any DUL failure: an
    A-ABORT, the connection closed, both reactors gone, and the node serving."""
    import threading

    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(f"{args.exc_type.__name__}: "
                                                                          f"{args.exc_value}"))
    requestor = _requestor()
    assoc = requestor.associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    server = node.node._server
    assert _wait(lambda: len(server.active_associations) == 1)
    accepted = server.active_associations[0]
    assoc.dul.socket.send(b"\x07\x00\x00\x00\x00\x04\x00\x00\x23\x00")  # A-ABORT, source 0x23
    assert _wait(lambda: not accepted.is_alive() and not accepted.dul.is_alive())
    assert died == []
    assert accepted.is_aborted
    assert _wait(lambda: not server.active_associations)
    again = requestor.associate(node.host, node.port, ae_title=node.aet)
    assert again.send_c_echo().Status == 0x0000
    again.release()


def test_network_timeout_still_aborts_an_idle_association(node_factory) -> None:
    node = node_factory(network_timeout=0.5)
    assoc = _requestor().associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    started = time.monotonic()
    # Nothing is sent: the node's idle timer must fire although no socket event ever wakes its reactors.
    assert _wait(lambda: assoc.is_aborted, timeout=10)
    assert time.monotonic() - started >= 0.4
    assert _wait(lambda: not node.node._server.active_associations)


def test_a_silent_connection_is_closed_after_the_acse_timeout(node_factory) -> None:
    node = node_factory(acse_timeout=0.5)
    with socket.create_connection((node.host, node.port), timeout=10) as raw:
        started = time.monotonic()
        assert raw.recv(1) == b""  # closed by the node, not by our 10 s timeout
        assert 0.4 <= time.monotonic() - started < 8


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks (USER_HZ = 100)


def test_idle_associations_do_not_spin(tmp_path: Path) -> None:
    """Eight idle associations held open for 3 s: pynetdicom's 1 ms polling threads burnt ~0.5 CPU-s here."""
    port = free_port()
    proc = start_node_process(tmp_path / "data", port, tmp_path / "node.log", "--workers", "1")
    ae = _requestor()
    assocs = []
    try:
        assocs = [ae.associate("127.0.0.1", port, ae_title="ECGNODE") for _ in range(8)]
        assert all(a.is_established for a in assocs)
        time.sleep(0.5)  # association set-up work done
        before = _cpu_seconds(proc.pid)
        time.sleep(3.0)
        used = _cpu_seconds(proc.pid) - before
        assert used < 0.25, f"node used {used:.2f} CPU-s with 8 idle associations in 3 s"
        assert all(a.send_c_echo().Status == 0x0000 for a in assocs)  # and they still answer at once
    finally:
        for a in assocs:
            a.release()
        proc.terminate()
        proc.wait(timeout=60)


def test_server_contexts_copy_cheaply_and_independently(node) -> None:
    """pynetdicom deep-copies the server's contexts per association; the copies must still be independent."""
    import copy

    server = node.node._server
    original = server.contexts
    copies = copy.deepcopy(original)
    assert [(c.abstract_syntax, c.transfer_syntax, c.scu_role, c.scp_role) for c in copies] == \
        [(c.abstract_syntax, c.transfer_syntax, c.scu_role, c.scp_role) for c in original]
    copies[0].transfer_syntax.append("1.2.3")  # a negotiation changing a copy leaves the server's list alone
    assert "1.2.3" not in original[0].transfer_syntax
    assert copies[0] is not original[0] and copies[0].abstract_syntax is original[0].abstract_syntax


def test_the_nodes_own_requests_park_their_reactor_behind_a_gate(node, monkeypatch) -> None:
    """``ecg-node echo`` / ``send`` associations get the reactor gate: a response cannot be taken by their reactor.

    Recorded at ``ApplicationEntity.associate``; the requests go to the node as usual.
    """
    from pynetdicom import evt
    from pynetdicom.ae import ApplicationEntity

    from dicom_ecg_node.net.reactorgate import gate_reactor
    from dicom_ecg_node.net.scu import echo, send

    asked: list[list[object]] = []
    gated: list[bool] = []
    real = ApplicationEntity.associate

    def associate(self: ApplicationEntity, *args: object, **kwargs: object) -> object:
        asked.append(list(kwargs.get("evt_handlers") or []))  # type: ignore[call-overload]
        assoc = real(self, *args, **kwargs)
        gated.append(isinstance(assoc._reactor_checkpoint, ReactorGate))
        return assoc

    monkeypatch.setattr(ApplicationEntity, "associate", associate)
    assert echo(node.host, node.port, called_aet=node.aet) == 0x0000
    results = send(node.host, node.port, [sample("pydicom/waveform_ecg.dcm")], called_aet=node.aet)
    assert [r.status for r in results] == [0x0000]
    assert len(asked) == 2 and all((evt.EVT_CONN_OPEN, gate_reactor) in handlers for handlers in asked)
    assert gated == [True, True]
