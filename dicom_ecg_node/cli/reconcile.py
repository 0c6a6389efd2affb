"""``ecg-node reconcile``: the review queue of ECGs whose patient or order did not match, accept or re-link."""

from __future__ import annotations

import getpass

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _actor(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


@click.group(invoke_without_command=True)
@click.pass_context
def reconcile(ctx: click.Context) -> None:
    """Review ECGs whose patient or order did not match (lowest evidence score first).

    Score 0-100: Patient ID known 30, name 25, birth date 20, sex 5, order 20 (see services/reconcile.py).
    Without a subcommand, lists the open entries.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_)


@reconcile.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include accepted and re-linked entries.")
@_JSON
@node_options
@handle_errors
def list_(show_all: bool, as_json: bool, config: NodeConfig) -> None:
    """List the review queue."""
    from dicom_ecg_node.services.maintenance import open_catalog
    from dicom_ecg_node.services.reconcile import ReconcileService

    with open_catalog(config) as catalog:
        items = ReconcileService(catalog, config).items(None if show_all else "open")
    if as_json:
        echo_json([i.as_json() for i in items])
        return
    echo_table([{
        "id": i.id, "score": i.score, "status": i.status, "patient_id": i.patient_id,
        "accession": i.accession_number, "reasons": ",".join(i.reasons), "candidate": i.candidate_patient_id,
        "sender": i.sender_ae, "sop_instance_uid": i.sop_instance_uid,
        "corrected": i.corrected_sop_instance_uid,
    } for i in items], ["id", "score", "status", "patient_id", "accession", "reasons", "candidate", "sender",
                        "sop_instance_uid", "corrected"])


@reconcile.command()
@click.argument("item_id", type=int)
@click.option("--note", default=None, help="Why it is right as it is.")
@click.option("--actor", default=None, help="Who decides (default: the login name).")
@node_options
@handle_errors
def accept(item_id: int, note: str | None, actor: str | None, config: NodeConfig) -> None:
    """Accept entry ITEM_ID as it is (the ECG stays on its patient and order); audited."""
    from dicom_ecg_node.services.maintenance import open_catalog
    from dicom_ecg_node.services.reconcile import ReconcileService

    with open_catalog(config) as catalog:
        item = ReconcileService(catalog, config).accept(item_id, actor=_actor(actor), note=note)
    click.echo(f"accepted {item.id}: {item.sop_instance_uid} stays on {item.patient_id}")


@reconcile.command()
@click.argument("item_id", type=int)
@click.option("--patient-id", required=True, help="The right Patient ID.")
@click.option("--issuer", default=None, help="Its Issuer of Patient ID.")
@click.option("--accession", default=None, help="The right order's Accession Number.")
@click.option("--note", default=None, help="Why.")
@click.option("--actor", default=None, help="Who decides (default: the login name).")
@node_options
@handle_errors
def relink(item_id: int, patient_id: str, issuer: str | None, accession: str | None, note: str | None,
           actor: str | None, config: NodeConfig) -> None:
    """Store a corrected copy of entry ITEM_ID's ECG on PATIENT_ID; the original is kept and marked superseded.

    The corrected instance has a new SOP Instance UID and the replaced values in its Original Attributes Sequence;
    the stored original is never edited. Audited.
    """
    from dicom_ecg_node.services.ingest import IngestService
    from dicom_ecg_node.services.reconcile import ReconcileService

    with IngestService.open(config) as ingest:
        uid = ReconcileService(ingest.catalog, config).relink(
            item_id, ingest, patient_id=patient_id, issuer=issuer, accession_number=accession, actor=_actor(actor),
            note=note)
    click.echo(f"re-linked {item_id}: corrected instance {uid} on {patient_id}")
