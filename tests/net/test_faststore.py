"""net/faststore.py: C-STORE requests assembled and answered without pydicom, byte for byte pynetdicom's."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
import pytest
from helpers import renumbered_copy, sample
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode, encode_file_meta
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext

from dicom_ecg_node.net import faststore
from dicom_ecg_node.net.faststore import (
    FastCStore,
    PDataAssembler,
    file_meta,
    parse_command,
    request_primitive,
    response_command,
    store_request,
    store_response_command,
)
from dicom_ecg_node.net.reactorgate import gate_reactor

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
VERIFICATION = "1.2.840.10008.1.1"


@pytest.mark.parametrize("status,comment", [(0x0000, None), (0xA900, "SOPClassUID: mismatch"),
                                            (0xC000, "odd length comment!"), (0xA700, "")])
@pytest.mark.parametrize("iuid", ["1.2.3.4", "1.2.3.45"])
def test_store_response_command_is_pynetdicoms(status: int, comment: str | None, iuid: str) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 513
    rsp.AffectedSOPClassUID = TWELVE_LEAD
    rsp.AffectedSOPInstanceUID = iuid
    rsp.Status = status
    if comment is not None:
        rsp.ErrorComment = comment
    msg = C_STORE_RSP()
    msg.primitive_to_message(rsp)
    assert store_response_command(513, TWELVE_LEAD, iuid, status, comment) == encode(msg.command_set, True, True)


@pytest.mark.parametrize("kind", ["echo", "find"])
@pytest.mark.parametrize("status,comment", [(0x0000, None), (0xFE00, None), (0xC311, "query failed: odd"),
                                            (0x0124, "not authorized")])
def test_response_command_is_pynetdicoms_for_echo_and_final_find(kind: str, status: int,
                                                                  comment: str | None) -> None:
    from pynetdicom.dimse_messages import C_ECHO_RSP, C_FIND_RSP
    from pynetdicom.dimse_primitives import C_ECHO, C_FIND

    rsp = C_ECHO() if kind == "echo" else C_FIND()
    rsp.MessageIDBeingRespondedTo = 77
    rsp.AffectedSOPClassUID = VERIFICATION if kind == "echo" else "1.2.840.10008.5.1.4.1.2.2.1"
    rsp.Status = status
    if comment is not None:
        rsp.ErrorComment = comment
    msg = C_ECHO_RSP() if kind == "echo" else C_FIND_RSP()
    msg.primitive_to_message(rsp)
    field = 0x8030 if kind == "echo" else 0x8020
    assert response_command(field, 77, str(rsp.AffectedSOPClassUID), status, comment) == encode(
        msg.command_set, True, True)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                                    "1.2.840.10008.1.2.1.99"])
@pytest.mark.parametrize("iuid", ["1.2.3.4", "1.2.826.0.1.3680043.8.498.123"])
def test_file_meta_is_pynetdicoms(syntax: str, iuid: str) -> None:
    req = C_STORE()
    req.MessageID = 1
    req.AffectedSOPClassUID = TWELVE_LEAD
    req.AffectedSOPInstanceUID = iuid
    req.Priority = 2
    req.DataSet = BytesIO(b"")
    context = PresentationContext()
    context.context_id = 1
    context.abstract_syntax = TWELVE_LEAD
    context.transfer_syntax = [syntax]
    event = Event(SimpleNamespace(), evt.EVT_C_STORE, {"request": req, "context": context.as_tuple})
    assert file_meta(TWELVE_LEAD, iuid, syntax) == encode_file_meta(event.file_meta)


def _el(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, element, len(value)) + value


def _store_command(message_id: int = 7, iuid: bytes = b"1.2.3.4\0", data: bool = True,
                   field: int = 0x0001, cuid: str = TWELVE_LEAD) -> bytes:
    uid = cuid.encode() + (b"\0" if len(cuid) % 2 else b"")
    body = b"".join((_el(0x0002, uid), _el(0x0100, struct.pack("<H", field)),
                     _el(0x0110, struct.pack("<H", message_id)), _el(0x0700, struct.pack("<H", 0)),
                     _el(0x0800, struct.pack("<H", 0x0000 if data else 0x0101)), _el(0x1000, iuid)))
    return _el(0x0000, struct.pack("<I", len(body))) + body


def test_parse_command_reads_elements_and_refuses_malformed_sets() -> None:
    command = _store_command()
    fields = parse_command(command)
    assert fields is not None and fields[0x0100] == b"\x01\x00" and fields[0x1000] == b"1.2.3.4\0"
    assert parse_command(command[:-3]) is None  # the last value runs past the end
    assert parse_command(command[:5]) is None  # a truncated element header
    assert parse_command(struct.pack("<HHI", 8, 0x16, 2) + b"12") is None  # not group 0000
    assert parse_command(_el(0x0100, b"\x01\x00") + _el(0x0002, b"12")) is None  # not ascending


def _move_store_command(cuid: bytes, iuid: bytes, move_aet: bytes) -> bytes:
    body = b"".join((_el(0x0002, cuid), _el(0x0100, struct.pack("<H", 1)), _el(0x0110, struct.pack("<H", 7)),
                     _el(0x0700, struct.pack("<H", 0)), _el(0x0800, struct.pack("<H", 0)), _el(0x1000, iuid),
                     _el(0x1030, move_aet), _el(0x1031, struct.pack("<H", 5))))
    return _el(0x0000, struct.pack("<I", len(body))) + body


def _pynetdicom_reads(command: bytes) -> tuple[object, ...]:
    """The C-STORE-RQ fields pynetdicom decodes from a command set (its DIMSE message decoder)."""
    message = C_STORE_RQ()
    pdata = P_DATA()
    pdata.presentation_data_value_list = [[1, b"\x03" + command], [1, b"\x02DATA"]]
    assert message.decode_msg(pdata)
    p = message.message_to_primitive()
    return (p.MessageID, str(p.AffectedSOPClassUID), str(p.AffectedSOPInstanceUID), p.Priority,
            p.MoveOriginatorApplicationEntityTitle, p.MoveOriginatorMessageID)


@pytest.mark.parametrize(("cuid", "iuid", "move_aet", "fast"), [
    (TWELVE_LEAD.encode(), b"1.2.3.4\0", b"MOVESCU ", True),
    (TWELVE_LEAD.encode(), b"1.2.3.4\0", b" MOVE SCU       ", True),
    (b"1.2.840.10008.5.\\.4.1.1.9.1.1", b"1.2.3.4\0", b"MOVESCU ", False),  # a backslash: two values to pydicom
    (TWELVE_LEAD.encode(), b"1.2.3.4\\", b"MOVESCU ", False),
    (TWELVE_LEAD.encode(), b"1.2.3.4\0", b"MOVESCU\xa0", False),  # ISO 8859-1 no-break space, stripped by pydicom
    (TWELVE_LEAD.encode(), b"1.2.3.4\0", b"MOVE\\SCU", False),
])
def test_a_store_request_is_read_as_pynetdicom_reads_it_or_left_to_it(cuid: bytes, iuid: bytes, move_aet: bytes,
                                                                       fast: bool) -> None:
    """Found by differential fuzzing of command sets: values pydicom reads its own way (a backslash splits a
    value, other bytes are decoded as ISO 8859-1) went through the fast path as other strings than pynetdicom's."""
    command = _move_store_command(cuid, iuid, move_aet)
    fields = parse_command(command)
    assert fields is not None
    request = store_request(fields, 1)
    if not fast:
        assert request is None
        return
    assert request is not None
    req = request_primitive(request)  # what the handler is given
    assert (req.MessageID, str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID), req.Priority,
            req.MoveOriginatorApplicationEntityTitle, req.MoveOriginatorMessageID) == _pynetdicom_reads(command)


@pytest.mark.parametrize("cuid, iuid", [
    (TWELVE_LEAD, "1.2.826.0.1.3680043.8.498.1"),  # valid: stored directly
    (TWELVE_LEAD, "1.2.03.4"),  # a component with a leading zero: non-conformant, pynetdicom warns and keeps it
    (TWELVE_LEAD, "1." + "2" * 70),  # longer than 64 characters: pynetdicom refuses it
    ("", "1.2.3"),  # empty: pynetdicom stores None
])
def test_the_fast_uid_setting_leaves_a_primitive_as_pynetdicoms_setters_do(
        cuid: str, iuid: str, caplog: pytest.LogCaptureFixture) -> None:
    def state(set_uids: Any) -> tuple[Any, ...]:
        caplog.clear()
        primitive = C_STORE()
        try:
            set_uids(primitive)
        except ValueError as exc:
            return ("refused", str(exc), [r.getMessage() for r in caplog.records])
        values = (primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID)
        return (values, [type(v) for v in values], [r.getMessage() for r in caplog.records])

    def pynetdicoms(primitive: C_STORE) -> None:
        primitive.AffectedSOPClassUID = cuid
        primitive.AffectedSOPInstanceUID = iuid

    caplog.set_level("DEBUG")
    assert state(lambda p: faststore.set_affected_uids(p, cuid, iuid)) == state(pynetdicoms)


class _Association:
    """The parts of an acceptor association the assembler reads, recording what it passes to pynetdicom."""

    def __init__(self, store_handler: bool = True, dimse_handlers: bool = False) -> None:
        context = PresentationContext()
        context.context_id = 1
        context.abstract_syntax = TWELVE_LEAD
        context.transfer_syntax = [ExplicitVRLittleEndian]
        self._accepted_cx = {1: context}
        self.is_established = True
        self.acceptor = SimpleNamespace(accepted_common_extended={})
        self.passed: list[tuple[int, bytes]] = []
        self.dimse = SimpleNamespace(receive_primitive=lambda p: self.passed.extend(p.presentation_data_value_list))
        self._handlers = {evt.EVT_C_STORE: (lambda e: 0, None) if store_handler else ()}
        if dimse_handlers:
            self._handlers[evt.EVT_DIMSE_RECV] = [(lambda e: None, None)]

    def get_handlers(self, event: Any) -> Any:
        return self._handlers.get(event, [])


def _pdu(*items: tuple[int, int, bytes]) -> bytes:
    """A P-DATA-TF body: (context ID, message control header, fragment) items (PS3.8 9.3.5.1)."""
    return b"".join(struct.pack(">IBB", len(value) + 2, cx, header) + value for cx, header, value in items)


def _assembler(assoc: _Association) -> tuple[PDataAssembler, list[tuple[int, FastCStore]]]:
    delivered: list[tuple[int, FastCStore]] = []
    return PDataAssembler(assoc, lambda cx, request: delivered.append((cx, request))), delivered


def test_assembler_joins_a_fragmented_store_and_passes_nothing() -> None:
    assoc = _Association()
    assembler, delivered = _assembler(assoc)
    command = _store_command(message_id=9)
    assert assembler.receive(_pdu((1, 0x01, command[:10])))  # command, more to come
    assert assembler.receive(_pdu((1, 0x03, command[10:]), (1, 0x00, b"AB")))  # last command fragment; data
    assert assembler.receive(_pdu((1, 0x00, b"CD")))
    assert delivered == []
    assert assembler.receive(_pdu((1, 0x02, b"EF")))  # last data fragment
    assert assoc.passed == []
    [(cx, request)] = delivered
    assert (cx, request.message_id, request.sop_class_uid, request.sop_instance_uid, request.dataset) == (
        1, 9, TWELVE_LEAD, "1.2.3.4", b"ABCDEF")


def test_assembler_hands_pynetdicom_every_other_message_unchanged() -> None:
    assoc = _Association()
    assembler, delivered = _assembler(assoc)
    echo = _store_command(field=0x0030, data=False)  # C-ECHO-RQ shaped: no data set
    assert assembler.receive(_pdu((1, 0x03, echo)))
    malformed = _store_command()[:-2]  # a command set pynetdicom must judge itself
    assert assembler.receive(_pdu((1, 0x03, malformed), (1, 0x00, b"xy")))
    assert assembler.receive(_pdu((1, 0x02, b"z")))
    # Back between messages: the next plain C-STORE is assembled here again.
    assert assembler.receive(_pdu((1, 0x03, _store_command(message_id=3)), (1, 0x02, b"DATA")))
    assert assoc.passed == [(1, b"\x03" + echo), (1, b"\x03" + malformed), (1, b"\x00xy"), (1, b"\x02z")]
    assert [(cx, r.message_id, r.dataset) for cx, r in delivered] == [(1, 3, b"DATA")]


@pytest.mark.parametrize("case", ["unaccepted context", "not a storage class", "dimse handler", "no handler",
                                  "store without data set"])
def test_assembler_leaves_unusual_stores_to_pynetdicom(case: str) -> None:
    assoc = _Association(store_handler=case != "no handler", dimse_handlers=case == "dimse handler")
    assembler, delivered = _assembler(assoc)
    command = _store_command(data=case != "store without data set",
                             cuid=VERIFICATION if case == "not a storage class" else TWELVE_LEAD)
    cx = 3 if case == "unaccepted context" else 1
    items = [(cx, 0x03, command)] + ([] if case == "store without data set" else [(cx, 0x02, b"DATA")])
    assert assembler.receive(_pdu(*items))
    assert delivered == []
    assert assoc.passed == [(c, bytes([h]) + v) for c, h, v in items]


def test_assembler_refuses_malformed_items_before_taking_any() -> None:
    assoc = _Association()
    assembler, delivered = _assembler(assoc)
    good = _pdu((1, 0x03, _store_command()))
    assert not assembler.receive(good + b"\x00\x00\x00\x09\x01")  # a second item cut short
    assert not assembler.receive(b"\x00\x00\x00\x01\x01\x03")  # an item shorter than its header
    assert not assembler.receive(b"")
    assert assoc.passed == [] and delivered == []


@pytest.mark.parametrize("association", ["light", "pynetdicom"])
@pytest.mark.parametrize("max_pdu", [0, 4096])
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_node_stores_through_the_fast_path_bytes_as_sent(node_factory, tmp_path: Path, monkeypatch,
                                                        max_pdu: int, syntax: str, association: str) -> None:
    """Served on the connection's thread (net/lightassoc.py), or by pynetdicom's association (the request also
    proposes Storage Commitment) through the P-DATA assembler: the same bytes stored either way."""
    served: list[str] = []
    real_serve = faststore.serve

    def counting_serve(assoc: Any, msg: FastCStore, context: Any) -> None:
        served.append(msg.sop_instance_uid)
        real_serve(assoc, msg, context)

    monkeypatch.setattr(faststore, "serve", counting_serve)
    node = node_factory(max_pdu=max_pdu)
    source = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    ds = pydicom.dcmread(source)
    sent = tmp_path / "sent.dcm"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(sent, enforce_file_format=True)
    ae = AE(ae_title="CART")
    ae.add_requested_context(ds.SOPClassUID, syntax)
    ae.add_requested_context(VERIFICATION)
    if association == "pynetdicom":
        ae.add_requested_context("1.2.840.10008.1.20.1")  # Storage Commitment Push Model: not served light
    ae.maximum_pdu_size = 0
    # Three requests back to back, answered in about a millisecond: pynetdicom's requestor can let its reactor
    # take such a fast response and drop it (seen once here: "Received unexpected C-ECHO service message", then a
    # DIMSE timeout); the node's own requests use the same gate (net/reactorgate.py).
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, evt_handlers=[(evt.EVT_CONN_OPEN, gate_reactor)])
    assert assoc.is_established
    light = node.node._server.light
    assert (light.count(), len(node.node._server.active_associations)) == (
        (1, 0) if association == "light" else (0, 1))
    try:
        status = assoc.send_c_store(sent)
        again = assoc.send_c_store(sent)  # a plain re-send: Success, stored once
        echo = assoc.send_c_echo()  # passed through to pynetdicom between two fast stores
    finally:
        assoc.release()
    assert (status.Status, again.Status, echo.Status) == (0x0000, 0x0000, 0x0000)
    assert served == [ds.SOPInstanceUID] * 2
    [row] = node.ingest.catalog.list_instances()
    stored = (node.config.data_dir / row.path).read_bytes()
    raw = sent.read_bytes()
    meta_end = 132 + 12 + struct.unpack_from("<I", raw, 140)[0]  # preamble, DICM, group length element, group
    expected_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, syntax)
    assert stored == b"\0" * 128 + b"DICM" + expected_meta + raw[meta_end:]


def test_listeners_log_line_and_audit_run_after_the_response(node_factory, tmp_path: Path) -> None:
    """The sender has its Success before the object's log line and audit event are written and the ingest
    listeners run."""
    import logging
    import threading

    node = node_factory()
    answered = threading.Event()
    seen: list[tuple[str, bool]] = []

    class Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("stored "):
                seen.append(("log line", answered.wait(10)))

    def listener(outcome: Any) -> None:
        seen.append((f"listener {outcome.sop_instance_uid}", answered.wait(10)))

    audit = node.node.audit
    real_record = audit.record

    def record(event: str, **fields: Any) -> Any:
        if event == "store":
            seen.append((f"audit {fields['sop_instance_uids'][0]}", answered.wait(10)))
        return real_record(event, **fields)

    audit.record = record

    handler = Waiting(logging.INFO)
    ingest_log = logging.getLogger("dicom_ecg_node.ingest")
    ingest_log.addHandler(handler)
    level = ingest_log.level
    ingest_log.setLevel(logging.INFO)
    node.ingest.listeners.append(listener)
    source = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    ds = pydicom.dcmread(source)
    ae = AE(ae_title="CART")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.aet)
        assert assoc.is_established
        try:
            status = assoc.send_c_store(source)
            before = list(seen)
            answered.set()
        finally:
            assoc.release()
    finally:
        ingest_log.removeHandler(handler)
        ingest_log.setLevel(level)
    assert status.Status == 0x0000
    assert before == []  # nothing had run when the answer arrived: the log line was waiting for it
    # All ran, in this order, and only once the sender had its answer; the audit trail has the store.
    assert seen == [("log line", True), (f"listener {ds.SOPInstanceUID}", True), (f"audit {ds.SOPInstanceUID}", True)]
    audit.flush()
    written = [json.loads(line) for path in sorted((Path(node.config.data_dir) / "audit").glob("audit-*.jsonl"))
               for line in path.read_text(encoding="utf-8").splitlines()]
    [stored] = [e for e in written if e["event"] == "store"]
    assert stored["outcome"] == "success" and stored["sop_instance_uids"] == [ds.SOPInstanceUID]


def test_a_served_store_leaves_nothing_for_the_garbage_collector(node_factory, tmp_path: Path) -> None:
    """Once answered and followed up, a C-STORE's event (it holds the data set) is freed by reference counting:
    the work after the answer names it (the audit), so it must not stay in a reference cycle until a collection
    (measured before this was fixed: ~10 MB more per serving process)."""
    import gc

    node = node_factory()
    source = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    ds = pydicom.dcmread(source)
    ae = AE(ae_title="CART")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    gc.collect()
    gc.disable()
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.aet)
        assert assoc.is_established
        status = assoc.send_c_store(source)
        assoc.release()  # the node has read the release: the store's work after its answer is done
        alive = [o for o in gc.get_objects() if isinstance(o, faststore._FastStoreEvent)]
    finally:
        gc.enable()
    assert status.Status == 0x0000
    assert node.ingest.catalog.find_instance_file(ds.SOPInstanceUID) is not None
    assert alive == []


def overlaps_asked(ingest: Any, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``overlap`` each store of ``ingest`` is asked for from now on (the real store runs)."""
    asked: list[bool] = []
    real_store = ingest.store

    def store(data: bytes, **kw: Any) -> Any:
        asked.append(kw["overlap"])
        return real_store(data, **kw)

    monkeypatch.setattr(ingest, "store", store)
    return asked


def test_placement_overlaps_only_when_one_association_is_served(node_factory, tmp_path: Path, monkeypatch) -> None:
    """``overlap`` (IngestService.store) is asked for only while the node serves no other association."""
    node = node_factory()
    asked = overlaps_asked(node.ingest, monkeypatch)
    ae = AE(ae_title="CART")
    first = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "a.dcm")
    cuid = pydicom.dcmread(first).SOPClassUID
    ae.add_requested_context(cuid, ExplicitVRLittleEndian)
    one = ae.associate(node.host, node.port, ae_title=node.aet)
    assert one.is_established
    try:
        assert one.send_c_store(first).Status == 0x0000
        other = ae.associate(node.host, node.port, ae_title=node.aet)  # a second cart, idle
        assert other.is_established
        try:
            second = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "b.dcm")
            assert one.send_c_store(second).Status == 0x0000
        finally:
            other.release()
    finally:
        one.release()
    assert asked == [True, False]


@pytest.fixture
def worker_zero(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A node started as worker 0 of two on a shared listening socket, as ``net.workers`` starts them.

    ``loads`` is the shared load array: slot 1 stands for the other worker (a real second process would write
    the same slot). ``node.stop`` is left to the test or done at the end.
    """
    import multiprocessing

    from helpers import make_config

    from dicom_ecg_node.net.server import AcceptBalancer, DicomNode, listening_socket
    from dicom_ecg_node.services.ingest import IngestService

    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    loads = multiprocessing.Array("i", 2, lock=False)
    config = make_config(tmp_path, port=port)
    ingest = IngestService.open(config)
    node = DicomNode(config, ingest, listeners={port: (sock, AcceptBalancer(loads, 0))})
    node.start()
    try:
        yield SimpleNamespace(port=port, aet=config.aet, loads=loads, node=node, ingest=ingest)
    finally:
        node.stop(grace_s=5)
        ingest.close()
        sock.close()


def test_associations_of_other_workers_count_against_overlap(worker_zero: SimpleNamespace, tmp_path: Path,
                                                             monkeypatch) -> None:
    """In worker mode what the other workers published counts: a store overlaps only when the node is idle else."""
    from dicom_ecg_node.net.server import AcceptBalancer

    w = worker_zero
    asked = overlaps_asked(w.ingest, monkeypatch)
    ae = AE(ae_title="CART")
    first = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "a.dcm")
    ae.add_requested_context(pydicom.dcmread(first).SOPClassUID, ExplicitVRLittleEndian)
    for other_worker in (0, 1, AcceptBalancer.NOT_ACCEPTING, 2):
        w.loads[1] = other_worker
        assoc = ae.associate("127.0.0.1", w.port, ae_title=w.aet)
        assert assoc.is_established
        try:
            assert w.loads[0] == 1  # this worker published its association as it accepted it
            data = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / f"{other_worker}.dcm")
            assert assoc.send_c_store(data).Status == 0x0000
        finally:
            assoc.release()
    assert asked == [True, False, True, False]


def test_a_stopping_worker_stays_not_accepting(worker_zero: SimpleNamespace) -> None:
    """An association that ends after its worker stopped accepting does not publish a load over NOT_ACCEPTING
    (the other workers would count, and defer connections to, a worker that no longer accepts)."""
    import threading
    import time

    from dicom_ecg_node.net.server import AcceptBalancer

    w = worker_zero
    ae = AE(ae_title="CART")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", w.port, ae_title=w.aet)
    assert assoc.is_established
    stopper = threading.Thread(target=w.node.stop, kwargs={"grace_s": 10})
    stopper.start()
    deadline = time.monotonic() + 5
    while w.loads[0] != AcceptBalancer.NOT_ACCEPTING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.loads[0] == AcceptBalancer.NOT_ACCEPTING
    assert assoc.send_c_echo().Status == 0x0000  # still served during the grace time
    assoc.release()
    stopper.join(10)
    assert not stopper.is_alive()
    assert w.loads[0] == AcceptBalancer.NOT_ACCEPTING


@pytest.mark.parametrize("association", ["light", "pynetdicom"])
def test_a_pdu_longer_than_announced_is_aborted_not_buffered(node_factory, tmp_path: Path, association: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A P-DATA-TF announcing 4 GB (the node announced 16 kB): A-ABORT, nothing allocated, the node serves on."""
    import time

    node = node_factory(max_pdu=16384)
    ae = AE(ae_title="CART")
    ae.add_requested_context(TWELVE_LEAD)
    if association == "pynetdicom":
        ae.add_requested_context("1.2.840.10008.1.20.1")
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    assoc.dul.socket.socket.sendall(struct.pack(">BBI", 0x04, 0x00, 0xFFFFFFF0) + b"\x00" * 64)
    deadline = time.monotonic() + 10
    while not assoc.is_aborted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert assoc.is_aborted
    assert any("4294967280 bytes" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    source = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    again = ae.associate(node.host, node.port, ae_title=node.aet)
    try:
        assert again.send_c_store(source).Status == 0x0000
    finally:
        again.release()
