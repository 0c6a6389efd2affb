"""HL7 v2 intake: one received message → access check → idempotency → services → one acknowledgement.

Every message gets an ACK (HL7 v2.5.1 2.9.2, original acknowledgement mode):

* ``AA`` applied;
* ``AE`` understood but not applied (unknown order, circular merge, invalid value...), with an ERR segment;
* ``AR`` rejected: no MSH, no MSH-10, unsupported message type or event, unknown charset, undecodable bytes,
  a sender or address not allowed, an MSH-10 re-used for different content.

A message either changes the catalog completely and is logged with its ACK in the same transaction, or changes
nothing. The log (``hl7_message``, unique on sending application/facility + MSH-10) makes re-delivery idempotent:
the same message again gets the stored ACK and changes nothing a second time.

Supported messages
    ADT^A01/A04/A05/A08/A28/A31 (create or update the patient from PID), ADT^A40 (merge: PID surviving, MRG-1
    prior), ORM^O01 and OMG^O19 (orders: ORC/TQ1/OBR groups → worklist).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import peewee as pw

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.errors import CatalogError, EcgNodeError
from dicom_ecg_node.hl7.messages import (
    E_DUPLICATE_KEY,
    E_INTERNAL,
    E_SEGMENT_SEQUENCE,
    E_UNKNOWN_KEY,
    E_UNSUPPORTED_EVENT,
    E_UNSUPPORTED_MESSAGE,
    Header,
    Hl7Error,
    build_ack,
    decode,
    encode,
    order_from,
    patient_identifiers,
    pid_update,
    read_header,
    segments,
)
from dicom_ecg_node.hl7.mllp import FramingError
from dicom_ecg_node.services.patients import MergeError, PatientService, write_transaction
from dicom_ecg_node.services.worklist import OrderError, WorklistService

log = logging.getLogger("dicom_ecg_node.hl7")

#: ADT events that create or update the patient from PID (v2.5.1 3.3).
ADT_UPDATE_EVENTS = frozenset({"A01", "A04", "A05", "A08", "A28", "A31"})
#: Order message types and their trigger events (v2.5.1 4.4.1 ORM^O01, 4.4.6 OMG^O19).
ORDER_MESSAGES = {"ORM": "O01", "OMG": "O19"}


@dataclass(frozen=True, slots=True)
class Hl7Policy:
    """Who may send HL7 messages (empty tuples: anyone).

    Attributes
    ----------
    allowed_facilities : tuple of str
        MSH-4 sending facilities (namespace ID, first component).
    allowed_addresses : tuple of str
        IP addresses or networks (CIDR) of peers.
    """

    allowed_facilities: tuple[str, ...] = ()
    allowed_addresses: tuple[str, ...] = ()

    def check(self, header: Header, peer: str) -> None:
        """Raise an AR :class:`Hl7Error` unless ``peer`` and the sending facility are allowed."""
        if self.allowed_addresses and not _address_allowed(peer, self.allowed_addresses):
            raise Hl7Error(f"address {peer} may not send HL7 messages to this node", code=E_UNKNOWN_KEY,
                           location="MSH^1^4", ack_code="AR")
        facility = header.sending_facility.split("^")[0]
        if self.allowed_facilities and facility not in self.allowed_facilities:
            raise Hl7Error(f"sending facility {facility!r} (MSH-4) is not allowed", code=E_UNKNOWN_KEY,
                           location="MSH^1^4", ack_code="AR")


def _address_allowed(address: str, allowed: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


#: Audit hook: ``(event, outcome, address, patient_ids, detail)``; may raise to make the message fail (AE).
AuditHook = Callable[[str, str, str, list[str], dict[str, Any]], None]


def audit_hook_for(audit: Any) -> AuditHook:
    """An :data:`AuditHook` writing to a :class:`dicom_ecg_node.services.audit.AuditLog`."""

    def record(event: str, outcome: str, address: str, patient_ids: list[str], detail: dict[str, Any]) -> None:
        audit.record(event, outcome=outcome, address=address, patient_ids=patient_ids, detail=detail)

    return record


class Hl7Intake:
    """Process received HL7 messages against the catalog.

    Parameters
    ----------
    catalog : Catalog
        The node's catalog (schema version 6 or later).
    policy : Hl7Policy, optional
        Allowed senders.
    own_app : str
        MSH-3 of acknowledgements (the node's AE title by default).
    audit : AuditHook, optional
        Called for every message (``hl7``) and every merge (``patient-merge``).
    """

    def __init__(self, catalog: Catalog, *, policy: Hl7Policy | None = None, own_app: str = "ECGNODE",
                 audit: AuditHook | None = None) -> None:
        self.catalog = catalog
        self.policy = policy or Hl7Policy()
        self.own_app = own_app
        self.audit = audit
        self.patients = PatientService(catalog)
        self.worklist = WorklistService(catalog)

    # -- edges -------------------------------------------------------------------------------------------------

    def on_framing_error(self, error: FramingError, peer: str) -> bytes:
        """The AR answered for bytes that were not one well-formed MLLP block (nothing is applied)."""
        header = read_header(error.data)
        return encode(build_ack(header, "AR", error=Hl7Error(error.reason, code=E_SEGMENT_SEQUENCE, ack_code="AR"),
                                own_app=self.own_app), header)

    def process(self, raw: bytes, peer: str) -> bytes:
        """Handle one message; always returns an acknowledgement (never raises)."""
        header = read_header(raw)
        try:
            ack = self._process(raw, header, peer)
        except Hl7Error as exc:
            log.warning("HL7 from %s %s %s: %s %s", peer, header.message_type if header else "?",
                        header.control_id if header else "?", exc.ack_code, exc)
            self._audit("hl7", exc.ack_code, peer, [], header, str(exc))
            ack = build_ack(header, exc.ack_code, error=exc, own_app=self.own_app)
        except Exception as exc:  # a bug must still be answered, and must not be acknowledged as applied
            log.exception("HL7 message from %s failed unexpectedly", peer)
            ack = build_ack(header, "AE", error=Hl7Error(f"internal error: {type(exc).__name__}"),
                            own_app=self.own_app)
        return encode(ack, header)

    def _audit(self, event: str, outcome: str, peer: str, patient_ids: list[str], header: Header | None,
               reason: str = "", **detail: Any) -> None:
        if self.audit is None:
            return
        info = {"message_type": f"{header.message_type}^{header.trigger}" if header else "",
                "control_id": header.control_id if header else "", "sender": header.sender if header else "",
                **detail}
        if reason:
            info["reason"] = reason
        try:
            self.audit(event, outcome, peer, patient_ids, info)
        except EcgNodeError as exc:
            if outcome == "AA":
                raise
            log.error("audit entry not written: %s", exc)

    # -- one message -------------------------------------------------------------------------------------------

    def _process(self, raw: bytes, header: Header | None, peer: str) -> str:
        if header is None:
            raise Hl7Error("message does not start with an MSH segment", code=E_SEGMENT_SEQUENCE,
                           location="MSH", ack_code="AR")
        if not header.control_id:
            raise Hl7Error("MSH-10 message control ID is missing", code="101", location="MSH^1^10",
                           ack_code="AR")
        self.policy.check(header, peer)
        digest = hashlib.sha256(raw).hexdigest()
        stored = self._logged(header)
        if stored is not None:
            return self._redelivered(stored, digest, header, peer)
        msg = decode(raw, header)
        try:
            return self._apply(msg, header, digest, peer)
        except CatalogError as exc:
            # A concurrent delivery of the same message may have committed first (unique log index).
            stored = self._logged(header)
            if stored is not None:
                return self._redelivered(stored, digest, header, peer)
            raise Hl7Error(f"catalog unavailable: {exc}", code=E_INTERNAL) from exc

    def _logged(self, header: Header) -> Any:
        L = self.catalog.models.Hl7Message  # noqa: N806
        with self.catalog._connection():
            return L.get_or_none((L.sender == header.sender[:255]) & (L.control_id == header.control_id[:199]))

    def _redelivered(self, stored: Any, digest: str, header: Header, peer: str) -> str:
        if stored.sha256 != digest:
            raise Hl7Error(f"MSH-10 {header.control_id!r} was already used by this sender for another message",
                           code=E_DUPLICATE_KEY, location="MSH^1^10", ack_code="AR")
        log.info("HL7 %s from %s re-delivered: answering the stored %s", header.control_id, peer, stored.ack_code)
        return str(stored.ack)

    def _apply(self, msg: Any, header: Header, digest: str, peer: str) -> str:
        """Apply the message and log it with its ACK, in one transaction (a failure rolls back to AE)."""
        L = self.catalog.models.Hl7Message  # noqa: N806
        with write_transaction(self.catalog):
            error: Hl7Error | None = None
            patient_ids: list[str] = []
            try:
                with self.catalog.db.atomic():  # a savepoint: an AE leaves no partial change behind
                    patient_ids = self._dispatch(msg, header, peer)
                    self._audit("hl7", "AA", peer, patient_ids, header)
            except Hl7Error as exc:
                error = exc
            except (MergeError, OrderError) as exc:
                error = Hl7Error(str(exc), code=E_UNKNOWN_KEY if "unknown" in str(exc) else E_INTERNAL,
                                 location=getattr(exc, "location", ""))
            except CatalogError:
                raise
            except (EcgNodeError, pw.PeeweeException) as exc:
                error = Hl7Error(str(exc))
            code = "AA" if error is None else error.ack_code
            ack = build_ack(header, code, error=error, own_app=self.own_app)
            if error is not None:
                log.warning("HL7 %s^%s %s from %s: %s %s", header.message_type, header.trigger, header.control_id,
                            peer, code, error)
                self._audit("hl7", code, peer, patient_ids, header, str(error))
            else:
                log.info("HL7 %s^%s %s from %s: AA", header.message_type, header.trigger, header.control_id, peer)
            L.insert(sender=header.sender[:255], control_id=header.control_id[:199],
                     message_type=f"{header.message_type}^{header.trigger}"[:32], sha256=digest, ack_code=code,
                     ack=ack, peer=peer[:255], received_at=datetime.now(UTC).replace(tzinfo=None)).execute()
        return ack

    def _dispatch(self, msg: Any, header: Header, peer: str) -> list[str]:
        """Route by MSH-9; returns the patient IDs concerned (for the audit trail)."""
        kind, event = header.message_type, header.trigger
        if kind == "ADT":
            if event in ADT_UPDATE_EVENTS:
                pid = next(iter(segments(msg, "PID")), None)
                update = pid_update(pid)
                self.patients.upsert(update)
                return [update.patient_id]
            if event == "A40":
                return self._merge(msg, header, peer)
            raise Hl7Error(f"ADT event {event!r} is not supported (A01, A04, A05, A08, A28, A31, A40)",
                           code=E_UNSUPPORTED_EVENT, location="MSH^1^9", ack_code="AR")
        if kind in ORDER_MESSAGES:
            if event and event != ORDER_MESSAGES[kind]:
                raise Hl7Error(f"{kind} event {event!r} is not supported ({kind}^{ORDER_MESSAGES[kind]})",
                               code=E_UNSUPPORTED_EVENT, location="MSH^1^9", ack_code="AR")
            return self._orders(msg)
        raise Hl7Error(f"message type {kind}^{event} is not supported (ADT, ORM^O01, OMG^O19)",
                       code=E_UNSUPPORTED_MESSAGE, location="MSH^1^9", ack_code="AR")

    def _merge(self, msg: Any, header: Header, peer: str) -> list[str]:
        """ADT^A40 (v2.5.1 3.3.40): each PID (surviving) with the MRG (prior) that follows it."""
        pairs: list[tuple[Any, Any]] = []
        pid = None
        for seg in msg:
            sid = str(seg[0][0])
            if sid == "PID":
                pid = seg
            elif sid == "MRG":
                if pid is None:
                    raise Hl7Error("MRG without a preceding PID", code=E_SEGMENT_SEQUENCE, location="MRG")
                pairs.append((pid, seg))
                pid = None
        if not pairs:
            raise Hl7Error("ADT^A40 needs PID and MRG segments", code=E_SEGMENT_SEQUENCE, location="MRG")
        ids: list[str] = []
        for n, (pid_seg, mrg) in enumerate(pairs, 1):
            surviving = pid_update(pid_seg)
            prior_id, prior_issuer, _ = patient_identifiers(mrg, 1, location=f"MRG^{n}^1")
            record = self.patients.merge(prior_id, prior_issuer, surviving, control_id=header.control_id)
            ids += [prior_id, surviving.patient_id]
            self._audit("patient-merge", "AA", peer, [prior_id, surviving.patient_id], header,
                        merge_id=record.id, moved_studies=len(record.moved_studies))
        return ids

    def _orders(self, msg: Any) -> list[str]:
        """ORC groups with their TQ1 and OBR, under the latest PID/PV1 (v2.5.1 4.4.1, 4.4.6)."""
        groups: list[dict[str, Any]] = []
        pid = pv1 = None
        for seg in msg:
            sid = str(seg[0][0])
            if sid == "PID":
                pid, pv1 = seg, None
            elif sid == "PV1":
                pv1 = seg
            elif sid == "ORC":
                groups.append({"ORC": seg, "PID": pid, "PV1": pv1, "OBR": None, "TQ1": None})
            elif sid in ("OBR", "TQ1") and groups and groups[-1][sid] is None:
                groups[-1][sid] = seg
        if not groups:
            raise Hl7Error("order message without ORC segment", code=E_SEGMENT_SEQUENCE, location="ORC")
        ids: list[str] = []
        for g in groups:
            order = order_from(g["ORC"], g["OBR"], g["TQ1"], g["PID"], g["PV1"])
            self.worklist.apply_order(order)
            if order.patient_id:
                ids.append(order.patient_id)
        return ids
