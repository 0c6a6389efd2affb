"""C-FIND pending responses encoded directly, for the associations the node accepts (net/eventloop.py).

Why
    pynetdicom encodes each C-FIND answer twice through pydicom: the identifier (``write_dataset``, ~120 µs for a
    STUDY answer here) and the C-FIND-RSP command set (``primitive_to_message`` + ``write_dataset``, ~280 µs).
    With 2,000 answers that was most of a query's time, against ~0.1 ms per answer for Orthanc. This module
    writes both with ``struct``:

    * the command set (PS3.7 9.3.2.2, C-FIND-RSP with an identifier; always Implicit VR Little Endian, PS3.7 6.3.1)
      with its group length (PS3.7 9.1.2);
    * the identifier (PS3.5 7.1: data elements in ascending tag order, Implicit or Explicit VR, Little or Big
      Endian; even value lengths, text padded with a space and UIDs with NUL, PS3.5 6.2) for the flat answers the
      query service builds. Anything else (sequences, other VRs, ISO 2022 character sets) returns ``None`` and
      pydicom encodes it, as pynetdicom would;
    * P-DATA fragments no longer than the peer's maximum PDU length (PS3.8 9.3.5, E.2), command then identifier.

    The bytes are those pynetdicom produces (tested against it for every transfer syntax).

:class:`FastFindServiceClass` is pynetdicom's Query/Retrieve service class with a C-FIND SCP loop that sends
pending answers this way; the handler, statuses, C-CANCEL, failures and the final response are pynetdicom's.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import QueryRetrieveServiceClass, attempt

from dicom_ecg_node.services.query import ASCII_VRS, CHARSET_VRS, encode_text, value_text

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.presentation import PresentationContext

log = logging.getLogger("dicom_ecg_node.net")

#: PS3.7 E.1: C-FIND-RSP command field.
C_FIND_RSP = 0x8020
#: PS3.7 E.1: Command Data Set Type when a data set follows (any value other than 0x0101; pynetdicom's choice).
DATASET_PRESENT = 0x0001
_PENDING = (0xFF00, 0xFF01)
#: The C-FIND SOP classes served here: Patient Root, Study Root (PS3.4 C.6) and Modality Worklist (PS3.4 K.6).
FIND_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.2.1",
                              "1.2.840.10008.5.1.4.31"})

#: Explicit VR with a 4-byte length (PS3.5 7.1.2, Table 7.1-1).
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_NUMBER_FORMATS = {"US": "H", "UL": "I", "SS": "h", "SL": "i", "FL": "f", "FD": "d"}
#: Single-byte Specific Character Sets (PS3.3 C.12.1.1.2) and their codecs; anything else goes to pydicom.
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}


def _value_bytes(vr: str, value: Any, end: str, codec: str) -> bytes | None:
    """An element's value field (PS3.5 6.2, 7.1), or ``None`` for what is left to pydicom."""
    if value is None or (isinstance(value, list | tuple | MultiValue | str) and len(value) == 0):
        return b""
    if vr in _NUMBER_FORMATS:
        values = value if isinstance(value, list | tuple | MultiValue) else [value]
        return struct.pack(f"{end}{len(values)}{_NUMBER_FORMATS[vr]}", *values)
    if vr in ASCII_VRS or vr in CHARSET_VRS:
        if vr == "PN" and not isinstance(value, str | PersonName):
            return None  # multi-valued person names: pydicom
        try:
            return encode_text(vr, value, "ascii" if vr in ASCII_VRS else codec)
        except UnicodeEncodeError:
            return None
    return None  # SQ, AT, OB...


def encode_identifier(ds: Dataset, implicit: bool, little: bool) -> bytes | None:
    """The bytes of a flat identifier, or ``None`` when it holds anything this encoder leaves to pydicom.

    Parameters
    ----------
    ds : Dataset
        An answer identifier (text and binary-number elements, no sequences).
    implicit, little : bool
        The transfer syntax of the presentation context (Implicit VR; Little Endian).

    Returns
    -------
    bytes or None
    """
    charset = ds.get("SpecificCharacterSet")
    codec = _CODECS.get("" if charset is None else value_text(charset).strip())
    if codec is None:
        return None
    end = "<" if little else ">"
    short_header = struct.Struct(end + "HH2sH")
    long_header = struct.Struct(end + "HH2s2xI")
    implicit_header = struct.Struct(end + "HHI")
    out = bytearray()
    for tag in sorted(ds.keys()):
        elem = ds.get_item(tag)
        if elem.is_raw and (elem.VR in ASCII_VRS or elem.VR in CHARSET_VRS):
            # Text as the query service encoded it (or pydicom read it): in the identifier's character set,
            # padded (PS3.5 6.2), the same bytes in every transfer syntax.
            vr, data = elem.VR, elem.value or b""
        else:
            if elem.is_raw:
                elem = ds[tag]  # converted by pydicom (a binary value, or an implicit VR one)
            vr = elem.VR
            encoded = _value_bytes(vr, elem.value, end, codec)
            if encoded is None:
                return None
            data = encoded
        group, element = tag >> 16, tag & 0xFFFF
        if implicit:
            out += implicit_header.pack(group, element, len(data))
        elif vr in _LONG_VRS:
            out += long_header.pack(group, element, vr.encode("ascii"), len(data))
        elif len(data) > 0xFFFF:
            return None
        else:
            out += short_header.pack(group, element, vr.encode("ascii"), len(data))
        out += data
    return bytes(out)


def _element(group: int, element: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element (the command set encoding, PS3.7 6.3.1)."""
    return struct.pack("<HHI", group, element, len(value)) + value


def pending_command(message_id: int, sop_class_uid: str, status: int) -> bytes:
    """The command set of a C-FIND-RSP that carries an identifier (PS3.7 9.3.2.2, Table 9.3-2)."""
    uid = sop_class_uid.encode("ascii")
    if len(uid) % 2:
        uid += b"\0"
    body = b"".join((
        _element(0x0000, 0x0002, uid),  # Affected SOP Class UID
        _element(0x0000, 0x0100, struct.pack("<H", C_FIND_RSP)),  # Command Field
        _element(0x0000, 0x0120, struct.pack("<H", message_id)),  # Message ID Being Responded To
        _element(0x0000, 0x0800, struct.pack("<H", DATASET_PRESENT)),  # Command Data Set Type
        _element(0x0000, 0x0900, struct.pack("<H", status)),  # Status
    ))
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body  # Command Group Length


def p_data(context_id: int, payload: bytes, command: bool, max_pdu: int) -> Iterator[P_DATA]:
    """P-DATA primitives of one message part, each PDV within the peer's maximum PDU length (PS3.8 E.2)."""
    size = len(payload) if max_pdu == 0 else max(1, max_pdu - 6)  # PDV item: 4-byte length, context, header
    chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    for n, chunk in enumerate(chunks, 1):
        header = (0x01 if command else 0x00) | (0x02 if n == len(chunks) else 0x00)  # PS3.8 E.2
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, bytes([header]) + chunk))
        yield pdata


class FastFindServiceClass(QueryRetrieveServiceClass):
    """pynetdicom's Q/R service class whose C-FIND SCP sends pending answers through this module's encoders."""

    @classmethod
    def serve(cls, assoc: Association, req: C_FIND, context: PresentationContext) -> None:
        """Serve one C-FIND request as pynetdicom's ``Association._serve_request`` runs a service class."""
        assoc.dimse.cancel_req = {}  # C-CANCELs received before this request do not apply to it
        assoc._is_paused = True  # as pynetdicom: a handler may use the association's send_* methods
        try:
            cls(assoc)._c_find_scp(req, context)
        except Exception:
            log.exception("C-FIND SCP failed; aborting the association")
            assoc.abort()
            return
        finally:
            assoc._is_paused = False
        assoc.dimse.cancel_req = {}

    def _c_find_scp(self, req: C_FIND, context: PresentationContext) -> None:
        """C-FIND SCP (PS3.4 C.4.1.2, PS3.7 9.1.2): pynetdicom's loop, pending answers encoded here."""
        assoc: Association = self.assoc
        cx_id = int(context.context_id)  # type: ignore[arg-type]
        syntax = context.transfer_syntax[0]
        rsp = C_FIND()
        rsp.MessageID = req.MessageID
        rsp.MessageIDBeingRespondedTo = req.MessageID
        rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
        with attempt(rsp, self.dimse, cx_id, assoc) as ctx:
            ctx.error_msg = "Exception in handler bound to 'evt.EVT_C_FIND'"
            ctx.error_status = 0xC311  # PS3.4 C.4.1.1.4: unable to process
            generator = evt.trigger(assoc, evt.EVT_C_FIND, {
                "request": req, "context": context.as_tuple, "_is_cancelled": self.is_cancelled})
        if not ctx.success or not assoc.is_established:
            return
        if generator is None:
            generator = iter([(0x0000, None)])
        max_pdu = self.dimse.maximum_pdu_size
        command_cache: dict[int, bytes] = {}
        for result, exc in self._wrap_handler(generator):
            if exc is not None:
                log.error("exception in the C-FIND handler", exc_info=exc)
                rsp.Status = 0xC311
                self.dimse.send_msg(rsp, cx_id)
                return
            status, dataset = result
            if not assoc.is_established:
                return
            if isinstance(status, int) and status in _PENDING and isinstance(dataset, Dataset):
                ident = None if syntax.is_deflated else encode_identifier(
                    dataset, syntax.is_implicit_VR, syntax.is_little_endian)
                if ident is None:
                    ident = encode(dataset, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
                if not ident:
                    log.error("C-FIND answer identifier could not be encoded")
                    rsp.Status = 0xC312
                    self.dimse.send_msg(rsp, cx_id)
                    return
                command = command_cache.get(status)
                if command is None:
                    command = command_cache[status] = pending_command(
                        int(req.MessageID), str(req.AffectedSOPClassUID), status)  # type: ignore[arg-type]
                for pdata in p_data(cx_id, command, True, max_pdu):
                    assoc.dul.send_pdu(pdata)
                for pdata in p_data(cx_id, ident, False, max_pdu):
                    assoc.dul.send_pdu(pdata)
                continue
            # Everything but a pending answer (failure, cancel, warning, success): pynetdicom's own path.
            rsp.Identifier = None
            rsp = self.validate_status(status, rsp)
            category = self.statuses.get(rsp.Status, ("Unknown",))[0]
            if category == "Pending":  # a pending status without an identifier to send
                log.error("C-FIND handler yielded a pending status without an identifier")
                rsp.Status = 0xC312
                category = "Failure"
            self.dimse.send_msg(rsp, cx_id)
            if category != "Warning":
                return
        if assoc.is_established:
            rsp.Identifier = None
            rsp.Status = 0x0000
            self.dimse.send_msg(rsp, cx_id)
