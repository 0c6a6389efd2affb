"""C-STORE requests received and answered without pydicom, for the associations the node accepts (net/eventloop.py).

Why
    For each C-STORE, pynetdicom copies every P-DATA fragment into a DIMSE message buffer, decodes the command set
    with pydicom (``message_to_primitive``), builds the Part 10 file meta with pydicom (``Event.encoded_dataset``),
    and encodes the C-STORE-RSP command set with pydicom again; measured here that was ~0.7 ms of the ~2.4 ms a bare
    pynetdicom receiver spent per 144 KB ECG, on the one thread every store of an association waits for.

What this module does instead
    * :class:`PDataAssembler` takes the presentation data values of each P-DATA-TF PDU (PS3.8 9.3.5) as the DUL
      thread reads them. A message's command fragments (PS3.7 6.3.1, PS3.8 E.2) are held until the command set is
      complete and parsed with ``struct`` (:func:`parse_command`, always Implicit VR Little Endian, PS3.7 6.3.1).
      A plain C-STORE-RQ (PS3.7 9.3.1.1) on an accepted context of a storage SOP class has its data set fragments
      joined once and is queued for the association's reactor as a :class:`FastCStore`. Every other message, and
      anything unusual (a malformed command set, a request pynetdicom would route elsewhere, handlers bound to the
      DIMSE events), is handed to pynetdicom's ``DIMSEServiceProvider.receive_primitive`` exactly as it arrived,
      fragment by fragment, so its behaviour is pynetdicom's.
    * :func:`announce` lets the ``EVT_C_STORE`` handler prepare a store once its command set has arrived, while the
      data set is still on its way (light associations, net/lightassoc.py).
    * :func:`serve` runs the ``EVT_C_STORE`` handler bound to the association with a pynetdicom
      :class:`~pynetdicom.events.Event` whose ``encoded_dataset()`` builds the file meta (PS3.10 7.1) with
      ``struct``, then answers with a C-STORE-RSP command set (PS3.7 9.3.1.2) encoded here when it carries only a
      Status and an Error Comment, through pynetdicom otherwise.

The bytes written and sent are those pynetdicom produces (tested against it). The handler, its statuses, the
association's reactor gate (another thread sending on the association) and the DUL state machine are unchanged.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass, attempt
from pynetdicom.sop_class import uid_to_service_class

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.presentation import PresentationContext

log = logging.getLogger("dicom_ecg_node.net")

#: PS3.7 E.1: C-STORE-RQ and C-STORE-RSP command fields; Command Data Set Type "no data set".
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
NO_DATASET = 0x0101
_ELEMENT = struct.Struct("<HHI")
_US = struct.Struct("<H")
_UL = struct.Struct("<I")
_PDV_HEADER = struct.Struct(">IBB")
#: PS3.5 9.1: a UID every check of pynetdicom's UID setters passes (at most 64 characters, checked apart).
_VALID_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*\Z")
#: The DIMSE events whose handlers see pynetdicom's message objects: when any is bound, pynetdicom serves.
_DIMSE_EVENTS = (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT)


def user_handlers(assoc: Association, event: Any) -> list[Any]:
    """Handlers bound to a notification ``event`` other than pynetdicom's own debug loggers.

    pynetdicom binds ``standard_*_handler`` loggers to the PDU and DIMSE events of every association unless its
    ``LOG_HANDLER_LEVEL`` is ``"none"`` (the serving process sets that, see ``net/workers.quiet_pynetdicom``);
    they only write pynetdicom's debug log, so they do not keep a message on pynetdicom's path.
    """
    return [h for h in assoc.get_handlers(event) or ()
            if getattr(h[0] if isinstance(h, tuple) else h, "__module__", None) != "pynetdicom._handlers"]


def parse_command(data: bytes | bytearray | memoryview) -> dict[int, bytes] | None:
    """The elements of an encoded command set, ``{element number: value bytes}``, or ``None`` when malformed.

    A command set is group 0000 only, Implicit VR Little Endian (PS3.7 6.3.1), elements in ascending order.
    """
    out: dict[int, bytes] = {}
    view = memoryview(data)
    end = len(view)
    offset = 0
    last = -1
    while offset < end:
        if end - offset < 8:
            return None
        group, element, length = _ELEMENT.unpack_from(view, offset)
        offset += 8
        if group != 0 or element <= last or length == 0xFFFFFFFF or offset + length > end:
            return None
        out[element] = bytes(view[offset:offset + length])
        offset += length
        last = element
    return out


def pdv_items(data: bytes | bytearray, offset: int = 0) -> list[tuple[int, int, memoryview]] | None:
    """The presentation data value items of a P-DATA-TF PDU from ``offset`` on; ``None`` when malformed.

    PS3.8 9.3.5.1: item length (4 bytes, big endian), presentation context ID, then the value: message control
    header (PS3.8 E.2: bit 0 command, bit 1 last fragment) and the fragment. Each item is
    ``(context ID, message control header, fragment)``.
    """
    view = memoryview(data)
    end = len(view)
    items: list[tuple[int, int, memoryview]] = []
    while offset < end:
        if end - offset < 6:
            return None
        length, context_id, header = _PDV_HEADER.unpack_from(view, offset)
        if length < 2 or offset + 4 + length > end:
            return None
        items.append((context_id, header, view[offset + 6:offset + 4 + length]))
        offset += 4 + length
    return items


#: Longest PDU other than a P-DATA-TF accepted (an A-ASSOCIATE-RQ with every context is a few kB).
MAX_CONTROL_PDU = 1 << 20


def pdu_too_long(pdu_type: int, length: int, max_pdu: int) -> bool:
    """Whether a PDU's announced length exceeds what the node accepts (read before any buffer is allocated).

    PS3.8 D.1: the Maximum Length Received the node announced (``max_pdu``; 0: no maximum) bounds the variable
    field of a P-DATA-TF (its PDU length); other PDUs are short. A longer one is a protocol error, answered with
    an A-ABORT, never a buffer of the peer's choosing (a length of 4 GB would be allocated and zero-filled).
    """
    if pdu_type == 0x04:
        return max_pdu > 0 and length > max_pdu
    return length > MAX_CONTROL_PDU


def recv_exact(sock: Any, n: int) -> bytearray | None:
    """``n`` bytes from a socket into one buffer; ``None`` if the peer closed the connection first."""
    buf = bytearray(n)
    return buf if recv_into_exact(sock, memoryview(buf)) else None


def recv_into_exact(sock: Any, view: memoryview) -> bool:
    """Fill ``view`` from a socket; ``False`` if the peer closed the connection first."""
    n, got = len(view), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return False
        got += k
    return True


def _us(value: bytes | None) -> int | None:
    return None if value is None or len(value) != 2 else int(_US.unpack(value)[0])


def _ui(value: bytes | None) -> str | None:
    """A UID value as pynetdicom reads it, or ``None`` for what it would read otherwise (or not at all).

    A backslash separates values (PS3.5 6.4): pydicom reads such a value as several UIDs and pynetdicom keeps
    the first, so a request holding one is left to pynetdicom.
    """
    if value is None or value.find(b"\\") >= 0:  # find: see waveform._access._raw_text
        return None
    try:
        return value.decode("ascii").rstrip("\0 ")
    except UnicodeDecodeError:
        return None


def _ae(value: bytes) -> str | None:
    """An AE title (PS3.5 6.2: printable ASCII, one value), stripped as pydicom does; ``None`` otherwise.

    pydicom decodes other bytes as ISO 8859-1 and strips what Python calls white space (a no-break space too),
    and splits at a backslash: such a title is left to pynetdicom.
    """
    if b"\\" in value or not all(0x20 <= byte < 0x7F for byte in value):
        return None
    return value.decode("ascii").strip()


def _even(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def _element(group: int, element: int, value: bytes) -> bytes:
    return _ELEMENT.pack(group, element, len(value)) + value


def response_command(command_field: int, message_id: int, sop_class_uid: str, status: int,
                     error_comment: str | None = None, sop_instance_uid: str | None = None) -> bytes:
    """The command set of a DIMSE-C response without a data set, as pynetdicom encodes it (PS3.7 9.3, E.1).

    Affected SOP Class UID, Command Field, Message ID Being Responded To, Command Data Set Type 0101, Status,
    Error Comment when given, Affected SOP Instance UID when given (C-STORE-RSP), in ascending tag order with the
    group length first (PS3.7 9.1.2).

    Parameters
    ----------
    command_field : int
        0x8001 C-STORE-RSP, 0x8030 C-ECHO-RSP, 0x8020 C-FIND-RSP.
    message_id : int
        Message ID of the request (Message ID Being Responded To).
    sop_class_uid : str
        Affected SOP Class UID, echoed from the request.
    status : int
        The DIMSE status (PS3.7 C).
    error_comment : str, optional
        PS3.7 C.4.2: up to 64 characters of the default repertoire.
    sop_instance_uid : str, optional
        Affected SOP Instance UID (C-STORE-RSP).
    """
    parts = [
        _element(0x0000, 0x0002, _even(sop_class_uid.encode("ascii"), b"\0")),  # Affected SOP Class UID
        _element(0x0000, 0x0100, _US.pack(command_field)),  # Command Field
        _element(0x0000, 0x0120, _US.pack(message_id)),  # Message ID Being Responded To
        _element(0x0000, 0x0800, _US.pack(NO_DATASET)),  # Command Data Set Type
        _element(0x0000, 0x0900, _US.pack(status)),  # Status
    ]
    if error_comment is not None:
        parts.append(_element(0x0000, 0x0902, _even(error_comment.encode("ascii"), b" ")))  # Error Comment
    if sop_instance_uid is not None:
        parts.append(_element(0x0000, 0x1000, _even(sop_instance_uid.encode("ascii"), b"\0")))
    body = b"".join(parts)
    return _element(0x0000, 0x0000, _UL.pack(len(body))) + body  # Command Group Length (PS3.7 9.1.2)


def store_response_command(message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int,
                           error_comment: str | None = None) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2): :func:`response_command` with the instance UID."""
    return response_command(C_STORE_RSP, message_id, sop_class_uid, status, error_comment, sop_instance_uid)


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """The File Meta Information group (PS3.10 7.1, Explicit VR Little Endian) pynetdicom writes for a data set.

    Version 00 01, Media Storage SOP Class/Instance from the request, the context's transfer syntax, and
    pynetdicom's implementation class UID and version name (``Event.file_meta``).
    """
    body = b"".join((
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", _even(sop_class_uid.encode("ascii"), b"\0")),
        _meta_element(0x0003, b"UI", _even(sop_instance_uid.encode("ascii"), b"\0")),
        _meta_element(0x0010, b"UI", _even(transfer_syntax_uid.encode("ascii"), b"\0")),
        _meta_element(0x0012, b"UI", _even(PYNETDICOM_IMPLEMENTATION_UID.encode("ascii"), b"\0")),
        _meta_element(0x0013, b"SH", _even(PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii"), b" ")),
    ))
    return _meta_element(0x0000, b"UL", _UL.pack(len(body))) + body


@dataclass(slots=True)
class FastCStore:
    """A complete C-STORE-RQ assembled by :class:`PDataAssembler`, queued for the association's reactor."""

    context_id: int
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    priority: int
    move_originator_aet: str | None
    move_originator_message_id: int | None
    dataset: bytes
    is_valid_request: bool = True  # as pynetdicom's request primitives, for code that looks
    #: What the bound handler prepared when the command set arrived (:func:`announce`), for its store.
    prepared: Any = None


@runtime_checkable
class PreparesStores(Protocol):
    """An ``EVT_C_STORE`` handler that can prepare a store before its data set arrives (:func:`announce`)."""

    def prepare(self, sop_instance_uid: str) -> Any:
        """Work for the announced instance that needs no byte of its data set; the result reaches the handler."""


def announce(assoc: Association, request: FastCStore) -> Any:
    """A C-STORE-RQ's command set has arrived and its data set follows: let the bound handler prepare meanwhile.

    A sender sends the data set only once it has read the object (measured here, DCMTK ``storescu`` ~0.3 ms per
    ECG after the command set), so work that needs only the command set (the catalog lookup of the SOP Instance
    UID, services/ingest.py "Announced stores") is done then instead of after the bytes arrived. What
    :meth:`PreparesStores.prepare` returns is handed to the handler as the event's ``prepared`` attribute; a
    handler without ``prepare``, or one that fails there (logged), gets ``None`` and does the work itself.
    Only while the node serves this association alone (the event's ``alone``): otherwise the cores are busy with
    the other stores, and the store makes that lookup in its catalog transaction instead, at a fraction of the
    cost (services/ingest.py "Announced stores").
    """
    handler, _args = assoc.get_handlers(evt.EVT_C_STORE)  # type: ignore[misc]
    serving = getattr(assoc, "serving", None)
    if not isinstance(handler, PreparesStores) or serving is None or serving() > 1:
        return None
    try:
        return handler.prepare(request.sop_instance_uid)
    except Exception:
        log.exception("preparing the store of instance %s failed; it is stored without", request.sop_instance_uid)
        return None


class _FastStoreEvent(Event):
    """pynetdicom's ``EVT_C_STORE`` event whose ``encoded_dataset()`` writes the file meta with :func:`file_meta`.

    ``after_response``: callables the handler leaves to run once the response is sent (the ingest service's log
    line and listeners, see ``IngestService.store``). ``prepared``: what the handler prepared when the request's
    command set arrived (:func:`announce`), else ``None``. ``alone``: the node serves no other association, in this
    process or (on this port) in another worker process (``IngestService.store``'s ``overlap``).
    """

    def __init__(self, assoc: Association, request: C_STORE, context: PresentationContext, dataset: bytes,
                 prepared: Any = None) -> None:
        super().__init__(assoc, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple})
        self._ecg_dataset = dataset
        self.prepared = prepared
        self._ecg_syntax = str(context.transfer_syntax[0])  # type: ignore[index]
        self.after_response: list[Callable[[], None]] = []
        # pynetdicom's associations know their server; a light one (net/lightassoc.py) answers itself.
        serving = getattr(assoc, "serving", None) or getattr(getattr(assoc, "_server", None), "serving", None)
        self.alone = serving is not None and serving() <= 1

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        """The data set as received, with preamble, ``DICM`` and file meta unless ``include_meta`` is false."""
        if not include_meta:
            return self._ecg_dataset
        request = self.request
        meta = file_meta(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID), self._ecg_syntax)
        return b"".join((b"\0" * 128, b"DICM", meta, self._ecg_dataset))


class PDataAssembler:
    """Presentation data values → :class:`FastCStore` for plain C-STORE requests, pynetdicom for everything else.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        The acceptor association (its ``dimse`` provider receives what is passed through).
    deliver : callable
        Called with ``(context_id, FastCStore)`` for each complete request (queues it for the reactor).
    """

    def __init__(self, assoc: Association, deliver: Any) -> None:
        self._assoc = assoc
        self._deliver = deliver
        self._mode: str | None = None  # None between messages, "command", "data" (fast) or "pass"
        self._held: list[tuple[int, bytes]] = []  # command PDVs, replayed to pynetdicom if it is not fast
        self._fragments: list[memoryview] = []
        self._request: FastCStore | None = None
        self._pass_has_data = False

    def receive(self, body: bytes | bytearray) -> bool:
        """Take the body of one P-DATA-TF PDU (after its 6-byte header); ``False`` if its items are malformed."""
        items = pdv_items(body)
        if not items:
            return False
        for context_id, header, fragment in items:
            self._item(context_id, header, fragment)
        return True

    def flush(self) -> None:
        """Before a P-DATA-TF goes to pynetdicom's own path: hand it the fragments of a message held here."""
        if self._mode in ("command", "data"):
            self._replay_as_pass(data_follows=True)

    def _pass(self, context_id: int, header: int, fragment: bytes | memoryview) -> None:
        primitive = P_DATA()
        primitive.presentation_data_value_list.append((context_id, bytes([header]) + bytes(fragment)))
        self._assoc.dimse.receive_primitive(primitive)

    def _item(self, context_id: int, header: int, fragment: memoryview) -> None:
        command, last = bool(header & 0x01), bool(header & 0x02)
        mode = self._mode
        if mode == "pass":
            self._pass(context_id, header, fragment)
            if last and (not command or not self._pass_has_data):
                self._mode = None  # the message ended (its data set, or a command set without one)
            return
        if mode == "data":
            request = self._request
            if command or request is None or context_id != request.context_id:
                # Not what PS3.8 E.2 allows here: give pynetdicom the whole message so far and let it decide.
                self._replay_as_pass(data_follows=True)
                self._item(context_id, header, fragment)
                return
            self._fragments.append(fragment)
            if last:
                request.dataset = b"".join(self._fragments)
                self._fragments = []
                self._request = None
                self._held = []
                self._mode = None
                self._deliver(context_id, request)
            return
        # Between messages or collecting a command set.
        if not command:
            self._replay_as_pass(data_follows=False)
            self._pass(context_id, header, fragment)
            self._mode = None if last else "pass"
            self._pass_has_data = True
            return
        self._held.append((context_id, bytes([header]) + bytes(fragment)))
        self._mode = "command"
        if not last:
            return
        request, has_data = self._fast_request()
        if request is None:
            self._replay_as_pass(data_follows=has_data)
            return
        self._request = request
        self._mode = "data"

    def _replay_as_pass(self, data_follows: bool) -> None:
        """Hand pynetdicom every held fragment of the current message; what follows goes to it too."""
        held, fragments, request = self._held, self._fragments, self._request
        self._held, self._fragments, self._request = [], [], None
        for context_id, value in held:
            primitive = P_DATA()
            primitive.presentation_data_value_list.append((context_id, value))
            self._assoc.dimse.receive_primitive(primitive)
        if request is not None:
            for fragment in fragments:
                self._pass(request.context_id, 0x00, fragment)
        self._mode = "pass" if (held or fragments) and data_follows else None
        self._pass_has_data = data_follows

    def _fast_request(self) -> tuple[FastCStore | None, bool]:
        """The request of the held command set if it is served here, and whether a data set follows.

        The DUL reads this only in Sta6 (association established, PS3.8 9.2). ``Association.is_established`` is not
        a test here: the acceptor's own thread sets it after the A-ASSOCIATE-AC is queued, so a peer's first
        request can arrive before it is true; the reactor serves queued requests only once it is.
        """
        context_id = self._held[0][0]
        if any(cx != context_id for cx, _ in self._held):
            return None, True
        fields = parse_command(b"".join(value[1:] for _, value in self._held))
        if fields is None:
            return None, True
        dataset_type = _us(fields.get(0x0800))
        has_data = dataset_type != NO_DATASET
        if _us(fields.get(0x0100)) != C_STORE_RQ or not has_data or dataset_type is None:
            return None, has_data
        assoc = self._assoc
        request = store_request(fields, context_id)
        if (request is None or context_id not in assoc._accepted_cx
                or pynetdicom_config.UNRESTRICTED_STORAGE_SERVICE
                or request.sop_class_uid in assoc.acceptor.accepted_common_extended
                or uid_to_service_class(request.sop_class_uid) is not StorageServiceClass
                or any(user_handlers(assoc, event) for event in _DIMSE_EVENTS)
                or not assoc.get_handlers(evt.EVT_C_STORE)):
            return None, has_data
        return request, has_data


def store_request(fields: dict[int, bytes], context_id: int) -> FastCStore | None:
    """The C-STORE-RQ (PS3.7 9.3.1.1) of a parsed command set, data set still empty; ``None`` when incomplete.

    Incomplete: a mandatory element of PS3.7 Table 9.3-1 absent or malformed (pynetdicom's decoder fails on such a
    command set too). A Command Data Set Type of 0101H (no data set) is complete: the empty data set is the
    handler's to refuse, as through pynetdicom.
    """
    cuid, iuid = _ui(fields.get(0x0002)), _ui(fields.get(0x1000))
    message_id, priority = _us(fields.get(0x0110)), _us(fields.get(0x0700))
    dataset_type = _us(fields.get(0x0800))
    if not cuid or not iuid or message_id is None or priority is None or dataset_type is None:
        return None
    move_aet = fields.get(0x1030)
    move_id = fields.get(0x1031)
    if move_id is not None and _us(move_id) is None:
        return None
    move_title = None if move_aet is None else _ae(move_aet)
    if move_aet is not None and move_title is None:
        return None
    return FastCStore(context_id, message_id, cuid, iuid, priority, move_title, _us(move_id), b"")


def set_affected_uids(primitive: C_STORE, class_uid: str, instance_uid: str) -> None:
    """Set a primitive's Affected SOP Class and Instance UIDs as pynetdicom's setters do.

    For valid UIDs (PS3.5 9.1, the usual case) the values the setters would store are stored directly: each setter
    validates its UID three times over (~7 µs a UID, four UIDs a C-STORE), and every check would pass. Other
    values go through the setters, which log and refuse as pynetdicom does.
    """
    if (len(class_uid) <= 64 and len(instance_uid) <= 64 and _VALID_UID.match(class_uid)
            and _VALID_UID.match(instance_uid)):
        # pynetdicom 3.0's storage of the two properties (DIMSEPrimitive); the version is pinned in pyproject.
        primitive._affected_sop_class_uid = UID(class_uid, validation_mode=0)
        primitive._affected_sop_instance_uid = UID(instance_uid, validation_mode=0)
        return
    primitive.AffectedSOPClassUID = class_uid
    primitive.AffectedSOPInstanceUID = instance_uid


def request_primitive(msg: FastCStore) -> C_STORE:
    """The C-STORE request primitive of ``msg`` (data set not attached), as pynetdicom's decoder would make it.

    Raises
    ------
    ValueError, TypeError
        A value pynetdicom's ``message_to_primitive`` refuses too (its setters validate them).
    """
    req = C_STORE()
    req.MessageID = msg.message_id
    set_affected_uids(req, msg.sop_class_uid, msg.sop_instance_uid)
    req.Priority = msg.priority
    if msg.move_originator_aet:
        req.MoveOriginatorApplicationEntityTitle = msg.move_originator_aet
    if msg.move_originator_message_id is not None:
        req.MoveOriginatorMessageID = msg.move_originator_message_id
    return req


def serve(assoc: Association, msg: FastCStore, context: PresentationContext) -> None:
    """Serve one assembled C-STORE-RQ as pynetdicom's Storage SCP does (PS3.4 B.2.3), on the reactor thread."""
    rsp = C_STORE()
    try:
        req = request_primitive(msg)
    except (ValueError, TypeError) as exc:  # pynetdicom's message_to_primitive would have refused it: abort
        log.error("Received an invalid DIMSE message: %s", exc)
        assoc.abort()
        return
    req.DataSet = BytesIO(msg.dataset)
    rsp.MessageIDBeingRespondedTo = msg.message_id
    set_affected_uids(rsp, req.AffectedSOPClassUID, req.AffectedSOPInstanceUID)
    event = _FastStoreEvent(assoc, req, context, msg.dataset, msg.prepared)
    try:
        _serve(assoc, msg, event, req, rsp)
    finally:
        flush = getattr(assoc.dul, "flush", None)  # a light association's DUL batches what it sends
        if flush is not None:
            flush()
        # Taken off the event first: work that names the event (its audit) would otherwise keep it, and the data
        # set it holds, in a reference cycle until the garbage collector's next pass (~10 MB more per process).
        after, event.after_response = event.after_response, []
        for work in after:
            try:
                work()
            except Exception:
                log.exception("work after the C-STORE response failed for instance %s", msg.sop_instance_uid)


def _serve(assoc: Association, msg: FastCStore, event: _FastStoreEvent, req: C_STORE, rsp: C_STORE) -> None:
    cx_id = msg.context_id
    assoc.dimse.cancel_req = {}
    assoc._is_paused = True  # as pynetdicom: a handler may use the association's send_* methods
    try:
        with attempt(rsp, assoc.dimse, cx_id, assoc) as ctx:
            ctx.error_msg = "Exception in handler bound to 'evt.EVT_C_STORE'"
            ctx.error_status = 0xC211
            handler, args = assoc.get_handlers(evt.EVT_C_STORE)  # type: ignore[misc]
            status = handler(event, *args) if args is not None else handler(event)
    finally:
        assoc._is_paused = False
    assoc.dimse.cancel_req = {}
    if not ctx.success or not assoc.is_established:
        return
    rsp = StorageServiceClass(assoc).validate_status(status, rsp)
    comment = rsp.ErrorComment
    if rsp.OffendingElement is not None or (comment is not None and not str(comment).isascii()):
        assoc.dimse.send_msg(rsp, cx_id)  # anything beyond Status and Error Comment: pynetdicom encodes it
        return
    command = store_response_command(msg.message_id, msg.sop_class_uid, msg.sop_instance_uid, int(rsp.Status),
                                     None if comment is None else str(comment))
    primitive = P_DATA()
    primitive.presentation_data_value_list.append((cx_id, b"\x03" + command))  # command, last fragment (PS3.8 E.2)
    assoc.dul.send_pdu(primitive)
