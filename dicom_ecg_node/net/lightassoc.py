"""Verification, query and storage associations served on the connection's own thread, without pynetdicom's reactors.

Why
    A viewer's C-FIND is one short association: A-ASSOCIATE, one C-FIND, A-RELEASE. pynetdicom runs each accepted
    association on three threads (the request handler, the association reactor, the DUL reactor) that hand every
    PDU and DIMSE message to one another through queues; in one Python process those hand-offs are GIL switches.
    Measured here, the A-ASSOCIATE-RQ -> AC round trip of the node was 4 ms against 0.3 ms for Orthanc, and a
    whole ``echoscu`` run 25 ms against Orthanc's 20 ms. Served on one thread, the same exchange took 20.5 ms.
    A cart's storage association pays the hand-offs twice per C-STORE (request to the reactor, response to the
    DUL thread). Served here, DCMTK ``storescu`` sending 1,000 ECGs on four associations stored 9% more ECGs per
    second with 13% less CPU per ECG (3 interleaved rounds against the node without it; on one association the
    rounds of this noisy machine disagreed, -16% to +18%).

What is served here
    An association whose A-ASSOCIATE-RQ (PS3.8 9.3.2) proposes only Verification, the C-FIND models the node
    answers (Patient Root, Study Root, Modality Worklist) and storage SOP classes, over plain TCP, with no user
    identity, role selection, asynchronous operations or extended negotiation items other than SOP Class Extended
    Negotiation (PS3.7 D.3.3.5: relational queries, combined date and time matching, PS3.4 C.5.1.1), on a node
    below its association limit. Storage classes only when pynetdicom would serve its C-STOREs through
    :mod:`~dicom_ecg_node.net.faststore` (:func:`_stores_here`); each C-STORE-RQ is then served by
    :func:`~dicom_ecg_node.net.faststore.serve`, as on pynetdicom's association.
    Anything else (C-MOVE, C-GET, Storage Commitment, MPPS, TLS, ...) is left to pynetdicom untouched: the request
    is read with ``MSG_PEEK`` first, so pynetdicom reads it again from the socket.
    A PDU longer than the node accepts (:func:`~dicom_ecg_node.net.faststore.pdu_too_long`) is answered with an
    A-ABORT before anything is read into memory.

How
    The same parts as pynetdicom's path, run in order on one thread: pynetdicom's PDU classes decode and encode
    (A-ASSOCIATE-RQ/AC, P-DATA-TF), its ``negotiate_as_acceptor`` picks the presentation contexts (PS3.8 9.3.2.2,
    the node's supported contexts), its ``evt.trigger`` runs the node's bound handlers (access policy and audit on
    ``EVT_REQUESTED``/``EVT_ACCEPTED``, the log lines, the C-ECHO and C-FIND handlers), and its service classes
    (Verification, :class:`~dicom_ecg_node.net.fastfind.FastFindServiceClass`) build the responses and statuses.
    :class:`LightAssociation` is the part of pynetdicom's ``Association`` those use; its DIMSE provider writes the
    PDUs to the socket itself (batched while answers stream) and, between answers, reads what the peer sent, so a
    C-CANCEL (PS3.7 9.3.2.3) or an A-ABORT stops the answers.
    Release (PS3.8 7.2), abort (7.3), an unexpected PDU (A-ABORT, PS3.8 9.3.8), a peer that closes and the network
    timeout end the association as pynetdicom ends it, with the same events. A P-DATA-TF or a DIMSE message that
    cannot be read is answered with an A-P-ABORT (source 2, reason 0), as pynetdicom's state machine answers it.
    Fragments that break PS3.8 Annex E (a message's fragments on two contexts, a command fragment after the last
    one, a last-fragment bit set early) are not always ended the same way: pynetdicom reads some of them on, or
    fails inside its reactor and aborts as the service user, where the light path aborts as the provider; found
    by differential fuzzing and left so, since neither reading is the standard's.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from io import BytesIO
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt
from pynetdicom.dimse import _RSP_TO_MESSAGE
from pynetdicom.dimse_primitives import C_CANCEL, C_ECHO, C_FIND
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    P_DATA,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SOPClassExtendedNegotiation,
)
from pynetdicom.presentation import negotiate_as_acceptor
from pynetdicom.service_class import StorageServiceClass, VerificationServiceClass
from pynetdicom.sop_class import uid_to_service_class

from dicom_ecg_node.net import faststore
from dicom_ecg_node.net.fastfind import FIND_SOP_CLASSES, FastFindServiceClass
from dicom_ecg_node.net.faststore import (
    MAX_CONTROL_PDU,
    parse_command,
    pdu_too_long,
    pdv_items,
    recv_exact,
    recv_into_exact,
    response_command,
    store_request,
)

if TYPE_CHECKING:
    from pynetdicom.ae import ApplicationEntity

log = logging.getLogger("dicom_ecg_node.net")

VERIFICATION = "1.2.840.10008.1.1"
#: Abstract syntaxes an association may propose to be served here.
LIGHT_SYNTAXES = frozenset({VERIFICATION, *FIND_SOP_CLASSES})
#: User information items allowed in the request (PS3.7 D.3.3): nothing that needs negotiation but the SOP Class
#: Extended items (D.3.3.5), which the node's ``EVT_SOP_EXTENDED`` handler answers as on pynetdicom's path.
_PLAIN_ITEMS = (MaximumLengthNotification, ImplementationClassUIDNotification, ImplementationVersionNameNotification,
                SOPClassExtendedNegotiation)
_MAX_RQ = 65536
_HEADER = struct.Struct(">BBI")
_PDV_ITEM = struct.Struct(">IB")
_US = struct.Struct("<H")
#: Distinct A-ASSOCIATE-RQs remembered (see ``LightRegistry._plans``).
_PLANS = 256
#: Queued PDUs go to the socket at the end of each message (one ``send`` per C-FIND answer) or at this size.
#: Not more: answers queued ahead of the peer are answers a C-CANCEL cannot stop any more.
_FLUSH_AT = 16384
C_ECHO_RQ, C_FIND_RQ, C_CANCEL_RQ, C_STORE_RQ = 0x0030, 0x0020, 0x0FFF, 0x0001
#: Events whose handlers see pynetdicom's PDU and DIMSE objects: bound by the node's user, a storage
#: association goes to pynetdicom (as net/faststore.py does for each message).
_OBJECT_EVENTS = (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_PDU_RECV, evt.EVT_PDU_SENT, evt.EVT_DATA_RECV,
                  evt.EVT_DATA_SENT)
#: PS3.8 9.3.7: A-RELEASE-RP, type 06, length 4, four reserved bytes (pynetdicom's ``A_RELEASE_RP().encode()``).
A_RELEASE_RP_PDU = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
#: Responses :class:`_LightDIMSE` encodes itself when they carry no data set: primitive -> Command Field (PS3.7 E.1).
_SIMPLE_RESPONSES: dict[type, int] = {C_ECHO: 0x8030, C_FIND: 0x8020}


class _Closed(Exception):
    """The peer closed the connection (or it failed) while a PDU was expected."""


def _read_pdu(sock: socket.socket, max_pdu: int = 0) -> tuple[int, bytearray]:
    """One PDU: ``(type, whole PDU)``. Raises ``_Closed``, ``TimeoutError``, ``_TooLong``.

    The PDU is read into one buffer, header included, which the fragments of its presentation data values then
    reference (:meth:`LightAssociation._pdvs`): a data set is copied once, when its fragments are joined.
    """
    header = recv_exact(sock, 6)
    if header is None:
        raise _Closed("connection closed by the peer")
    pdu_type, _, length = _HEADER.unpack(header)
    if pdu_too_long(pdu_type, length, max_pdu):
        raise _TooLong(f"PDU type 0x{pdu_type:02X} of {length} bytes (maximum {max_pdu or MAX_CONTROL_PDU})")
    pdu = bytearray(6 + length)
    pdu[:6] = header
    if not recv_into_exact(sock, memoryview(pdu)[6:]):
        raise _Closed("connection closed by the peer")
    return pdu_type, pdu


class _TooLong(Exception):
    """A PDU longer than the node accepts (:func:`~dicom_ecg_node.net.faststore.pdu_too_long`)."""


def peek_request(sock: socket.socket, timeout: float | None) -> bytes | None:
    """The A-ASSOCIATE-RQ PDU waiting on ``sock``, left unread (``MSG_PEEK``); ``None`` if it is not one.

    Waits up to ``timeout`` seconds for the whole PDU; ``None`` on timeout, close, another PDU type or a request
    larger than 64 KB (pynetdicom reads those).
    """
    deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([sock], [], [], remaining)
            if not readable:
                return None
            data = sock.recv(_MAX_RQ + 6, socket.MSG_PEEK)
            if not data:
                return None
            if len(data) >= 6:
                pdu_type, _, length = _HEADER.unpack_from(data)
                if pdu_type != 0x01 or length > _MAX_RQ:
                    return None
                if len(data) >= 6 + length:
                    return bytes(data[:6 + length])
            time.sleep(0.0005)  # part of the request has arrived: wait for the rest
    except (OSError, ValueError):
        return None


class _LightDIMSE:
    """The DIMSE provider part pynetdicom's service classes use: ``send_msg``, ``cancel_req``, ``maximum_pdu_size``."""

    def __init__(self, assoc: LightAssociation) -> None:
        self._assoc = assoc
        self.cancel_req: dict[int, C_CANCEL] = {}
        self.maximum_pdu_size = assoc.requestor.maximum_length

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Encode a response as pynetdicom does and queue its P-DATA PDUs.

        A C-ECHO-RSP or a C-FIND-RSP without an identifier (the final one) that carries no more than a status and
        an Error Comment is encoded by :func:`~dicom_ecg_node.net.faststore.response_command` (same bytes).
        """
        field = _SIMPLE_RESPONSES.get(type(primitive))
        comment = getattr(primitive, "ErrorComment", None)
        if (field is not None and primitive.MessageIDBeingRespondedTo is not None and primitive.Status is not None
                and getattr(primitive, "Identifier", None) is None
                and getattr(primitive, "OffendingElement", None) is None and primitive.AffectedSOPClassUID is not None
                and (comment is None or str(comment).isascii())):
            command = response_command(field, int(primitive.MessageIDBeingRespondedTo),
                                       str(primitive.AffectedSOPClassUID), int(primitive.Status),
                                       None if comment is None else str(comment))
            pdata = P_DATA()
            pdata.presentation_data_value_list.append((context_id, b"\x03" + command))  # command, last (PS3.8 E.2)
            self._assoc.dul.send_pdu(pdata)
            return
        message = _RSP_TO_MESSAGE[primitive.__class__]()
        message.primitive_to_message(primitive)
        for pdata in message.encode_msg(context_id, self.maximum_pdu_size):
            self._assoc.dul.send_pdu(pdata)


class _LightDUL:
    """The DUL part the service classes use: ``send_pdu`` (batched), plus the socket for the guard."""

    def __init__(self, assoc: LightAssociation, sock: socket.socket) -> None:
        self._assoc = assoc
        self.socket = SimpleNamespace(socket=sock)
        self._sock = sock
        self._out: list[bytes] = []
        self._size = 0
        # One whole PDU at a time on the wire: the node's stop sends its A-ABORT from another thread.
        self._send_lock = threading.Lock()

    def send_pdu(self, primitive: Any) -> None:
        """Queue a P-DATA primitive as a P-DATA-TF PDU; between answers, look at what the peer sent.

        PS3.8 9.3.5: PDU type 04, reserved, PDU length, then per presentation data value an item of length (context
        ID + value), the context ID and the value (message control header and fragment); the bytes pynetdicom's
        ``P_DATA_TF.encode`` writes.
        """
        items = b"".join(_PDV_ITEM.pack(len(value) + 1, context_id) + value
                         for context_id, value in primitive.presentation_data_value_list)
        data = _HEADER.pack(0x04, 0x00, len(items)) + items
        self._out.append(data)
        self._size += len(data)
        header = primitive.presentation_data_value_list[-1][1][0]
        if self._size >= _FLUSH_AT or header & 0x03 == 0x02:  # full, or the last fragment of a data set
            self.flush()
            self._assoc.poll_peer()

    def send_raw(self, data: bytes) -> None:
        self._out.append(data)
        self.flush()

    def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out, self._size = [], 0
        try:
            with self._send_lock:
                self._sock.sendall(data)
        except OSError as exc:
            self._assoc.connection_lost(exc)

    def send_now(self, data: bytes) -> None:
        """Send ``data`` (a whole PDU) from any thread, between the serving thread's PDUs; errors are ignored."""
        with self._send_lock, contextlib.suppress(OSError):
            self._sock.sendall(data)


class LightAssociation:
    """One accepted association served on the calling thread (see the module notes).

    It has the attributes of pynetdicom's ``Association`` that the node's handlers, the access guard and
    pynetdicom's Verification and Query/Retrieve service classes read.

    Parameters
    ----------
    sock : socket.socket
        The accepted connection, its A-ASSOCIATE-RQ still unread.
    address : tuple
        The peer's ``(address, port)``.
    request : A_ASSOCIATE
        The decoded request.
    accepted : list of PresentationContext
        The negotiated contexts (results for every proposed one).
    ae : pynetdicom.ae.ApplicationEntity
        The node's AE (title, limits, implementation identity, timeouts).
    handlers : dict
        The server's bound event handlers (pynetdicom's format).
    registry : LightRegistry
        Where this association counts while it runs.
    """

    is_acceptor = True
    is_requestor = False

    def __init__(self, sock: socket.socket, address: tuple[str, int], request: A_ASSOCIATE,
                 contexts: list[Any], ae: ApplicationEntity, handlers: dict[Any, Any],
                 registry: LightRegistry, accept: tuple[bytes, A_ASSOCIATE] | None = None) -> None:
        self.ae = registry.ae_view
        self._ae = ae
        self._handlers = handlers
        self._registry = registry
        self._sock = sock
        max_length = next((int(i.maximum_length_received) for i in request.user_information
                           if isinstance(i, MaximumLengthNotification)), 0)
        self.requestor = SimpleNamespace(
            ae_title=str(request.calling_ae_title).strip(), address=address[0], port=address[1],
            address_info=SimpleNamespace(address=address[0], port=address[1]), primitive=request,
            user_identity=None, maximum_length=max_length,
            sop_class_extended={i.sop_class_uid: i.service_class_application_information
                                for i in request.user_information if isinstance(i, SOPClassExtendedNegotiation)})
        self.acceptor = SimpleNamespace(ae_title=ae.ae_title, primitive=None, maximum_length=ae.maximum_pdu_size,
                                        accepted_common_extended={})
        self._contexts = contexts
        self._request = request
        self._accept = accept if accept is not None else accept_pdu(request, contexts, ae)
        self._accepted_cx = {int(cx.context_id): cx for cx in contexts if cx.result == 0x00}
        self.dimse = _LightDIMSE(self)
        self.dul = _LightDUL(self, sock)
        self.acse = SimpleNamespace(send_reject=self._send_reject, is_aborted=lambda *a: self.is_aborted,
                                    is_release_requested=lambda: self._pending_release)
        self.is_established = False
        self.is_rejected = False
        self.is_aborted = False
        self.is_released = False
        self._is_paused = False
        self._kill = False
        self._pending_release = False
        #: (context ID, message ID, what the handler prepared) of the C-STORE-RQ whose data set is arriving.
        self._announced: tuple[int, int, Any] | None = None
        self.name = f"LightAssociation@{address[0]}:{address[1]}"

    # -- what pynetdicom's code and the node's handlers call -----------------------------------------------------

    def get_handlers(self, event: Any) -> Any:
        """The server's handlers bound to ``event`` (pynetdicom's format)."""
        return self._handlers.get(event, [] if event.is_notification else (None, None))

    def serving(self) -> int:
        """Associations the node's server runs now, this one included."""
        return self._registry.serving()

    def kill(self) -> None:
        """Stop serving (after a rejection or an abort)."""
        self._kill = True

    def abort(self) -> None:
        """Send an A-ABORT (source: service user) and stop."""
        self._send_abort(0x00, 0x00)
        self.is_aborted, self.is_established = True, False
        evt.trigger(self, evt.EVT_ABORTED, {})
        self.kill()

    _abort_nonblocking = abort
    _abort_blocking = abort

    def release(self) -> None:
        """Not used by the node's handlers on a query association; abort instead of an orderly release."""
        self.abort()

    def _extended_response(self) -> list[SOPClassExtendedNegotiation]:
        """The SOP Class Extended Negotiation items of the A-ASSOCIATE-AC (PS3.7 D.3.3.5).

        As pynetdicom's ACSE builds them: the ``EVT_SOP_EXTENDED`` handler's answer; none when it fails or answers
        nothing usable.
        """
        try:
            response = evt.trigger(self, evt.EVT_SOP_EXTENDED, {"app_info": self.requestor.sop_class_extended})
        except Exception:
            log.exception("the SOP Class Extended Negotiation handler failed; no extended negotiation accepted")
            return []
        items = []
        for uid, info in (response or {}).items() if isinstance(response, dict) else ():
            try:
                item = SOPClassExtendedNegotiation()
                item.sop_class_uid, item.service_class_application_information = uid, info
            except Exception:
                log.exception("invalid SOP Class Extended Negotiation answer for %s", uid)
                continue
            items.append(item)
        return items

    def _send_reject(self, result: int, source: int, diagnostic: int) -> None:
        """A-ASSOCIATE-RJ (PS3.8 9.3.4), as pynetdicom's ACSE sends it."""
        from pynetdicom.pdu import A_ASSOCIATE_RJ

        primitive = A_ASSOCIATE()
        primitive.result, primitive.result_source, primitive.diagnostic = result, source, diagnostic
        pdu = A_ASSOCIATE_RJ()
        pdu.from_primitive(primitive)
        self.dul.send_raw(pdu.encode())
        self.is_rejected = True

    def _send_abort(self, source: int, reason: int) -> None:
        pdu = A_ABORT_RQ()
        pdu.source, pdu.reason_diagnostic = source, reason
        with contextlib.suppress(OSError):
            self.dul.send_raw(pdu.encode())

    def connection_lost(self, exc: BaseException) -> None:
        """The socket failed while sending: the association ends (an abort, as pynetdicom reports it)."""
        if not self._kill:
            log.debug("connection lost: %s", exc)
            self.is_aborted, self.is_established = True, False
            self.kill()
            evt.trigger(self, evt.EVT_ABORTED, {})

    # -- serving ----------------------------------------------------------------------------------------------

    def serve(self) -> None:
        """Negotiate (the request is still on the socket), then serve until release, abort or timeout."""
        sock = self._sock
        _read_pdu(sock)  # the A-ASSOCIATE-RQ peeked by the caller
        evt.trigger(self, evt.EVT_REQUESTED, {})
        if self.is_rejected or self._kill:
            return
        if self.requestor.sop_class_extended:
            self._accept = self._registry.extended_accept(self._accept, self._request, self._contexts,
                                                          self._extended_response())
        data, self.acceptor.primitive = self._accept
        self.dul.send_raw(data)
        evt.trigger(self, evt.EVT_ACCEPTED, {})
        self.is_established = True
        evt.trigger(self, evt.EVT_ESTABLISHED, {})
        sock.settimeout(self._ae.network_timeout)
        fragments: list[tuple[int, int, memoryview]] = []
        while not self._kill:
            if self._pending_release:
                self._finish_release()
                return
            try:
                pdu_type, pdu = _read_pdu(sock, self._ae.maximum_pdu_size)
            except TimeoutError:
                log.error("network timeout reached on the association with %r", self.requestor.ae_title)
                self.abort()
                return
            except _TooLong as exc:
                self._provider_abort(f"{exc}; aborting", 0x06)  # PS3.8 9.3.8: invalid-PDU-parameter value
                return
            except (_Closed, OSError):
                self.connection_lost(ConnectionError("closed"))
                return
            if not self._handle_pdu(pdu_type, pdu, fragments):
                return

    def _handle_pdu(self, pdu_type: int, pdu: bytearray, fragments: list[tuple[int, int, memoryview]]) -> bool:
        """Act on one PDU; ``False`` once the association is over."""
        if pdu_type == 0x04:
            for context_id, header, value in self._pdvs(pdu):
                fragments.append((context_id, header, value))
                command, last = bool(header & 0x01), bool(header & 0x02)
                if last and (not command or self._no_dataset(fragments)):
                    message, fragments[:] = list(fragments), []
                    if not self._serve_message(message):
                        return False
                elif last:  # a command set whose data set follows
                    self._announce(fragments)
            return not self._kill
        if pdu_type == 0x05:  # A-RELEASE-RQ
            self._finish_release()
            return False
        if pdu_type == 0x07:  # A-ABORT
            log.debug("association aborted by the peer")
            self.is_aborted, self.is_established = True, False
            evt.trigger(self, evt.EVT_ABORTED, {})
            return False
        # Another A-ASSOCIATE, an unknown type...: PS3.8 9.3.8, A-ABORT (service provider, unexpected PDU).
        self._provider_abort(f"unexpected PDU type 0x{pdu_type:02X} on an established association; aborting", 0x02)
        return False

    def _provider_abort(self, message: str, reason: int) -> None:
        """A-ABORT from the service provider (PS3.8 9.3.8, source 2) with ``reason``, logged as an error, and stop.

        What the node sends when the peer breaks the protocol: an unexpected or malformed PDU, a DIMSE message it
        cannot read (reason 0, as pynetdicom's state machine sends for those, AA-8). An A-ABORT with source 0 would
        tell the peer that the node's application chose to end the association.
        """
        log.error("%s", message)
        self._send_abort(0x02, reason)
        self.is_aborted, self.is_established = True, False
        evt.trigger(self, evt.EVT_ABORTED, {})
        self.kill()

    @staticmethod
    def _pdvs(pdu: bytearray) -> list[tuple[int, int, memoryview]]:
        """The PDU's presentation data values; each fragment is a view of ``pdu``, which is never reused."""
        items = pdv_items(pdu, 6)
        if items is None:
            raise _Malformed
        return items

    @staticmethod
    def _no_dataset(fragments: list[tuple[int, int, memoryview]]) -> bool:
        """The command set just completed says no data set follows (PS3.7 E.2, Command Data Set Type 0101).

        A malformed command set, or one without a Command Data Set Type (mandatory in every DIMSE command, PS3.7
        Annex E), is complete as it is: :meth:`_serve_message` aborts it at once instead of waiting for data.
        """
        fields = parse_command(b"".join(value for _, header, value in fragments if header & 0x01))
        return fields is None or fields.get(0x0800, b"") in (b"", _US.pack(0x0101))

    def _announce(self, fragments: list[tuple[int, int, memoryview]]) -> None:
        """A command set is complete and its data set follows: announce a C-STORE-RQ (:func:`faststore.announce`).

        Anything else, or a command set :meth:`_serve_message` will refuse, is left to it once the data set is in.
        """
        self._announced = None
        context_id = fragments[0][0]
        context = self._accepted_cx.get(context_id)
        fields = parse_command(b"".join(v for _, h, v in fragments if h & 0x01))
        if (context is None or fields is None or fields.get(0x0100) != _US.pack(C_STORE_RQ)
                or not _is_storage(str(context.abstract_syntax))):
            return
        request = store_request(fields, context_id)
        if request is not None:
            self._announced = (context_id, request.message_id, faststore.announce(self, request))  # type: ignore[arg-type]

    def _serve_message(self, fragments: list[tuple[int, int, memoryview]]) -> bool:
        context_id = fragments[0][0]
        command = parse_command(b"".join(v for _, h, v in fragments if h & 0x01))
        dataset = b"".join(v for _, h, v in fragments if not h & 0x01)
        context = self._accepted_cx.get(context_id)
        field = None if command is None else command.get(0x0100)
        if (command is None or len(command.get(0x0800, b"")) != 2 or context is None
                or any(cx != context_id for cx, _, _ in fragments)):
            self._provider_abort(f"invalid DIMSE message or presentation context ID {context_id}; aborting", 0x00)
            return False
        kind = _US.unpack(field)[0] if field is not None and len(field) == 2 else None
        try:
            if kind == C_ECHO_RQ:
                req = C_ECHO()
                req.MessageID = _US.unpack(command[0x0110])[0]
                req.AffectedSOPClassUID = command[0x0002].decode("ascii").rstrip("\0 ")
                VerificationServiceClass(self).SCP(req, context)  # type: ignore[arg-type]
            elif kind == C_FIND_RQ and str(context.abstract_syntax) in FIND_SOP_CLASSES:
                req = C_FIND()
                req.MessageID = _US.unpack(command[0x0110])[0]
                req.AffectedSOPClassUID = command[0x0002].decode("ascii").rstrip("\0 ")
                req.Priority = _US.unpack(command.get(0x0700, b"\0\0"))[0]
                req.Identifier = BytesIO(dataset)
                FastFindServiceClass.serve(self, req, context)  # type: ignore[arg-type]
            elif kind == C_STORE_RQ and _is_storage(str(context.abstract_syntax)):
                request = store_request(command, context_id)
                if request is None:
                    raise ValueError("incomplete C-STORE-RQ command set")
                request.dataset = dataset
                announced, self._announced = self._announced, None
                if announced is not None and announced[:2] == (context_id, request.message_id):
                    request.prepared = announced[2]
                faststore.serve(self, request, context)  # type: ignore[arg-type]
            elif kind == C_CANCEL_RQ:
                pass  # nothing running to cancel (PS3.7 9.3.2.3: ignored)
            else:
                self._provider_abort("DIMSE command 0x{} is not served on this association; aborting".format(
                    "????" if kind is None else f"{kind:04X}"), 0x00)
                return False
        except (KeyError, ValueError, struct.error) as exc:
            self._provider_abort(f"invalid DIMSE message ({exc}); aborting", 0x00)
            return False
        finally:
            self.dul.flush()
        return not self._kill

    def poll_peer(self) -> None:
        """While answers stream: take in what the peer sent (C-CANCEL, A-ABORT, A-RELEASE-RQ) without waiting."""
        sock = self._sock
        while True:
            try:
                readable, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                return
            if not readable:
                return
            try:
                pdu_type, pdu = _read_pdu(sock, self._ae.maximum_pdu_size)
            except (_Closed, OSError):
                self.connection_lost(ConnectionError("closed"))
                return
            except _TooLong as exc:
                self._provider_abort(f"{exc}; aborting", 0x06)
                self.kill()
                return
            if pdu_type == 0x04:
                for _cx, header, value in self._pdvs(pdu):
                    fields = parse_command(value) if header & 0x01 else None
                    if fields is not None and fields.get(0x0100) == _US.pack(C_CANCEL_RQ):
                        cancel = C_CANCEL()
                        cancel.MessageIDBeingRespondedTo = _US.unpack(fields[0x0120])[0]
                        self.dimse.cancel_req[int(cancel.MessageIDBeingRespondedTo)] = cancel
            elif pdu_type == 0x05:
                self._pending_release = True  # answered once the running request is done
                return
            elif pdu_type == 0x07:
                self.is_aborted, self.is_established = True, False
                self.kill()
                evt.trigger(self, evt.EVT_ABORTED, {})
                return
            else:
                self._send_abort(0x02, 0x02)
                self.is_aborted, self.is_established = True, False
                self.kill()
                evt.trigger(self, evt.EVT_ABORTED, {})
                return

    def _finish_release(self) -> None:
        """A-RELEASE-RP (PS3.8 7.2), then the association is over."""
        with contextlib.suppress(OSError):
            self.dul.send_raw(A_RELEASE_RP_PDU)  # flushes what is queued first
        self.is_released, self.is_established = True, False
        evt.trigger(self, evt.EVT_RELEASED, {})
        self.kill()


#: The DICOM Application Context Name (PS3.7 A.2.1).
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def accept_pdu(request: A_ASSOCIATE, contexts: list[Any], ae: ApplicationEntity,
               extended: list[SOPClassExtendedNegotiation] | None = None) -> tuple[bytes, A_ASSOCIATE]:
    """The A-ASSOCIATE-AC (PS3.8 9.3.3) pynetdicom's ACSE sends for ``request``: encoded bytes and primitive.

    ``extended`` are the SOP Class Extended Negotiation answers (PS3.7 D.3.3.5) to include.
    """
    primitive = A_ASSOCIATE()
    # PS3.7 A.2.1: the DICOM Application Context Name, whatever the requestor proposed (as pynetdicom answers).
    primitive.application_context_name = DICOM_APPLICATION_CONTEXT
    primitive.calling_ae_title = request.calling_ae_title
    primitive.called_ae_title = request.called_ae_title
    primitive.result = 0x00
    primitive.result_source = 0x01
    primitive.presentation_context_definition_results_list = (
        [cx for cx in contexts if cx.result == 0x00] + [cx for cx in contexts if cx.result != 0x00])
    length = MaximumLengthNotification()
    length.maximum_length_received = ae.maximum_pdu_size
    klass = ImplementationClassUIDNotification()
    klass.implementation_class_uid = ae.implementation_class_uid
    items: list[Any] = [length, klass]
    if ae.implementation_version_name:
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = ae.implementation_version_name
        items.append(version)
    primitive.user_information = items + list(extended or ())
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return pdu.encode(), primitive


#: What an A-ASSOCIATE-RQ was found to be: the request, its negotiated contexts, the A-ASSOCIATE-AC to send.
_Plan = tuple[A_ASSOCIATE, list[Any], tuple[bytes, A_ASSOCIATE]]


class _Malformed(Exception):
    """A P-DATA-TF whose items do not add up (PS3.8 9.3.5.1)."""


class LightRegistry:
    """The light associations of one server: their count (limits, balancing) and their shutdown.

    Parameters
    ----------
    ae : pynetdicom.ae.ApplicationEntity
        The node's AE; its ``active_associations`` plus these are what the limits count.
    """

    def __init__(self, ae: ApplicationEntity, serving: Callable[[], int] | None = None) -> None:
        self._ae = ae
        self._serving = serving
        self._lock = threading.Lock()
        self._active: set[LightAssociation] = set()
        self.served = 0  # associations served here since start (logs, tests)
        # A-ASSOCIATE-RQ bytes -> what they were found to be: (request, negotiated contexts, A-ASSOCIATE-AC) or
        # None (pynetdicom's). A viewer or script sends the same request every time: decoding it, negotiating and
        # encoding the answer (~0.5 ms) is done once per distinct request. Bounded; entries are never mutated.
        self._plans: OrderedDict[bytes, _Plan | None] = OrderedDict()
        # (plain A-ASSOCIATE-AC bytes, SOP Class Extended answers) -> the A-ASSOCIATE-AC with them. Bounded.
        self._accepts: OrderedDict[tuple[bytes, tuple[tuple[str, bytes], ...]], tuple[bytes, A_ASSOCIATE]] = (
            OrderedDict())
        registry = self

        class _AEView:
            """The AE as the guard's per-peer limit sees it: pynetdicom's associations and the light ones."""

            @property
            def active_associations(self) -> list[Any]:
                return registry.active()

        self.ae_view = _AEView()

    def extended_accept(self, plain: tuple[bytes, A_ASSOCIATE], request: A_ASSOCIATE, contexts: list[Any],
                        items: list[SOPClassExtendedNegotiation]) -> tuple[bytes, A_ASSOCIATE]:
        """The A-ASSOCIATE-AC ``plain`` with the SOP Class Extended answers ``items``; encoded once per pair."""
        if not items:
            return plain
        key = (plain[0], tuple((str(i.sop_class_uid), bytes(i.service_class_application_information or b""))
                               for i in items))
        with self._lock:
            found = self._accepts.get(key)
        if found is None:
            found = accept_pdu(request, contexts, self._ae, items)
            with self._lock:
                self._accepts[key] = found
                while len(self._accepts) > _PLANS:
                    self._accepts.popitem(last=False)
        return found

    def active(self) -> list[Any]:
        """The associations pynetdicom runs and the light ones."""
        with self._lock:
            light = list(self._active)
        return list(self._ae.active_associations) + light

    def count(self) -> int:
        """Light associations running."""
        with self._lock:
            return len(self._active)

    def serving(self) -> int:
        """Associations the server runs now (its own count when it gave one, else pynetdicom's and the light ones)."""
        return self._serving() if self._serving is not None else len(self.active())

    def try_serve(self, sock: socket.socket, address: tuple[str, int], contexts: list[Any],
                  handlers: dict[Any, Any]) -> bool:
        """Serve the connection here if its request qualifies (module notes); ``False``: pynetdicom's turn.

        Parameters
        ----------
        sock : socket.socket
            A plain TCP connection, nothing read from it yet.
        address : tuple
            The peer's address.
        contexts : list of PresentationContext
            The node's supported contexts.
        handlers : dict
            The server's bound event handlers.
        """
        assoc = self._qualify(sock, address, contexts, handlers)
        if assoc is None:
            return False
        with self._lock:
            self._active.add(assoc)
            self.served += 1
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assoc.serve()
        except _Malformed:
            assoc._provider_abort("malformed P-DATA-TF from {}:{}; aborting".format(*address), 0x00)
        except Exception:
            log.exception("association with %s:%d failed; aborting", *address)
            with contextlib.suppress(Exception):
                assoc.abort()
        finally:
            with self._lock:
                self._active.discard(assoc)
        return True

    def _qualify(self, sock: socket.socket, address: tuple[str, int], contexts: list[Any],
                 handlers: dict[Any, Any]) -> LightAssociation | None:
        ae = self._ae
        if len(ae.active_associations) + self.count() >= ae.maximum_associations:
            return None  # pynetdicom applies (and audits) the limit
        data = peek_request(sock, ae.acse_timeout)
        if data is None:
            return None
        with self._lock:
            known = data in self._plans
            plan = self._plans.get(data)
            if known:
                self._plans.move_to_end(data)
        if not known:
            plan = self._plan(data, contexts, _stores_here(handlers))
            with self._lock:
                self._plans[data] = plan
                while len(self._plans) > _PLANS:
                    self._plans.popitem(last=False)
        if plan is None:
            return None
        request, result, accept = plan
        return LightAssociation(sock, address, request, result, ae, handlers, self, accept)

    def _plan(self, data: bytes, contexts: list[Any], stores: bool) -> _Plan | None:
        """Decode and negotiate one A-ASSOCIATE-RQ; ``None`` when it is pynetdicom's to serve.

        ``stores``: storage SOP classes may be served here too (see :func:`_stores_here`).
        """
        ae = self._ae
        try:
            pdu = A_ASSOCIATE_RQ()
            pdu.decode(data)
            request = pdu.to_primitive()
        except Exception:  # pynetdicom reads it again and reports what is wrong with it
            return None
        proposed = request.presentation_context_definition_list
        ids = [cx.context_id for cx in proposed]
        # pynetdicom's state machine rejects a protocol version other than 1 (PS3.8 9.3.2, answered A-ASSOCIATE-RJ
        # 1/2/2), and keeps one result per presentation context ID, which PS3.8 9.3.2.2 requires to be unique:
        # such requests are pynetdicom's to answer (found by differential fuzzing: served here, they were accepted).
        if pdu.protocol_version != 0x0001 or len(set(ids)) != len(ids):
            return None
        if (not proposed or str(request.called_ae_title).strip() != ae.ae_title.strip()
                or any(str(cx.abstract_syntax) not in LIGHT_SYNTAXES
                       and not (stores and _is_storage(str(cx.abstract_syntax))) for cx in proposed)
                or any(not isinstance(item, _PLAIN_ITEMS) for item in request.user_information)
                or ae.require_calling_aet):
            return None
        result, roles = negotiate_as_acceptor(proposed, contexts, {})
        if roles or not any(cx.result == 0x00 for cx in result):
            return None
        return request, result, accept_pdu(request, result, ae)

    def stop(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for running light associations, then abort them.

        As pynetdicom's server does with its own: an A-ABORT (PS3.8 9.3.8, source 0, the node as service user),
        then the connection is shut down, which also wakes the serving thread from its read.
        """
        deadline = time.monotonic() + grace_s
        while self.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left = list(self._active)
        for assoc in left:
            log.warning("aborting association with %r still running after %.0f s", assoc.requestor.ae_title, grace_s)
            assoc.kill()
            pdu = A_ABORT_RQ()
            pdu.source, pdu.reason_diagnostic = 0x00, 0x00
            assoc.dul.send_now(pdu.encode())
            with contextlib.suppress(OSError):
                assoc._sock.shutdown(socket.SHUT_RDWR)


def _is_storage(uid: str) -> bool:
    """A storage SOP class, served by pynetdicom's Storage SCP (PS3.4 B) as net/faststore.py serves it."""
    return uid_to_service_class(uid) is StorageServiceClass


def _stores_here(handlers: dict[Any, Any]) -> bool:
    """Whether storage associations may be served on the light path with these bound handlers.

    As net/faststore.py decides per message: a C-STORE handler is bound, no handler of the user's sees
    pynetdicom's PDU/DIMSE objects (pynetdicom's own debug loggers aside), and pynetdicom is not told to store any
    SOP class (``UNRESTRICTED_STORAGE_SERVICE``).
    """
    if pynetdicom_config.UNRESTRICTED_STORAGE_SERVICE or handlers.get(evt.EVT_C_STORE, (None, None))[0] is None:
        return False
    for event in _OBJECT_EVENTS:
        for bound in handlers.get(event, ()):
            fn = bound[0] if isinstance(bound, tuple) else bound
            if getattr(fn, "__module__", None) != "pynetdicom._handlers":
                return False
    return True


Serve = Callable[[socket.socket, tuple[str, int]], bool]

__all__ = ["LIGHT_SYNTAXES", "LightAssociation", "LightRegistry", "peek_request"]
