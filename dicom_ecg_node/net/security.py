"""Association-level enforcement of the access policy, the limits, and the audit trail at the network edge.

:class:`AssociationGuard` turns pynetdicom events into plain :class:`~dicom_ecg_node.services.security.Peer`
values, asks :class:`~dicom_ecg_node.services.security.AccessPolicy` for a decision, and answers with the DICOM
means of refusal:

A-ASSOCIATE-RJ (PS3.8 9.3.4; result, source, reason), decided on ``EVT_REQUESTED`` before negotiation
    ====================  ===============================================================================
    unknown calling AE    1 rejected-permanent, 1 service-user, 3 calling-AE-title-not-recognized
    wrong address         1, 1, 3: the title is not recognised *from there* (nothing more is revealed)
    wrong certificate     1, 1, 3
    user identity         1, 2 service-provider (ACSE), 1 no-reason-given: what PS3.7 D.3.3.7 prescribes for a
                          rejection "due to an authorization failure"
    per-peer limit        2 rejected-transient, 3 service-provider (presentation), 2 local-limit-exceeded
    catalog unavailable   2 rejected-transient, 1 service-user, 1 no-reason-given
    ====================  ===============================================================================

    The called AE title (reason 7) and the overall association limit (2, 3, 2) stay with pynetdicom
    (``require_called_aet``, ``maximum_associations``); those rejections are audited from ``EVT_REJECTED``.
DIMSE statuses for a request the caller may not make
    C-ECHO, C-STORE, C-FIND, C-GET: 0x0124 Refused: Not authorized (PS3.7 C.5.x general status; for C-GET
    pynetdicom reports it with one failed sub-operation). C-MOVE: 0xA801 Refused: Move destination unknown, both
    without ``move`` permission and for a destination the caller may not use: pynetdicom's C-MOVE handler protocol
    can send no other status before the destination is resolved, and "unknown to you" reveals nothing about the
    registry.
The decision is taken once per association and kept (weakly keyed by the association) until it ends: an admin's
change in the registry applies to the next association.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicom_ecg_node.errors import AccessDeniedError, ConfigError, EcgNodeError, LimitExceededError
from dicom_ecg_node.services.audit import store_subject, subjects_of
from dicom_ecg_node.services.security import AccessPolicy, Grant, Peer, UserIdentity

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pynetdicom.association import Association
    from pynetdicom.events import Event

    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.catalog.registry import RegisteredAE
    from dicom_ecg_node.services.audit import AuditLog
    from dicom_ecg_node.services.ingest import StoreOutcome

log = logging.getLogger("dicom_ecg_node.net")

#: AccessDeniedError.reason → A-ASSOCIATE-RJ (result, source, reason/diagnostic), PS3.8 9.3.4 (see module notes).
REJECTIONS: dict[str, tuple[int, int, int]] = {
    "unknown-ae": (1, 1, 3),
    "address": (1, 1, 3),
    "certificate": (1, 1, 3),
    "user-identity": (1, 2, 1),
    "per-peer-limit": (2, 3, 2),
    "unavailable": (2, 1, 1),
}
#: Readable names of pynetdicom's own rejections, for the audit trail.
_PYNETDICOM_REJECTIONS = {(1, 1, 7): "called-ae", (2, 3, 2): "association-limit", (1, 1, 3): "unknown-ae",
                          (2, 2, 1): "user-identity"}
#: Query keys worth auditing: the matching keys a viewer used (never the whole identifier).
_MAX_KEYS = 20


def _peer_address(assoc: Association) -> tuple[str, int]:
    info = assoc.requestor.address_info
    return (str(info.address), int(info.port)) if info is not None else ("?", 0)


def _tls_peer(assoc: Association) -> tuple[bool, str | None, str | None]:
    """(TLS?, SHA-256 of the client certificate, its subject) of the association's socket."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if not isinstance(sock, ssl.SSLSocket):
        return False, None, None
    der = sock.getpeercert(binary_form=True)
    if not der:
        return True, None, None
    subject = ", ".join("=".join(pair) for rdn in (sock.getpeercert() or {}).get("subject", ()) for pair in rdn)
    return True, hashlib.sha256(der).hexdigest(), subject or None


def _identity(assoc: Association) -> UserIdentity | None:
    item = assoc.requestor.user_identity
    if item is None or item.user_identity_type is None:
        return None
    return UserIdentity(int(item.user_identity_type),
                        (item.primary_field or b"").decode("utf-8", "replace"),
                        (item.secondary_field or b"").decode("utf-8", "replace"))


class AssociationGuard:
    """Admit or reject associations, check each request, keep limits, and write the audit trail.

    Parameters
    ----------
    policy : AccessPolicy
        Decides who may connect and what they may do.
    audit : AuditLog
        Where security-relevant events go.
    catalog : Catalog
        To name the patients and studies of retrieved instances in the audit trail.
    max_associations_per_peer : int
        Simultaneous associations from one IP address (0: no per-peer limit).
    max_object_size : int
        Largest C-STORE data set, bytes (0: unlimited).
    """

    def __init__(self, policy: AccessPolicy, audit: AuditLog, catalog: Catalog, *,
                 max_associations_per_peer: int = 0, max_object_size: int = 0) -> None:
        self.policy = policy
        self.audit = audit
        self.catalog = catalog
        self.max_associations_per_peer = max_associations_per_peer
        self.max_object_size = max_object_size
        self._grants: weakref.WeakKeyDictionary[Any, Grant] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    # -- association ------------------------------------------------------------------------------------------

    def handlers(self) -> list[tuple[Any, ...]]:
        """The association-level handlers to bind (``EVT_REQUESTED``, ``EVT_ACCEPTED``, ``EVT_REJECTED``)."""
        from pynetdicom import evt

        return [(evt.EVT_REQUESTED, self.on_requested), (evt.EVT_ACCEPTED, self.on_accepted),
                (evt.EVT_REJECTED, self.on_rejected)]

    def on_requested(self, event: Event) -> None:
        """``EVT_REQUESTED``: admit the peer (the grant is kept) or send the A-ASSOCIATE-RJ of the module table."""
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title).strip()
        address, port = _peer_address(assoc)
        tls, fingerprint, subject = _tls_peer(assoc)
        peer = Peer(calling, address, tls, fingerprint, subject, _identity(assoc))
        try:
            self._check_peer_limit(assoc, address)
            grant = self.policy.admit(peer)
        except AccessDeniedError as exc:
            self._reject(assoc, peer, port, exc.reason, str(exc))
            return
        except LimitExceededError as exc:
            self._reject(assoc, peer, port, "per-peer-limit", str(exc))
            return
        except EcgNodeError as exc:  # the catalog is down: nobody can be checked, so nobody gets in
            log.error("association from %s refused: access policy unavailable: %s", address, exc)
            self._reject(assoc, peer, port, "unavailable", str(exc))
            return
        if not grant.registered:
            log.warning("ACCEPTING UNKNOWN calling AE %r from %s with every permission (accept_unknown is on)",
                        calling, address)
        with self._lock:
            self._grants[assoc] = grant

    def _check_peer_limit(self, assoc: Association, address: str) -> None:
        if not self.max_associations_per_peer:
            return
        # pynetdicom's associations and the light ones (net/lightassoc.py) of the same server.
        light = getattr(getattr(assoc, "_server", None), "light", None)
        running = light.active() if light is not None else assoc.ae.active_associations
        mine = [a for a in running
                if a.is_acceptor and a.requestor.address_info is not None and a.requestor.address == address]
        if len(mine) > self.max_associations_per_peer:
            raise LimitExceededError(f"{len(mine) - 1} associations from {address} already "
                                     f"(max_associations_per_peer = {self.max_associations_per_peer})",
                                     limit="max_associations_per_peer")

    def _reject(self, assoc: Association, peer: Peer, port: int, reason: str, message: str) -> None:
        result, source, diagnostic = REJECTIONS[reason]
        log.warning("association refused: calling AE %r from %s: %s (A-ASSOCIATE-RJ %d/%d/%d)", peer.ae_title,
                    peer.address, message, result, source, diagnostic)
        try:
            self.audit.record("association", outcome="refused", ae=peer.ae_title,
                              address=f"{peer.address}:{port}", reason=reason,
                              user=peer.identity.primary if peer.identity else None,
                              detail={"message": message, "tls": peer.tls, "certificate": peer.cert_subject,
                                      "rejection": [result, source, diagnostic]})
        except EcgNodeError as exc:
            log.error("audit trail not written: %s", exc)
        assoc.acse.send_reject(result, source, diagnostic)
        # As pynetdicom does after its own rejections: wait for the peer to close, then end the thread.
        assoc.kill()

    def on_accepted(self, event: Event) -> None:
        """``EVT_ACCEPTED``: audit the association with its grant."""
        grant = self.grant(event)
        address, port = _peer_address(event.assoc)
        tls, _, subject = _tls_peer(event.assoc)
        self._record("association", outcome="accepted", ae=grant.ae_title, address=f"{address}:{port}",
                     user=grant.username,
                     detail={"registered": grant.registered, "permissions": sorted(grant.permissions), "tls": tls,
                             "certificate": subject})

    def on_rejected(self, event: Event) -> None:
        """``EVT_REJECTED``: audit a rejection pynetdicom made itself (called AE title, overall limit)."""
        assoc = event.assoc
        rsp = assoc.acceptor.primitive
        code = (int(rsp.result or 0), int(rsp.result_source or 0), int(rsp.diagnostic or 0)) if rsp else (0, 0, 0)
        address, port = _peer_address(assoc)
        calling = str(assoc.requestor.primitive.calling_ae_title).strip() if assoc.requestor.primitive else None
        self._record("association", outcome="refused", ae=calling, address=f"{address}:{port}",
                     reason=_PYNETDICOM_REJECTIONS.get(code, "rejected"), detail={"rejection": list(code)})

    def on_tls_refused(self, address: tuple[str, int], exc: BaseException) -> None:
        """A TLS handshake failed (no, untrusted or expired client certificate; not TLS at all)."""
        reason = getattr(exc, "reason", None) or type(exc).__name__
        log.warning("TLS handshake from %s:%d refused: %s", address[0], address[1], reason)
        self._record("tls", outcome="refused", address=f"{address[0]}:{address[1]}", reason=str(reason),
                     detail={"message": str(exc)[:300]})

    def _record(self, event: str, **fields: Any) -> None:
        """Audit without letting a failing audit file break the association (the failure is logged loudly)."""
        try:
            self.audit.record(event, **fields)
        except EcgNodeError as exc:
            log.error("audit trail not written: %s", exc)

    # -- requests ---------------------------------------------------------------------------------------------

    def grant(self, event: Event) -> Grant:
        """The grant of the event's association.

        Raises
        ------
        AccessDeniedError
            No grant: the association was not admitted by :meth:`on_requested`.
        """
        with self._lock:
            grant = self._grants.get(event.assoc)
        if grant is None:
            raise AccessDeniedError("association was not admitted by the access policy", reason="permission")
        return grant

    def authorize(self, event: Event, operation: str) -> Grant:
        """Raise unless the association may request ``operation``; C-STORE also checks the object size.

        Raises
        ------
        AccessDeniedError
            Not permitted (0x0124).
        LimitExceededError
            A C-STORE larger than ``max_object_size`` (0xA700).
        """
        grant = self.grant(event)
        try:
            self.policy.check(grant, operation)
        except AccessDeniedError as exc:
            address, port = _peer_address(event.assoc)
            log.warning("%s refused: %s", operation, exc)
            self._record(operation if operation != "move" else "retrieve", outcome="refused", ae=grant.ae_title,
                         address=f"{address}:{port}", user=grant.username, reason="permission",
                         detail={"operation": operation})
            raise
        if operation == "store" and self.max_object_size:
            # getvalue(): the bytes the BytesIO was made from, where getbuffer() would copy them first.
            size = len(event.request.DataSet.getvalue()) if event.request.DataSet is not None else 0
            if size > self.max_object_size:
                exc = LimitExceededError(f"object of {size} bytes exceeds max_object_size {self.max_object_size}",
                                         limit="max_object_size")
                address, port = _peer_address(event.assoc)
                self._record("store", outcome="refused", ae=grant.ae_title, address=f"{address}:{port}",
                             user=grant.username, reason="limit",
                             sop_instance_uids=[str(event.request.AffectedSOPInstanceUID or "")],
                             detail={"message": str(exc), "size": size})
                raise exc
        return grant

    def audit_store(self, event: Event, data: bytes | None, outcome: StoreOutcome | None,
                    error: BaseException | None = None) -> None:
        """Audit one C-STORE: who, patient, study, SOP instance, and the outcome (or the refusal)."""
        grant = self._grants.get(event.assoc)
        address, port = _peer_address(event.assoc)
        if outcome is not None and (outcome.patient_id or outcome.patient_name):
            # What the ingest service read from the object; a refusal's bytes are scanned for it instead.
            patient_id, patient_name, study = outcome.patient_id, outcome.patient_name, outcome.study_instance_uid
        else:
            patient_id, patient_name, study = store_subject(data) if data else (None, None, None)
        self._record("store", outcome="success" if error is None else "failure",
                     ae=grant.ae_title if grant else None, address=f"{address}:{port}",
                     user=grant.username if grant else None, reason=None if error is None else str(error)[:300],
                     patient_ids=[patient_id or ""], patient_names=[patient_name or ""],
                     study_uids=[(outcome.study_instance_uid if outcome else study) or ""],
                     sop_instance_uids=[str(event.request.AffectedSOPInstanceUID or "")],
                     detail={"status": outcome.status if outcome else None,
                             "sop_class_uid": str(event.request.AffectedSOPClassUID or "")})

    def audited_answers(self, event: Event, identifier: Dataset, answers: Iterator[Any]) -> Iterator[Any]:
        """Pass C-FIND answers through, then audit the query: who, which keys, how many answers, which patients."""
        grant = self._grants.get(event.assoc)
        keys: dict[str, str] = {}
        for elem in identifier:
            if elem.keyword and elem.VR != "SQ" and elem.value not in (None, "", b""):
                keys[elem.keyword] = str(elem.value)[:128]
            if len(keys) >= _MAX_KEYS:
                break
        count, patients, names, studies = 0, [], [], []
        outcome = "success"
        try:
            for item in answers:
                _, answer = item
                if answer is not None:
                    count += 1
                    patients.append(str(answer.get("PatientID", "") or ""))
                    names.append(str(answer.get("PatientName", "") or ""))
                    studies.append(str(answer.get("StudyInstanceUID", "") or ""))
                yield item
        except GeneratorExit:
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "failure"
            raise
        finally:
            address, port = _peer_address(event.assoc)
            self._record("query", outcome=outcome, ae=grant.ae_title if grant else None,
                         address=f"{address}:{port}", user=grant.username if grant else None,
                         patient_ids=patients, patient_names=names, study_uids=studies,
                         detail={"model": str(event.request.AffectedSOPClassUID), "keys": keys, "answers": count})

    def move_destination(self, event: Event, title: str) -> RegisteredAE:
        """The C-MOVE destination ``title`` if this association may use it (audited when refused).

        Raises
        ------
        AccessDeniedError
            No ``move`` permission or a destination outside the caller's list.
        UnknownAEError
            Not registered.
        """
        grant = self.grant(event)
        try:
            return self.policy.move_destination(grant, title)
        except EcgNodeError as exc:
            address, port = _peer_address(event.assoc)
            self._record("retrieve", outcome="refused", ae=grant.ae_title, address=f"{address}:{port}",
                         user=grant.username, reason=getattr(exc, "reason", "unknown-destination"),
                         detail={"operation": "move", "destination": title, "message": str(exc)})
            raise

    def audited_retrieve(self, event: Event, operation: str, destination: str | None,
                         sub_operations: Iterator[tuple[int, Dataset | None]]) -> Iterator[tuple[int, Any]]:
        """Pass C-MOVE / C-GET sub-operations through, then audit who retrieved which patients' studies to where."""
        grant = self._grants.get(event.assoc)
        sent: list[str] = []
        outcome = "success"
        try:
            for status, ds in sub_operations:
                if ds is not None and "SOPInstanceUID" in ds:
                    sent.append(str(ds.SOPInstanceUID))
                yield status, ds
        except GeneratorExit:
            outcome = "cancelled"
            raise
        finally:
            subjects = []
            try:
                subjects = subjects_of(self.catalog, sent)
            except EcgNodeError as exc:
                log.error("retrieve audit: subjects not resolved: %s", exc)
            address, port = _peer_address(event.assoc)
            self._record("retrieve", outcome=outcome, ae=grant.ae_title if grant else None,
                         address=f"{address}:{port}", user=grant.username if grant else None,
                         patient_ids=[s.patient_id for s in subjects],
                         patient_names=[s.patient_name or "" for s in subjects],
                         study_uids=[s.study_instance_uid for s in subjects], sop_instance_uids=sent,
                         detail={"operation": operation, "destination": destination, "instances": len(sent)})


def tls_context(cert: str | Path, key: str | Path, ca: str | Path) -> ssl.SSLContext:
    """The server-side TLS context of DICOM TLS with mutual authentication (PS3.15 B.1, B.9 BCP 195 profile).

    TLS 1.2 or later, OpenSSL's secure default cipher suites (forward secrecy, AEAD), and a client certificate
    that chains to ``ca`` is required (``CERT_REQUIRED``): a peer without one, or with one from another CA, fails
    the handshake before any DICOM byte is exchanged.

    Raises
    ------
    ConfigError
        A file is missing or is not a PEM certificate / key.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
        context.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS: cannot load certificate {cert}, key {key} or CA {ca}: {exc}") from exc
    return context
