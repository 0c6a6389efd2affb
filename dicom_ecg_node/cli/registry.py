"""``ecg-node ae``: the AE registry (the peers C-MOVE may send to), stored in the catalog.

Exit statuses: 0 success; 2 an error of the node (invalid title, host or port, duplicate title, unknown title,
unreachable catalog).
"""

from __future__ import annotations

import dataclasses

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig


@click.group("ae")
def ae() -> None:
    """Register, list and remove the DICOM peers the node may send to (C-MOVE destinations)."""


@ae.command("add")
@click.argument("title")
@click.option("--host", required=True, help="Host name or IP address of the peer.")
@click.option("--port", required=True, type=int, help="TCP port of the peer.")
@click.option("--description", default="", help="Free text shown by 'ae list'.")
@node_options
@handle_errors
def add(title: str, host: str, port: int, description: str, config: NodeConfig) -> None:
    """Register the peer TITLE at HOST:PORT (a title already registered is refused: remove it first)."""
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.catalog.registry import AERegistry

    with Catalog.open(config.catalog_url) as catalog:
        entry = AERegistry(catalog).add(title, host, port, description)
    click.echo(f"registered {entry.ae_title} at {entry.host}:{entry.port}")


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
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["ae_title", "host", "port", "description"])


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
    click.echo(f"removed {title.strip()}")
