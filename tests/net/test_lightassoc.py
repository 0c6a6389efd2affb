"""net/lightassoc.py: verification and query associations served on their connection's thread."""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from pathlib import Path

import pytest
from helpers import RunningNode, request_association, run_dcmtk
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as SRFIND  # noqa: N814

VERIFICATION = "1.2.840.10008.1.1"
TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"


def _light(node: RunningNode):
    return node.node._server.light


def _associate(node: RunningNode, *contexts: str, ae_title: str = "VIEWER"):
    ae = AE(ae_title=ae_title)
    for uid in contexts:
        ae.add_requested_context(uid)
    return request_association(ae, node.host, node.port, ae_title=node.aet)


def test_echo_find_and_store_associations_are_served_light_commitment_by_pynetdicom(node: RunningNode) -> None:
    light = _light(node)
    assoc = _associate(node, VERIFICATION, SRFIND)
    assert assoc.is_established
    assert light.count() == 1 and not node.node._server.active_associations
    assert assoc.send_c_echo().Status == 0x0000
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "NOBODY"
    ds.StudyInstanceUID = ""
    assert [int(s.Status) for s, _ in assoc.send_c_find(ds, SRFIND)] == [0x0000]
    assoc.release()
    deadline = time.monotonic() + 5
    while light.count() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert light.count() == 0 and light.served == 1
    # A cart's storage association is served light too (its C-STOREs: tests/net/test_faststore.py).
    cart = _associate(node, VERIFICATION, TWELVE_LEAD, ae_title="CART")
    assert cart.is_established and light.count() == 1 and not node.node._server.active_associations
    assert cart.send_c_echo().Status == 0x0000
    cart.release()
    # Storage Commitment (N-ACTION, N-EVENT-REPORT) goes to pynetdicom's association machinery.
    committing = _associate(node, VERIFICATION, TWELVE_LEAD, STORAGE_COMMITMENT, ae_title="CART")
    assert committing.is_established
    assert len(node.node._server.active_associations) == 1
    assert committing.send_c_echo().Status == 0x0000
    committing.release()
    assert light.served == 2
    # Each distinct A-ASSOCIATE-RQ is decoded and negotiated once: the same viewer's next request reuses that.
    again = _associate(node, VERIFICATION, SRFIND)
    assert again.send_c_echo().Status == 0x0000
    again.release()
    assert light.served == 3
    # The viewer's and the cart's (light), the committing cart's (pynetdicom's).
    assert sorted(plan is None for plan in light._plans.values()) == [False, False, True]


def test_relational_queries_are_negotiated_and_served_light(node: RunningNode) -> None:
    from datetime import UTC, datetime

    from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
    from query.querydata import make_record

    for i, hour in enumerate((9, 7)):  # stored out of time order: answers come in acquisition order
        node.ingest.catalog.add_instance(make_record(f"1.2.826.7.{i}.1", patient_id="PREL", study=f"1.2.826.7.{i}",
                                                     when=datetime(2026, 5, 1, hour, tzinfo=UTC)))
    ask = SOPClassExtendedNegotiation()
    ask.sop_class_uid = SRFIND
    ask.service_class_application_information = b"\x01\x01\x01\x01"  # relational, date-time, fuzzy, timezone
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(SRFIND)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, ext_neg=[ask])
    assert assoc.is_established and _light(node).count() == 1 and not node.node._server.active_associations
    # PS3.4 C.5.1.1: the A-ASSOCIATE-AC answers each byte; fuzzy semantic person-name matching is declined.
    assert assoc.acceptor.sop_class_extended == {SRFIND: b"\x01\x01\x00\x01"}
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.PatientID = "PREL"  # no Study or Series UID: only a relational query may ask this (C.4.1.2.2)
    ds.SOPInstanceUID = ""
    got = [(int(s.Status), a.SOPInstanceUID if a else None) for s, a in assoc.send_c_find(ds, SRFIND)]
    assoc.release()
    assert got == [(0xFF00, "1.2.826.7.1.1"), (0xFF00, "1.2.826.7.0.1"), (0x0000, None)]
    assert _light(node).served == 1
    # The same request without the item is hierarchical: the same identifier is refused (0xA900, PS3.4 C.4.1.1.4).
    plain = AE(ae_title="VIEWER")
    plain.add_requested_context(SRFIND)
    assoc = plain.associate(node.host, node.port, ae_title=node.aet)
    assert assoc.acceptor.sop_class_extended == {}
    statuses = [int(s.Status) for s, _ in assoc.send_c_find(ds, SRFIND)]
    assoc.release()
    assert statuses == [0xA900] and _light(node).served == 2


@pytest.mark.dcmtk
def test_dcmtk_echoscu_and_release_are_logged_and_audited(node: RunningNode, caplog) -> None:
    caplog.set_level("INFO", logger="dicom_ecg_node.net")
    result = run_dcmtk("echoscu", "-aet", "DCMTKECHO", "-aec", node.aet, node.host, str(node.port))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _light(node).served == 1
    deadline = time.monotonic() + 5
    while "association released: calling AE 'DCMTKECHO'" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "association accepted: calling AE 'DCMTKECHO' from 127.0.0.1" in caplog.text
    assert "association released: calling AE 'DCMTKECHO'" in caplog.text
    node.node.audit.flush()
    lines = "".join(p.read_text() for p in (node.config.data_dir / "audit").glob("*"))
    assert '"event":"association","outcome":"accepted","node":"ECGNODE","ae":"DCMTKECHO"' in lines


def test_strict_access_control_applies(node_factory) -> None:
    node = node_factory(accept_unknown=False)
    assoc = _associate(node, VERIFICATION, ae_title="STRANGER")
    assert assoc.is_rejected
    assert (assoc.acceptor.primitive.result, assoc.acceptor.primitive.result_source,
            assoc.acceptor.primitive.diagnostic) == (1, 1, 3)
    node.node.retrieve.registry.add("ECHOONLY", "127.0.0.1", 104, permissions="echo")
    assoc = _associate(node, VERIFICATION, SRFIND, ae_title="ECHOONLY")
    assert assoc.is_established and _light(node).served == 2
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "X"
    statuses = [int(s.Status) for s, _ in assoc.send_c_find(ds, SRFIND)]
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert statuses == [0x0124]  # PS3.7 C.5.13 not authorized: no find permission


def test_per_peer_limit_counts_light_associations(node_factory) -> None:
    node = node_factory(max_associations_per_peer=1)
    first = _associate(node, VERIFICATION)
    assert first.is_established
    second = _associate(node, VERIFICATION)  # light as well
    third = _associate(node, VERIFICATION, TWELVE_LEAD, ae_title="CART")  # pynetdicom's path
    first.release()
    for refused in (second, third):
        assert refused.is_rejected
        rj = refused.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (2, 3, 2)


def test_idle_association_is_aborted_after_the_network_timeout(node_factory) -> None:
    node = node_factory(network_timeout=1.0)
    assoc = _associate(node, VERIFICATION)
    assert assoc.is_established
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted and _light(node).count() == 0


def test_p_data_pdus_are_pynetdicoms_bytes() -> None:
    from types import SimpleNamespace

    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from dicom_ecg_node.net.lightassoc import _LightDUL

    primitive = P_DATA()
    primitive.presentation_data_value_list.append((1, b"\x03" + b"c" * 13))  # a command
    primitive.presentation_data_value_list.append((3, b"\x02" + bytes(range(256)) * 3))  # a last data fragment
    expected = P_DATA_TF()
    expected.from_primitive(primitive)
    a, b = socket.socketpair()
    with a, b:
        dul = _LightDUL(SimpleNamespace(poll_peer=lambda: None, connection_lost=None), a)
        dul.send_pdu(primitive)  # the last data fragment of a message: sent at once
        sent = expected.encode()
        received = b""
        while len(received) < len(sent):
            received += b.recv(65536)
    assert received == sent


def _request_bytes(node: RunningNode, abstract_syntax: str = VERIFICATION, calling: str = "RAW",
                   application_context: str = "1.2.840.10008.3.1.1.1") -> bytes:
    """An A-ASSOCIATE-RQ proposing ``abstract_syntax`` as presentation context 1 (Explicit VR Little Endian)."""
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = application_context
    primitive.calling_ae_title = calling
    primitive.called_ae_title = node.aet
    cx = build_context(abstract_syntax, "1.2.840.10008.1.2.1")
    cx.context_id = 1
    primitive.presentation_context_definition_list = [cx]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    header = b""
    while len(header) < 6:
        header += sock.recv(6 - len(header))
    length = struct.unpack(">I", header[2:])[0]
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return header[0], body


def _with_context_ids(request: bytes, ids: list[int], protocol_version: int = 1) -> bytes:
    """``request`` (an A-ASSOCIATE-RQ) with its presentation context items renumbered ``ids`` in order."""
    out = bytearray(request)
    out[6:8] = struct.pack(">H", protocol_version)
    pos, numbered = 74, iter(ids)  # after the PDU header and the fixed fields (PS3.8 9.3.2)
    while pos < len(out):
        kind, length = out[pos], struct.unpack(">H", out[pos + 2:pos + 4])[0]
        if kind == 0x20:  # Presentation Context Item (PS3.8 9.3.2.2): its ID is the first byte of its value
            out[pos + 4] = next(numbered)
        pos += 4 + length
    return bytes(out)


def _answer(node: RunningNode, request: bytes) -> tuple[int, bytes]:
    """The node's first PDU for ``request``; an association it accepts is released."""
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(request)
        answer = _read_pdu(sock)
        if answer[0] == 0x02:
            sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ
            assert _read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
    return answer


@pytest.mark.parametrize(("ids", "version", "kind"), [([1, 1], 1, 0x02), ([3, 3], 1, 0x02), ([1, 3], 2, 0x03)])
def test_requests_pynetdicom_reads_its_own_way_are_left_to_it(node_factory, tmp_path: Path, ids: list[int],
                                                             version: int, kind: int) -> None:
    """Two presentation contexts with one ID (PS3.8 9.3.2.2 wants them unique) or a protocol version other than 1
    (PS3.8 9.3.2; pynetdicom answers A-ASSOCIATE-RJ 1/2/2): answered by pynetdicom, byte for byte what a node
    without light associations answers (found by differential fuzzing: the light path accepted both, with one
    result per context)."""
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    light = node_factory()
    plain = node_factory(data_dir=tmp_path / "plain")
    plain.node._server.light = None
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = "RAW", light.aet
    contexts = [build_context(VERIFICATION, "1.2.840.10008.1.2.1"), build_context(SRFIND, "1.2.840.10008.1.2")]
    for number, cx in enumerate(contexts):
        cx.context_id = 2 * number + 1
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    request = _with_context_ids(pdu.encode(), ids, version)
    answers = [_answer(node, request) for node in (light, plain)]
    assert answers[0] == answers[1]
    assert answers[0][0] == kind
    assert light.node._server.light.served == 0
    # The same request, well formed, is served light.
    assert _answer(light, _with_context_ids(pdu.encode(), [1, 3]))[0] == 0x02
    assert light.node._server.light.served == 1


@pytest.mark.parametrize("proposed", ["1.2.840.10008.3.1.1.1", "1.2.826.0.1.3680043.9.7.1"])
def test_the_accept_names_the_dicom_application_context_as_pynetdicoms_does(node_factory, tmp_path: Path,
                                                                           proposed: str) -> None:
    """PS3.7 A.2.1: the A-ASSOCIATE-AC names the DICOM Application Context, whatever the requestor proposed; the
    light path's A-ASSOCIATE-AC is byte for byte the one pynetdicom sends (found by differential fuzzing of
    A-ASSOCIATE-RQs: the light path echoed the proposed name)."""
    light = node_factory()
    plain = node_factory(data_dir=tmp_path / "plain")
    plain.node._server.light = None  # every association pynetdicom's
    answers = []
    for node in (light, plain):
        with socket.create_connection((node.host, node.port), timeout=10) as sock:
            sock.sendall(_request_bytes(node, application_context=proposed))
            answers.append(_read_pdu(sock))
            sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ
            assert _read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
    assert light.node._server.light.served == 1
    assert answers[0] == answers[1]
    kind, body = answers[0]
    assert kind == 0x02
    accept = A_ASSOCIATE_AC()
    accept.decode(b"\x02\x00" + struct.pack(">I", len(body)) + body)
    assert accept.application_context_name == "1.2.840.10008.3.1.1.1"


def test_unexpected_pdu_and_malformed_data_are_aborted(node: RunningNode) -> None:
    request = _request_bytes(node)
    for bad in (request, b"\x04\x00\x00\x00\x00\x03\x00\x00\x00"):  # a second A-ASSOCIATE-RQ; a P-DATA cut short
        with socket.create_connection((node.host, node.port), timeout=10) as sock:
            sock.sendall(request)
            assert _read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
            sock.sendall(bad)
            kind, _ = _read_pdu(sock)
            assert kind == 0x07  # A-ABORT
        assert _light(node).served >= 1
    # The node keeps serving.
    assoc = _associate(node, VERIFICATION)
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def _store_command(dataset_type: int | None) -> bytes:
    """A C-STORE-RQ command set (PS3.7 9.3.1.1), with ``dataset_type`` as Command Data Set Type or without it."""
    def element(number: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, number, len(value)) + value

    body = b"".join((
        element(0x0002, TWELVE_LEAD.encode() + b"\0"), element(0x0100, struct.pack("<H", 0x0001)),
        element(0x0110, struct.pack("<H", 1)), element(0x0700, struct.pack("<H", 0)),
        b"" if dataset_type is None else element(0x0800, struct.pack("<H", dataset_type)),
        element(0x1000, b"1.2.3.4\0")))
    return element(0x0000, struct.pack("<I", len(body))) + body


def _p_data(*pdvs: tuple[int, bytes]) -> bytes:
    """A P-DATA-TF PDU of (message control header, fragment) values on presentation context 1 (PS3.8 9.3.5)."""
    items = b"".join(struct.pack(">IBB", len(value) + 2, 1, header) + value for header, value in pdvs)
    return struct.pack(">BBI", 0x04, 0, len(items)) + items


@pytest.mark.parametrize("dataset_type", [None, 0x0101, 0x0000])
def test_a_store_command_without_its_data_set_type_is_aborted(node: RunningNode, dataset_type: int | None) -> None:
    """PS3.7 Table 9.3-1: Command Data Set Type is mandatory. A C-STORE-RQ command set without it is aborted, as
    pynetdicom's decoder fails on it, even with a data set after it. One saying 0101H (no data set) is answered
    with a failure, as through pynetdicom (its handler gets an empty data set); the well-formed one is stored."""
    from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

    part10 = ecg_to_bytes(synthesize_ecg(seed=3, duration_s=1.0, transfer_syntax="explicit",
                                         sop_instance_uid="1.2.3.4"))
    meta_length = struct.unpack_from("<I", part10, 140)[0]  # (0002,0000) UL, right after DICM
    dataset = part10[144 + meta_length:]
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(_request_bytes(node, TWELVE_LEAD, calling="CART"))
        kind, body = _read_pdu(sock)
        assert kind == 0x02  # A-ASSOCIATE-AC
        fragments = [(0x03, _store_command(dataset_type))]  # the command, last fragment
        if dataset_type != 0x0101:
            fragments.append((0x02, dataset))  # the data set, last fragment
        sock.sendall(_p_data(*fragments))
        kind, body = _read_pdu(sock)
    if dataset_type is None:
        assert kind == 0x07  # A-ABORT
        assert node.ingest.catalog.stats().instances == 0
        return
    assert kind == 0x04  # P-DATA-TF: the C-STORE-RSP
    at = body.find(struct.pack("<HHI", 0, 0x0900, 2))  # (0000,0900) Status, US
    assert at > 0
    status = struct.unpack_from("<H", body, at + 8)[0]
    if dataset_type == 0x0101:
        assert status >= 0xA000  # a failure
        assert node.ingest.catalog.stats().instances == 0
    else:
        assert status == 0x0000
        assert node.ingest.catalog.stats().instances == 1


@pytest.mark.parametrize("others", [0, 1])
def test_a_lone_store_is_prepared_while_its_data_set_is_on_its_way(node: RunningNode, monkeypatch,
                                                                   others: int) -> None:
    """A C-STORE-RQ's command set names the SOP Instance UID: while the node serves that association alone it
    looks the UID up before the data set arrives (faststore.announce, services/ingest.py "Announced stores") and
    the store is given that answer; with another association open it leaves the lookup to the store."""
    import threading

    from dicom_ecg_node.services.ingest import StorePreparation
    from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

    part10 = ecg_to_bytes(synthesize_ecg(seed=4, duration_s=1.0, transfer_syntax="explicit",
                                         sop_instance_uid="1.2.3.4"))
    dataset = part10[144 + struct.unpack_from("<I", part10, 140)[0]:]
    ingest = node.ingest
    real_prepare, real_store = ingest.prepare, ingest.store
    prepared: list[tuple[str, object]] = []
    given: list[object] = []
    announced = threading.Event()

    def prepare(uid: str) -> object:
        result = real_prepare(uid)
        prepared.append((uid, result))
        announced.set()
        return result

    def store(data: bytes, **kw: object) -> object:
        given.append(kw.get("prepared"))
        return real_store(data, **kw)

    monkeypatch.setattr(ingest, "prepare", prepare)
    monkeypatch.setattr(ingest, "store", store)
    idle = [_associate(node, VERIFICATION, ae_title="IDLE") for _ in range(others)]
    try:
        assert all(assoc.is_established for assoc in idle)
        with socket.create_connection((node.host, node.port), timeout=10) as sock:
            sock.sendall(_request_bytes(node, TWELVE_LEAD, calling="CART"))
            assert _read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
            sock.sendall(_p_data((0x03, _store_command(0x0000))))  # the command set alone, its data set to follow
            assert announced.wait(2.0) is (others == 0)  # looked up before a byte of the data set was sent
            assert given == []
            sock.sendall(_p_data((0x02, dataset)))
            kind, body = _read_pdu(sock)
    finally:
        for assoc in idle:
            assoc.release()
    assert kind == 0x04  # P-DATA-TF: the C-STORE-RSP
    at = body.find(struct.pack("<HHI", 0, 0x0900, 2))  # (0000,0900) Status, US
    assert at > 0 and struct.unpack_from("<H", body, at + 8)[0] == 0x0000
    if others == 0:
        assert prepared == [("1.2.3.4", StorePreparation("1.2.3.4", absent=True))]
        assert given == [StorePreparation("1.2.3.4", absent=True)]
    else:
        assert prepared == [] and given == [None]  # the store's transaction looked the UID up
    entry = ingest.catalog.find_instance_file("1.2.3.4")
    stored = ingest.archive.resolve(entry.path).read_bytes()
    assert stored.endswith(dataset) and hashlib.sha256(stored).hexdigest() == entry.sha256  # the data set as sent


def test_an_echo_command_without_its_data_set_type_is_aborted_at_once(node: RunningNode) -> None:
    """Every DIMSE command set has a Command Data Set Type (PS3.7 Annex E): without it the node aborts, as
    pynetdicom does, instead of waiting for a data set that may never come."""
    def element(number: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, number, len(value)) + value

    body = b"".join((element(0x0002, VERIFICATION.encode() + b"\0"), element(0x0100, struct.pack("<H", 0x0030)),
                     element(0x0110, struct.pack("<H", 1))))
    command = element(0x0000, struct.pack("<I", len(body))) + body
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(_request_bytes(node))
        assert _read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
        sock.sendall(_p_data((0x03, command)))
        assert _read_pdu(sock)[0] == 0x07  # A-ABORT, not a wait for the socket's timeout
    assoc = _associate(node, VERIFICATION)  # and the node keeps serving
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def _ending(node: RunningNode, after_accept: bytes, abstract_syntax: str) -> bytes:
    """What the node sends after its A-ASSOCIATE-AC when ``after_accept`` follows the request, until it closes."""
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(_request_bytes(node, abstract_syntax, calling="CART"))
        assert _read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
        sock.sendall(after_accept)
        kind, body = _read_pdu(sock)
        return bytes([kind, 0]) + struct.pack(">I", len(body)) + body


def _echo_command(with_type: bool) -> bytes:
    def element(number: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, number, len(value)) + value

    body = b"".join((element(0x0002, VERIFICATION.encode() + b"\0"), element(0x0100, struct.pack("<H", 0x0030)),
                     element(0x0110, struct.pack("<H", 1)))
                    + ((element(0x0800, struct.pack("<H", 0x0101)),) if with_type else ()))
    return element(0x0000, struct.pack("<I", len(body))) + body


@pytest.mark.parametrize(("case", "as_pynetdicom"), [
    ("P-DATA cut short", True), ("no Command Data Set Type", True), ("command set cut short", True),
    ("fragment on an unaccepted context", False)])
def test_a_malformed_message_is_aborted_by_the_service_provider(node_factory, tmp_path: Path, case: str,
                                                                as_pynetdicom: bool) -> None:
    """A P-DATA-TF or DIMSE message the node cannot read ends the association with an A-P-ABORT (PS3.8 7.3.2:
    source 2, the service provider; reason 0, as pynetdicom's state machine sends, AA-8), byte for byte what a
    node without light associations sends. Found by differential fuzzing of P-DATA-TF: the light path sent an
    A-ABORT as the service user (source 0), which tells the peer that the node's application chose to abort.
    A fragment on a context that was not accepted makes pynetdicom fail inside its reactor, which then aborts as
    the service user; the light path answers it as the protocol error it is."""
    light = node_factory()
    plain = node_factory(data_dir=tmp_path / "plain")
    plain.node._server.light = None
    good = _echo_command(with_type=True)
    after = {
        "P-DATA cut short": b"\x04\x00\x00\x00\x00\x03\x00\x00\x00",
        "no Command Data Set Type": _p_data((0x03, _echo_command(with_type=False))),
        "command set cut short": _p_data((0x03, good[:-3])),
        "fragment on an unaccepted context": _p_data((0x01, good[:20])) + struct.pack(
            ">BBIIBB", 0x04, 0, 6 + len(good) - 20, 2 + len(good) - 20, 3, 0x03) + good[20:],
    }[case]
    ending, theirs = _ending(light, after, VERIFICATION), _ending(plain, after, VERIFICATION)
    assert ending == b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00"  # A-ABORT, source 2, reason 0
    assert theirs[0] == 0x07 and (theirs == ending) is as_pynetdicom
    assoc = _associate(light, VERIFICATION)  # and the node keeps serving
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_stop_waits_for_a_running_light_association_then_closes_it(node_factory) -> None:
    node = node_factory()
    assoc = _associate(node, VERIFICATION)
    assert assoc.is_established
    started = time.monotonic()
    node.node.stop(grace_s=1.0)
    assert 0.9 <= time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not assoc.is_established


def test_stop_sends_an_a_abort_to_an_association_still_open_after_the_grace_time(node_factory) -> None:
    """As pynetdicom's server does: the peer is told (A-ABORT, source 0: the node as service user), not just cut."""
    import threading

    node = node_factory()
    light = _light(node)
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(_request_bytes(node))
        assert _read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC; then the peer stays silent
        stopper = threading.Thread(target=node.node.stop, kwargs={"grace_s": 0.5})
        stopper.start()
        received = b""
        while chunk := sock.recv(100):
            received += chunk
        stopper.join(10)
    # A-ABORT (type 07, length 4: reserved, reserved, source 0, reason 0), then the connection closed.
    assert received == b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    assert light.count() == 0


def test_release_response_bytes_are_pynetdicoms(node: RunningNode) -> None:
    """The constant A-RELEASE-RP (PS3.8 9.3.7) is what pynetdicom encodes, and a real release receives it."""
    from pynetdicom.pdu import A_RELEASE_RP

    from dicom_ecg_node.net.lightassoc import A_RELEASE_RP_PDU

    assert A_RELEASE_RP().encode() == A_RELEASE_RP_PDU
    light = node.node._server.light
    served = light.served
    ae = AE(ae_title="SCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.aet)
    assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert assoc.is_released and not assoc.is_aborted
    assert light.served == served + 1  # served by the light path, whose release this is
