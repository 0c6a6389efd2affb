"""``ecg-node user ...`` (users of DICOM User Identity Negotiation) and ``ecg-node audit`` (the audit trail).

User changes are themselves audited. Exit statuses: 0 success; 2 an error of the node (invalid username, empty
password, user exists or is unknown, unreachable catalog, invalid ``--since``).
"""

from __future__ import annotations

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig


def _audit(config: NodeConfig, action: str, username: str) -> None:
    from dicom_ecg_node.services.audit import AuditLog

    with AuditLog.for_config(config) as audit:
        audit.record("admin", address="local", user=username, detail={"action": action, "target": username})


@click.group("user")
def user() -> None:
    """Add, list and remove the users AEs present by User Identity Negotiation (PS3.7 D.3.3.7)."""


@user.command("add")
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin (for scripts) instead of prompting.")
@click.option("--role", "roles", multiple=True, help="A label listed by 'user list' (repeatable).")
@node_options
@handle_errors
def add(username: str, password_stdin: bool, roles: tuple[str, ...], config: NodeConfig) -> None:
    """Create USERNAME; only a salted scrypt hash of the password is stored."""
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.services.security import UserService

    if password_stdin:
        import sys

        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with Catalog.open(config.catalog_url) as catalog:
        UserService(catalog).add(username, password, roles)
    _audit(config, "user-add", username)
    click.echo(f"added user {username}")


@user.command("remove")
@click.argument("username")
@node_options
@handle_errors
def remove(username: str, config: NodeConfig) -> None:
    """Delete USERNAME (AEs configured with it can no longer associate)."""
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.services.security import UserService

    with Catalog.open(config.catalog_url) as catalog:
        UserService(catalog).remove(username)
    _audit(config, "user-remove", username)
    click.echo(f"removed user {username}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@node_options
@handle_errors
def list_(as_json: bool, config: NodeConfig) -> None:
    """List users: name, roles, creation time (never the hash)."""
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.services.security import UserService

    with Catalog.open(config.catalog_url) as catalog:
        rows = [{"username": u.username, "roles": ",".join(u.roles), "created_at": u.created_at}
                for u in UserService(catalog).list()]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["username", "roles", "created_at"])


@click.command("audit")
@click.option("--since", default=None, help="From this UTC date/date-time (2024-05-01, 2024-05-01T08:00) or this "
                                            "long ago (90m, 2h, 7d).")
@click.option("--patient", default=None, help="Only events naming this Patient ID: who stored, queried or "
                                              "retrieved this patient's ECGs.")
@click.option("--ae", default=None, help="Only events of this calling AE title (or retrieves sent to it).")
@click.option("--event", default=None, help="Only this kind: association, tls, store, query, retrieve, "
                                            "commitment, admin.")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON lines, as stored.")
@node_options
@handle_errors
def audit(since: str | None, patient: str | None, ae: str | None, event: str | None, as_json: bool,
          config: NodeConfig) -> None:
    """Show the audit trail (DATA_DIR/audit), oldest first."""
    import json
    from pathlib import Path

    from dicom_ecg_node.services.audit import AUDIT_DIR, parse_since, read_events

    events = read_events(Path(config.data_dir) / AUDIT_DIR, since=parse_since(since) if since else None,
                         patient=patient, ae=ae, event=event)
    if as_json:
        for entry in events:
            click.echo(json.dumps(entry, ensure_ascii=False))
        return
    rows = []
    for e in events:
        detail = e.get("detail") or {}
        what = detail.get("action") or detail.get("operation") or ""
        if e["event"] == "query":
            what = f"{detail.get('answers', 0)} answer(s)"
        elif e["event"] == "retrieve" and detail.get("destination"):
            what = f"{what} to {detail['destination']}"
        rows.append({"time": e.get("time"), "event": e.get("event"), "outcome": e.get("outcome"),
                     "ae": e.get("ae", ""), "user": e.get("user", ""), "address": e.get("address", ""),
                     "patients": ",".join(e.get("patient_ids", ())[:5]), "what": what or e.get("reason", "")})
    echo_table(rows, ["time", "event", "outcome", "ae", "user", "address", "patients", "what"])
