"""``ecg-node outbox`` (the ORU^R01 results queue) and ``ecg-node merges`` (ADT A40 merges: list, undo)."""

from __future__ import annotations

import dataclasses

import click

from dicom_ecg_node.cli.common import NodeConfig, echo_json, echo_table, handle_errors, node_options


@click.command()
@click.option("--status", type=click.Choice(["pending", "delivered", "rejected"]), default=None,
              help="Only rows with this status.")
@click.option("--retry", "retry_id", type=int, default=None,
              help="Make this row (0: every row not delivered) due now, rejected ones included.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@node_options
@handle_errors
def outbox(status: str | None, retry_id: int | None, as_json: bool, config: NodeConfig) -> None:
    """Show the ORU^R01 results queue: one row per stored ECG and receiver, with attempts and the last error.

    Pending rows are retried by the running node with exponential back-off (5 s doubling to 10 min); rejected ones
    (the receiver answered AR) only after --retry.
    """
    from dicom_ecg_node.services.maintenance import open_catalog
    from dicom_ecg_node.services.outbox import Outbox

    with open_catalog(config) as catalog:
        box = Outbox(catalog)
        if retry_id is not None:
            n = box.retry(None if retry_id == 0 else retry_id)
            click.echo(f"{n} row(s) due now", err=True)
        items = box.list(status)
    rows = [i.as_dict() for i in items]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["id", "sop_instance_uid", "receiver", "status", "attempts", "next_attempt_at",
                          "last_error"])


@click.command()
@click.option("--undo", "undo_id", type=int, default=None,
              help="Undo this merge: the prior patient comes back with the studies and orders it moved.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@node_options
@handle_errors
def merges(undo_id: int | None, as_json: bool, config: NodeConfig) -> None:
    """List patient merges (ADT A40), newest first, or undo one (--undo ID)."""
    from dicom_ecg_node.services.maintenance import open_catalog
    from dicom_ecg_node.services.patients import PatientService

    with open_catalog(config) as catalog:
        service = PatientService(catalog)
        if undo_id is not None:
            record = service.undo_merge(undo_id)
            click.echo(f"merge {record.id} undone: {record.prior_patient_id} has {len(record.moved_studies)} "
                       f"study(ies) and {len(record.moved_orders)} order(s) back")
            return
        records = service.list_merges()
    if as_json:
        echo_json([dataclasses.asdict(r) for r in records])
        return
    echo_table([{**dataclasses.asdict(r), "moved_studies": len(r.moved_studies), "moved_orders": len(r.moved_orders)}
                for r in records],
               ["id", "prior_patient_id", "surviving_patient_id", "moved_studies", "moved_orders", "merged_at",
                "undone_at"])
