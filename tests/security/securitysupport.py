"""Helpers of the security tests: SCU associations, rejection codes, audit events, the throwaway PKI type."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import request_association

VERIFICATION = "1.2.840.10008.1.1"


def audit_events(node: Any, expect: Callable[[dict[str, Any]], bool] | None = None,
                 timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every audit event the node wrote so far; with ``expect``, first wait (bounded) until one matches it.

    Rejections pynetdicom makes itself are audited from ``EVT_REJECTED``, which fires after the A-ASSOCIATE-RJ
    went out: the peer can see the rejection before the node has written its audit line.
    """
    deadline = time.monotonic() + timeout
    while True:
        node.node.audit.flush()
        folder = Path(node.config.data_dir) / "audit"
        events = [json.loads(line) for path in sorted(folder.glob("audit-*.jsonl"))
                  for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if expect is None or any(expect(e) for e in events) or time.monotonic() >= deadline:
            return events
        time.sleep(0.02)


def rejection(assoc: Any) -> tuple[int, int, int]:
    """(result, source, reason) of a rejected association (PS3.8 9.3.4)."""
    rsp = assoc.acceptor.primitive
    return int(rsp.result), int(rsp.result_source), int(rsp.diagnostic)


def associate(node: Any, calling: str, *, contexts: list[str] | None = None, called: str | None = None,
              user: tuple[str, str] | None = None, tls: Any = None, port: int | None = None,
              roles: list[str] | None = None) -> Any:
    """An association from ``calling`` to ``node`` (established or not: the caller checks)."""
    from pynetdicom import AE, build_role
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for uid in contexts or [VERIFICATION]:
        ae.add_requested_context(uid)
    ext = [build_role(uid, scp_role=True) for uid in roles or []]
    if user is not None:
        item = UserIdentityNegotiation()
        item.user_identity_type = 2
        item.primary_field = user[0].encode()
        item.secondary_field = user[1].encode()
        ext.append(item)
    # Through request_association: an immediate rejection is reported as one (see there).
    return request_association(ae, node.host, port or node.port, ae_title=called or node.aet,
                               ext_neg=ext or None, tls_args=tls)



@dataclass
class Pki:
    """A throwaway CA, the node's certificate, two client certificates of that CA and one of another CA."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    def client_context(self, client: str) -> Any:
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.path("ca.crt")))
        ctx.load_cert_chain(str(self.path(f"{client}.crt")), str(self.path(f"{client}.key")))
        return ctx

    def fingerprint(self, client: str) -> str:
        import hashlib
        import ssl

        der = ssl.PEM_cert_to_DER_cert(self.path(f"{client}.crt").read_text())
        return hashlib.sha256(der).hexdigest()
