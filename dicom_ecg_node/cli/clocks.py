"""``ecg-node clocks``: each sending device's clock offset, drift, flags and the Synchronization module it sends."""

from __future__ import annotations

from typing import Any

import click

from dicom_ecg_node.cli.common import echo_json, echo_table, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig


def _fmt(value: float | None, unit: str = "s") -> str | None:
    return None if value is None else f"{value:+.1f} {unit}"


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of devices (ae_title, device_serial, offset_s, drift_s_per_day, samples, "
                   "last_seen, flags, ...).")
@click.option("--history", "history", type=int, default=5, show_default=True,
              help="Observations shown per device (newest first); 0 for none.")
@node_options
@handle_errors
def clocks(as_json: bool, history: int, config: NodeConfig) -> None:
    """Device clocks: offset_s = device clock - node clock, from Instance Creation Date/Time vs receive time.

    Each stored instance gives a lower bound of its device's offset (it was created before it was received); the
    estimate is the largest bound of the device's recent window. Flags: not-synchronized (Acquisition Time
    Synchronized N or absent), acquisition-after-creation, offset-beyond-threshold, zone-jump, no-creation-time.
    """
    from dicom_ecg_node.services.clocks import ClockService
    from dicom_ecg_node.services.maintenance import open_catalog

    with open_catalog(config) as catalog:
        service = ClockService(catalog, config)
        devices = service.devices()
        histories = {(d.ae_title, d.device_serial): service.history(d.ae_title, d.device_serial, history)
                     for d in devices} if history > 0 else {}
    if as_json:
        out: list[dict[str, Any]] = []
        for d in devices:
            entry = d.as_json()
            entry["history"] = [{
                "sop_instance_uid": o.sop_instance_uid, "received_at": o.received_at.isoformat(),
                "instance_creation": o.creation_raw, "utc_offset_minutes": o.utc_offset_minutes,
                "zone_source": o.zone_source,
                "bound_s": None if o.bound_s is None else round(o.bound_s, 3),
                "acquisition_utc": o.acquisition_utc.isoformat() if o.acquisition_utc else None,
                "corrected_utc": o.corrected_utc.isoformat() if o.corrected_utc else None,
                "acquisition_after_creation": o.acquisition_after_creation,
                "time_synchronized": o.time_synchronized, "time_source": o.time_source,
            } for o in histories.get((d.ae_title, d.device_serial), [])]
            out.append(entry)
        echo_json(out)
        return
    rows = [{
        "ae_title": d.ae_title, "serial": d.device_serial or "-", "offset": _fmt(d.offset_s),
        "drift": _fmt(d.drift_s_per_day, "s/day"), "samples": d.samples, "trusted": "yes" if d.trusted else "no",
        "sync": d.time_synchronized or "absent", "time_source": d.time_source,
        "last_seen": d.last_seen.isoformat(timespec="seconds"), "flags": ",".join(d.flags) or None,
    } for d in devices]
    echo_table(rows, ["ae_title", "serial", "offset", "drift", "samples", "trusted", "sync", "time_source",
                      "last_seen", "flags"])
    for d in devices:
        observations = histories.get((d.ae_title, d.device_serial), [])
        if not observations:
            continue
        click.echo(f"\n{d.ae_title} / {d.device_serial or '-'}"
                   + (f" ({' '.join(x for x in (d.manufacturer, d.model_name) if x)})"
                      if d.manufacturer or d.model_name else ""))
        echo_table([{
            "received_at": o.received_at.isoformat(timespec="seconds"), "instance_creation": o.creation_raw,
            "zone": o.zone_source, "bound": _fmt(o.bound_s), "sync": o.time_synchronized or "absent",
            "acquired_after_created": "yes" if o.acquisition_after_creation else None,
            "corrected_utc": o.corrected_utc.isoformat(timespec="seconds") if o.corrected_utc else None,
            "sop_instance_uid": o.sop_instance_uid,
        } for o in observations], ["received_at", "instance_creation", "zone", "bound", "sync",
                                   "acquired_after_created", "corrected_utc", "sop_instance_uid"])
