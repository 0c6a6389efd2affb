r"""HL7 v2.5.1 messages: character sets, field access, acknowledgements, and the mapping of PID/PV1/ORC/OBR/TQ1.

Parsing is python-hl7's (:func:`hl7.parse`); this module decides the text encoding first (MSH-18, table 0211),
reads fields with HL7's escape sequences resolved (v2.5.1 2.7), and turns segments into the services' values.

Mapping (HL7 v2.5.1 → DICOM)
    * PID-3 (CX, repeating): the first repetition of identifier type ``MR`` (else the first) is Patient ID, its
      assigning authority (CX.4, HD namespace ID, else universal ID) Issuer of Patient ID; the others are Other
      Patient IDs.
    * PID-5 (XPN): ``family^given^middle^suffix^prefix`` → PN ``family^given^middle^prefix^suffix`` (PS3.5 6.2);
      the legal name (XPN.7 ``L``) when several are sent.
    * PID-7 (TS) → Patient's Birth Date (first 8 digits); PID-8 (table 0001) → Patient's Sex: M, F, O (A, N → O;
      U → empty).
    * HL7 ``""`` (v2.5.1 2.5.3, "delete the value") clears a value; an empty field leaves it as it was.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hl7
from hl7.containers import Repetition

from dicom_ecg_node.services.patients import CLEARED, PatientUpdate
from dicom_ecg_node.services.worklist import OrderData

#: MSH-18 character set (HL7 table 0211) → Python codec. Empty MSH-18 means ASCII; UTF-8 is read as well.
CHARSETS: dict[str, str] = {
    "": "utf-8", "ASCII": "ascii", "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/3": "iso8859-3",
    "8859/4": "iso8859-4", "8859/5": "iso8859-5", "8859/6": "iso8859-6", "8859/7": "iso8859-7",
    "8859/8": "iso8859-8", "8859/9": "iso8859-9", "8859/15": "iso8859-15", "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8", "ISO IR6": "ascii", "ISO IR100": "latin-1", "ISO IR192": "utf-8", "UTF-8": "utf-8",
    "BIG-5": "big5", "GB 18030-2000": "gb18030", "KS X 1001": "euc-kr", "ISO IR87": "iso2022_jp",
}

#: HL7 table 0357 message error condition codes used in ERR-3.
E_SEGMENT_SEQUENCE = "100"
E_REQUIRED_FIELD = "101"
E_DATA_TYPE = "102"
E_TABLE_VALUE = "103"
E_UNSUPPORTED_MESSAGE = "200"
E_UNSUPPORTED_EVENT = "201"
E_UNKNOWN_KEY = "204"
E_DUPLICATE_KEY = "205"
E_INTERNAL = "207"
_ERROR_TEXT = {
    E_SEGMENT_SEQUENCE: "Segment sequence error", E_REQUIRED_FIELD: "Required field missing",
    E_DATA_TYPE: "Data type error", E_TABLE_VALUE: "Table value not found",
    E_UNSUPPORTED_MESSAGE: "Unsupported message type", E_UNSUPPORTED_EVENT: "Unsupported event code",
    E_UNKNOWN_KEY: "Unknown key identifier", E_DUPLICATE_KEY: "Duplicate key identifier",
    E_INTERNAL: "Application internal error",
}


class Hl7Error(Exception):
    """A message the node answers with AE or AR (HL7 v2.5.1 2.9.2), with the ERR segment's content.

    Parameters
    ----------
    message : str
        What is wrong, for ERR-8 (user message) and the log.
    code : str
        HL7 table 0357 code for ERR-3.
    location : str
        ERR-2 error location (``SEG^seq^field``), e.g. ``"PID^1^3"``.
    ack_code : {"AE", "AR"}
        AE: the message was understood but not applied; AR: it was rejected (malformed, unsupported, refused).
    """

    def __init__(self, message: str, *, code: str = E_INTERNAL, location: str = "", ack_code: str = "AE") -> None:
        super().__init__(message)
        self.code, self.location, self.ack_code = code, location, ack_code


@dataclass(frozen=True, slots=True)
class Header:
    """What the acknowledgement needs of MSH (each value as received, escaped text kept verbatim)."""

    field_sep: str = "|"
    encoding: str = "^~\\&"
    sending_app: str = ""
    sending_facility: str = ""
    receiving_app: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    trigger: str = ""
    structure: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    charset: str = ""

    @property
    def sender(self) -> str:
        """Sending application and facility, the scope of MSH-10 uniqueness."""
        return f"{self.sending_app}^{self.sending_facility}"


def _msh_fields(raw: bytes) -> tuple[str, list[bytes]] | None:
    """The MSH segment's fields as bytes (index n = MSH-n for n >= 2), or ``None`` when there is no MSH first."""
    text = raw.lstrip(b"\r\n \t")
    if not text.startswith(b"MSH") or len(text) < 8:
        return None
    sep = text[3:4]
    end = min((i for i in (text.find(b"\r"), text.find(b"\n")) if i != -1), default=len(text))
    parts = text[:end].split(sep)
    return sep.decode("latin-1"), [b"MSH", sep, *parts[1:]]


def read_header(raw: bytes) -> Header | None:
    """MSH values, read before decoding (MSH fields up to MSH-18 are ASCII in every charset HL7 allows)."""
    found = _msh_fields(raw)
    if found is None:
        return None
    sep, f = found

    def get(n: int) -> str:
        return f[n].decode("latin-1") if n < len(f) else ""

    enc = get(2) or "^~\\&"
    comp, rep = (enc[0] if enc else "^"), (enc[1] if len(enc) > 1 else "~")
    msg_type = get(9).split(comp)
    return Header(sep, enc, get(3), get(4), get(5), get(6),
                  msg_type[0].strip().upper(), (msg_type[1] if len(msg_type) > 1 else "").strip().upper(),
                  (msg_type[2] if len(msg_type) > 2 else "").strip().upper(), get(10).strip(),
                  get(11) or "P", get(12) or "2.5.1", get(18).split(rep)[0].split(comp)[0].strip().upper())


def decode(raw: bytes, header: Header) -> hl7.Message:
    """Decode with the MSH-18 charset and parse with python-hl7.

    Raises
    ------
    Hl7Error
        AR: unknown charset, bytes invalid in it, or python-hl7 cannot parse the text.
    """
    codec = CHARSETS.get(header.charset)
    if codec is None:
        raise Hl7Error(f"MSH-18 character set {header.charset!r} is not supported", code=E_TABLE_VALUE,
                       location="MSH^1^18", ack_code="AR")
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise Hl7Error(f"message bytes are not valid {header.charset or 'ASCII/UTF-8'} (MSH-18): byte "
                       f"{exc.start}", code=E_DATA_TYPE, location="MSH^1^18", ack_code="AR") from exc
    # Segments end with CR (v2.5.1 2.5.2); LF or CRLF from hand-made senders are tolerated.
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        return hl7.parse(text)
    except Exception as exc:  # python-hl7 raises several kinds (ParseException, IndexError, ...)
        raise Hl7Error(f"message cannot be parsed: {exc}", code=E_SEGMENT_SEQUENCE, ack_code="AR") from exc


def encode(text: str, header: Header | None) -> bytes:
    """Encode an outgoing message (an ACK) in the charset of the message it answers, else UTF-8."""
    codec = CHARSETS.get(header.charset if header else "", "utf-8")
    try:
        codecs.lookup(codec)
        return text.encode(codec, errors="replace")
    except LookupError:
        return text.encode("utf-8")


# --------------------------------------------------------------------------------------------------------------
# Field access


def segments(msg: hl7.Message, seg_id: str) -> list[Any]:
    """Every segment ``seg_id`` in order (empty list when absent)."""
    return [s for s in msg if str(s[0][0]) == seg_id]


def get(seg: Any, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """One value, escape sequences resolved; ``""`` when absent (never raises)."""
    if seg is None:
        return ""
    try:
        return str(seg.extract_field(1, field, rep, comp, sub)).strip()
    except (IndexError, KeyError, ValueError, TypeError):
        return ""


def repetitions(seg: Any, field: int) -> int:
    """How many repetitions field ``field`` has (0 when absent or empty)."""
    if seg is None or field >= len(seg):
        return 0
    value = seg[field]
    if len(value) and isinstance(value[0], Repetition):
        return len(value)
    return 1 if str(value) else 0


def escape(text: str, header: Header | None = None) -> str:
    r"""Escape separators in a value (v2.5.1 2.7.4: ``\F\ \S\ \T\ \R\ \E\``)."""
    h = header or Header()
    enc = h.encoding + "\\&"[len(h.encoding) - 2:] if len(h.encoding) < 4 else h.encoding
    comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
    out = text.replace(esc, f"{esc}E{esc}")
    for ch, code in ((h.field_sep, "F"), (comp, "S"), (sub, "T"), (rep, "R")):
        out = out.replace(ch, f"{esc}{code}{esc}")
    return out.replace("\r", f"{esc}X0D{esc}").replace("\n", f"{esc}X0A{esc}")


# --------------------------------------------------------------------------------------------------------------
# Acknowledgements (HL7 v2.5.1 2.9.2 original mode, 2.14.1 MSA, 2.14.5 ERR)


def build_ack(header: Header | None, ack_code: str, *, error: Hl7Error | None = None, own_app: str = "ECGNODE",
              control_id: str | None = None) -> str:
    """An ACK for ``header``'s message: MSH, MSA (MSA-1 ``ack_code``, MSA-2 echoing MSH-10) and ERR when failed.

    Parameters
    ----------
    header : Header or None
        The message's MSH (``None`` when it had none: MSA-2 is then empty).
    ack_code : {"AA", "AE", "AR"}
        MSA-1.
    error : Hl7Error, optional
        Becomes the ERR segment (ERR-2 location, ERR-3 code, ERR-4 severity ``E``, ERR-8 user message).
    own_app : str
        MSH-3 of the ACK when the message named no receiving application.
    control_id : str, optional
        MSH-10 of the ACK (default: generated).
    """
    h = header or Header()
    s = h.field_sep
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "+0000"
    trigger = f"ACK^{h.trigger}^ACK" if h.trigger else "ACK"
    ack_id = control_id or hl7.generate_message_control_id()
    msh = s.join(["MSH", h.encoding, h.receiving_app or own_app, h.receiving_facility, h.sending_app,
                  h.sending_facility, now, "", trigger, ack_id, h.processing_id or "P", h.version or "2.5.1"])
    if h.charset:
        msh += s * 6 + h.charset  # MSH-13..17 empty, MSH-18 echoed
    lines = [msh, s.join(["MSA", ack_code, h.control_id])]
    if error is not None:
        code = f"{error.code}^{_ERROR_TEXT.get(error.code, 'Error')}^HL70357"
        lines.append(s.join(["ERR", "", error.location, code, "E", "", "", "", escape(str(error), h)]))
    return "\r".join(lines) + "\r"


def ack_code_of(ack: bytes) -> str:
    """MSA-1 of an acknowledgement (``""`` when it has none)."""
    m = re.search(rb"(?:^|[\r\n])MSA(.)([A-Z]{2})", ack)
    return m.group(2).decode("ascii") if m else ""


# --------------------------------------------------------------------------------------------------------------
# Segment → service values


def _hl7_date(value: str) -> str | None:
    """DA (YYYYMMDD) of a TS/DTM value; ``None`` when absent; :data:`CLEARED` stays."""
    if value == CLEARED:
        return CLEARED
    digits = re.match(r"^\d{8}", value)
    return digits.group(0) if digits else None


def _sex(value: str) -> str | None:
    if not value:
        return None
    if value == CLEARED:
        return CLEARED
    return {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": CLEARED}.get(value.upper())


def person_name(seg: Any, field: int, *, location: str) -> str | None:
    """An XPN field as a DICOM PN (``None``: not sent; :data:`CLEARED`: cleared); the legal name preferred."""
    n = repetitions(seg, field)
    if n == 0:
        return None
    if get(seg, field) == CLEARED and n == 1:
        return CLEARED
    chosen = 1
    for r in range(1, n + 1):
        if get(seg, field, r, 7).upper() == "L":
            chosen = r
            break
    family, given, middle = get(seg, field, chosen, 1), get(seg, field, chosen, 2), get(seg, field, chosen, 3)
    suffix, prefix = get(seg, field, chosen, 4), get(seg, field, chosen, 5)
    comps = [family, given, middle, prefix, suffix]
    if any("^" in c or "=" in c or "\\" in c for c in comps):
        raise Hl7Error("name contains characters DICOM PN cannot hold (^, = or \\)", code=E_DATA_TYPE,
                       location=location)
    while comps and not comps[-1]:
        comps.pop()
    return "^".join(comps) or None


def _cx_issuer(seg: Any, field: int, rep: int) -> str:
    return get(seg, field, rep, 4, 1) or get(seg, field, rep, 4, 2)


def patient_identifiers(seg: Any, field: int, *, location: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(Patient ID, issuer, other (id, issuer) pairs) of a CX list field such as PID-3.

    Raises
    ------
    Hl7Error
        No identifier, or one longer than DICOM LO allows (64).
    """
    ids: list[tuple[str, str, str]] = []
    for r in range(1, repetitions(seg, field) + 1):
        value = get(seg, field, r, 1)
        if value and value != CLEARED:
            ids.append((value, _cx_issuer(seg, field, r), get(seg, field, r, 5).upper()))
    if not ids:
        raise Hl7Error("patient identifier list is empty", code=E_REQUIRED_FIELD, location=location)
    for value, issuer, _ in ids:
        if len(value) > 64 or len(issuer) > 64:
            raise Hl7Error(f"identifier {value[:20]!r} is longer than 64 characters (DICOM LO)",
                           code=E_DATA_TYPE, location=location)
    primary = next((i for i in ids if i[2] == "MR"), ids[0])
    others = tuple((v, a) for v, a, _ in ids if (v, a) != primary[:2])
    return primary[0], primary[1], others


def pid_update(pid: Any) -> PatientUpdate:
    """A PID segment (v2.5.1 3.4.2) as a :class:`PatientUpdate`."""
    if pid is None:
        raise Hl7Error("PID segment is missing", code=E_SEGMENT_SEQUENCE, location="PID")
    patient_id, issuer, others = patient_identifiers(pid, 3, location="PID^1^3")
    birth = get(pid, 7)
    birth_date = _hl7_date(birth)
    if birth and birth_date is None:
        raise Hl7Error(f"PID-7 date of birth {birth!r} is not a date", code=E_DATA_TYPE, location="PID^1^7")
    sex_raw = get(pid, 8)
    sex = _sex(sex_raw)
    if sex_raw and sex is None:
        raise Hl7Error(f"PID-8 administrative sex {sex_raw!r} is not in HL7 table 0001", code=E_TABLE_VALUE,
                       location="PID^1^8")
    return PatientUpdate(patient_id, issuer, person_name(pid, 5, location="PID^1^5"), birth_date, sex, others)


def _ts_parts(value: str, location: str) -> tuple[str | None, str | None]:
    """A TS/DTM (``YYYYMMDD[HHMM[SS[.S+]]][+/-ZZZZ]``) as DICOM DA and TM; the UTC offset is dropped.

    A worklist is in the modality's local time; HL7 senders send local times, so the offset only tells which.
    """
    if not value:
        return None, None
    m = re.match(r"^(\d{8})(\d{2,6}(?:\.\d{1,6})?)?([+-]\d{4})?$", value)
    if not m:
        raise Hl7Error(f"{value!r} is not a date/time (TS)", code=E_DATA_TYPE, location=location)
    return m.group(1), m.group(2)


#: HL7 priority (ORC-7.6 / TQ1-9, table 0027) → DICOM Requested Procedure Priority (PS3.3 C.4.11).
PRIORITY = {"S": "STAT", "A": "HIGH", "R": "ROUTINE", "P": "MEDIUM", "C": "MEDIUM", "T": "MEDIUM",
            "PRN": "LOW", "TM": "MEDIUM"}
#: OBR-24 diagnostic service section (table 0074) → DICOM Modality.
MODALITY = {"EC": "ECG", "ECG": "ECG", "EKG": "ECG", "CUS": "US", "RX": "CR"}


def order_from(control_seg: Any, obr: Any, tq1: Any, pid: Any, pv1: Any) -> OrderData:
    """One order group (ORC, OBR, optional TQ1, PID, PV1) as :class:`OrderData` (v2.5.1 4.5.1, 4.5.3, 4.5.4)."""
    orc = control_seg
    control = get(orc, 1).upper()
    if not control:
        raise Hl7Error("ORC-1 order control is missing", code=E_REQUIRED_FIELD, location="ORC^1^1")

    def ei(seg: Any, field: int) -> str | None:
        ident, ns = get(seg, field, 1, 1), get(seg, field, 1, 2)
        return (f"{ident}^{ns}" if ns else ident) or None

    placer = ei(orc, 2) or ei(obr, 2)
    filler = ei(orc, 3) or ei(obr, 3)
    patient = pid_update(pid) if pid is not None else None
    # Start date/time: TQ1-7 (v2.5 timing) first, else ORC-7.4 (the TQ data type kept for compatibility).
    start_raw, start_loc = (get(tq1, 7), "TQ1^1^7") if get(tq1, 7) else (get(orc, 7, 1, 4), "ORC^1^7")
    start_date, start_time = _ts_parts(start_raw, start_loc)
    prio_raw = (get(tq1, 9) or get(orc, 7, 1, 6)).upper()
    priority = PRIORITY.get(prio_raw) if prio_raw else None
    modality_raw = get(obr, 24).upper()
    modality = MODALITY.get(modality_raw, modality_raw) or None
    station = get(orc, 18) or None
    if station is not None and len(station) > 16:
        raise Hl7Error(f"ORC-18 station AE title {station!r} is longer than 16 characters", code=E_DATA_TYPE,
                       location="ORC^1^18")
    referring = _xcn_name(obr, 16) or _xcn_name(pv1, 8)  # ordering provider, else referring doctor
    return OrderData(
        control=control, placer_order=placer, filler_order=filler, order_status=get(orc, 5) or None,
        patient_id=patient.patient_id if patient else None, issuer=patient.issuer if patient else "",
        patient_name=_plain(patient.name) if patient else None,
        birth_date=_plain(patient.birth_date) if patient else None, sex=_plain(patient.sex) if patient else None,
        other_ids=patient.other_ids if patient else (), admission_id=get(pv1, 19) or None,
        location=get(pv1, 3) or None, accession_number=get(obr, 18) or None,
        requested_procedure_id=get(obr, 19) or None, sps_id=get(obr, 20) or None, modality=modality,
        protocol_code=get(obr, 4, 1, 1) or None, protocol_scheme=get(obr, 4, 1, 3) or None,
        protocol_meaning=get(obr, 4, 1, 2) or None, start_date=start_date, start_time=start_time,
        station_ae=station, priority=priority, referring_physician=referring)


def _plain(value: str | None) -> str | None:
    return None if value in (None, CLEARED) else value


def _xcn_name(seg: Any, field: int) -> str | None:
    """The person name of an XCN (ID ^ family ^ given ^ middle ^ suffix ^ prefix) as DICOM PN."""
    if seg is None:
        return None
    comps = [get(seg, field, 1, 2), get(seg, field, 1, 3), get(seg, field, 1, 4), get(seg, field, 1, 6),
             get(seg, field, 1, 5)]
    while comps and not comps[-1]:
        comps.pop()
    return "^".join(comps) or None
