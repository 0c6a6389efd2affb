"""``ecg-node commitments``: Storage Commitment transactions (PS3.4 J.3) and the state of their reports, per device.

States: ``pending`` (to verify and/or report; ``next_attempt`` says when), ``reported`` (the requester answered the
N-EVENT-REPORT with Success), ``failed-to-report`` (every attempt failed). Exit statuses: 0 success; 2 an
error of the node (unreachable catalog).
"""

from __future__ import annotations

import dataclasses

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig


@click.command("commitments")
@click.option("--ae", "ae_title", default=None, help="Only the transactions requested by this AE title.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@node_options
@handle_errors
def commitments(ae_title: str | None, as_json: bool, config: NodeConfig) -> None:
    """List storage commitment transactions per device: state, committed/failed counts, attempts, times."""
    from dicom_ecg_node.archive import Archive
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.services.commitment import CommitmentService

    with Catalog.open(config.catalog_url) as catalog:
        rows = [dataclasses.asdict(s) for s in CommitmentService(catalog, Archive(config.data_dir)).list(ae_title)]
    if as_json:
        echo_json(rows)
        return
    for r in rows:  # compact times for the table (JSON keeps full ISO values)
        for key in ("received_at", "reported_at", "next_attempt_at"):
            r[key] = r[key].strftime("%Y-%m-%d %H:%M:%SZ") if r[key] is not None else None
    echo_table(rows, ["requester_ae", "transaction_uid", "state", "references", "committed", "failed", "attempts",
                      "received_at", "reported_at", "next_attempt_at", "reported_via"])
