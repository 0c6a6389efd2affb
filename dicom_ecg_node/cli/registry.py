"""``ecg-node ae``: the AE registry (who may connect, what they may do, where C-MOVE may send), in the catalog.

Every change is written to the audit trail (``DATA_DIR/audit``). Exit statuses: 0 success; 2 an error of the node
(invalid title, host, port, operation, network or fingerprint, duplicate title, unknown title, unreachable
catalog).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig


@click.group("ae")
def ae() -> None:
    """Register, list and remove the DICOM peers the node may send to (C-MOVE destinations)."""


def _access_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The access-control options shared by ``ae add`` and ``ae update`` (``None`` when not given)."""

    @click.option("--allow", default=None, metavar="OPS",
                  help="Operations it may request: comma-separated of echo,store,find,move,get,commit, or 'all' "
                       "(add: default echo).")
    @click.option("--network", "networks", multiple=True, metavar="CIDR",
                  help="Network it may connect from (repeatable; default: any address).")
    @click.option("--any-network", is_flag=True, help="update: remove the network restriction.")
    @click.option("--username", default=None, help="User Identity it must present (PS3.7 D.3.3.7); '' removes it.")
    @click.option("--cert-fingerprint", default=None, metavar="SHA256",
                  help="SHA-256 fingerprint of its TLS client certificate; '' removes it.")
    @click.option("--move-destination", "move_destinations", multiple=True, metavar="TITLE",
                  help="AE title its C-MOVEs may target (repeatable; default: any registered AE).")
    @click.option("--any-destination", is_flag=True, help="update: remove the destination restriction.")
    @functools.wraps(func)
    def wrapper(*args: Any, allow: str | None, networks: tuple[str, ...], any_network: bool,
                username: str | None, cert_fingerprint: str | None, move_destinations: tuple[str, ...],
                any_destination: bool, **kwargs: Any) -> Any:
        kwargs["access"] = {
            "permissions": allow,
            "networks": [] if any_network else (list(networks) or None),
            "username": username,
            "cert_fingerprint": cert_fingerprint,
            "move_destinations": [] if any_destination else (list(move_destinations) or None),
        }
        return func(*args, **kwargs)

    return wrapper


def _audit(config: NodeConfig, action: str, title: str, entry: Any = None) -> None:
    """Record an admin action on the registry in the audit trail."""
    from dicom_ecg_node.services.audit import AuditLog

    detail: dict[str, Any] = {"action": action, "target": title}
    if entry is not None:
        detail.update({"host": entry.host, "port": entry.port, "permissions": sorted(entry.permissions),
                       "networks": list(entry.networks), "username": entry.username,
                       "cert_fingerprint": entry.cert_fingerprint,
                       "move_destinations": list(entry.move_destinations)})
    with AuditLog.for_config(config) as audit:
        audit.record("admin", ae=title, address="local", detail=detail)


@ae.command("add")
@click.argument("title")
@click.option("--host", required=True, help="Host name or IP address of the peer.")
@click.option("--port", required=True, type=int, help="TCP port of the peer.")
@click.option("--description", default="", help="Free text shown by 'ae list'.")
@_access_options
@node_options
@handle_errors
def add(title: str, host: str, port: int, description: str, access: dict[str, Any], config: NodeConfig) -> None:
    """Register the peer TITLE at HOST:PORT with its permissions (a registered title is refused: use update)."""
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.catalog.registry import AERegistry

    with Catalog.open(config.catalog_url) as catalog:
        entry = AERegistry(catalog).add(title, host, port, description, **access)
    _audit(config, "ae-add", entry.ae_title, entry)
    click.echo(f"registered {entry.ae_title} at {entry.host}:{entry.port}")


@ae.command("update")
@click.argument("title")
@click.option("--host", default=None, help="Host name or IP address of the peer.")
@click.option("--port", type=int, default=None, help="TCP port of the peer.")
@click.option("--description", default=None, help="Free text shown by 'ae list'.")
@_access_options
@node_options
@handle_errors
def update(title: str, host: str | None, port: int | None, description: str | None, access: dict[str, Any],
           config: NodeConfig) -> None:
    """Change settings of the registered peer TITLE; options not given are kept.

    The change applies to the peer's next association.
    """
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.catalog.registry import AERegistry

    with Catalog.open(config.catalog_url) as catalog:
        entry = AERegistry(catalog).update(title, host=host, port=port, description=description, **access)
    _audit(config, "ae-update", entry.ae_title, entry)
    click.echo(f"updated {entry.ae_title}: {entry.host}:{entry.port} "
               f"allowed {','.join(sorted(entry.permissions)) or 'nothing'}")


@ae.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@node_options
@handle_errors
def list_(as_json: bool, config: NodeConfig) -> None:
    """List the registered peers."""
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.catalog.registry import AERegistry

    with Catalog.open(config.catalog_url) as catalog:
        rows = [dataclasses.asdict(e) for e in AERegistry(catalog).list()]
    for row in rows:  # lists as comma-separated text: JSON-friendly and readable in the table
        row["permissions"] = ",".join(sorted(row["permissions"]))
        row["networks"] = ",".join(row["networks"])
        row["move_destinations"] = ",".join(row["move_destinations"])
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["ae_title", "host", "port", "permissions", "networks", "username", "description"])


@ae.command("remove")
@click.argument("title")
@node_options
@handle_errors
def remove(title: str, config: NodeConfig) -> None:
    """Unregister the peer TITLE."""
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.catalog.registry import AERegistry

    with Catalog.open(config.catalog_url) as catalog:
        AERegistry(catalog).remove(title)
    _audit(config, "ae-remove", title.strip())
    click.echo(f"removed {title.strip()}")
