"""``ecg-node show`` and ``ecg-node export``: look at and export one waveform object.

The FILE argument goes through :func:`resolve_source`: a path to a DICOM file, or the SOP Instance UID of an
instance the node holds (looked up in the catalog of ``--data-dir``).
"""

from __future__ import annotations

import csv
import math
import re
from datetime import UTC
from pathlib import Path
from typing import Any

import click

from dicom_ecg_node.cli.common import echo_json, handle_errors, node_options
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import NotFoundError

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def resolve_source(ref: str, config: NodeConfig | None = None) -> Path:
    """Turn the FILE|UID argument of a command into a file :func:`~dicom_ecg_node.waveform.decode` reads.

    Parameters
    ----------
    ref : str
        A path, or a SOP Instance UID the node holds.
    config : NodeConfig, optional
        The node whose catalog resolves UIDs.

    Raises
    ------
    NotFoundError
        ``ref`` is neither a file nor a catalogued SOP Instance UID.
    """
    path = Path(ref)
    if path.is_file():
        return path
    if config is not None and _UID_RE.match(ref):
        from dicom_ecg_node.services.maintenance import locate_instance

        return locate_instance(config, ref)
    raise NotFoundError(f"{ref}: no such file" + (" or SOP Instance UID in the catalog" if config else ""))


def _load(ref: str, zone: str | None, config: NodeConfig | None = None) -> Any:
    from dicom_ecg_node.waveform import decode  # numpy and pydicom only when a command runs

    default_zone = zone or (config.default_timezone if config is not None else None)
    return decode(resolve_source(ref, config), default_zone=default_zone)


def _fmt_hz(value: float | None) -> str:
    return "-" if value is None else f"{value:g} Hz"


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def recording_summary(rec: Any) -> dict[str, Any]:
    """A JSON-ready summary of a decoded recording (no samples)."""
    from dicom_ecg_node.waveform.sopclass import WAVEFORM_SOP_CLASSES

    sop = WAVEFORM_SOP_CLASSES.get(rec.sop_class_uid or "")
    utc = rec.acquisition_utc
    return {
        "sop_class_uid": rec.sop_class_uid,
        "sop_class_name": sop.name if sop else None,
        "sop_instance_uid": rec.sop_instance_uid,
        "study_instance_uid": rec.study_instance_uid,
        "series_instance_uid": rec.series_instance_uid,
        "transfer_syntax_uid": rec.transfer_syntax_uid,
        "patient": {"id": rec.patient_id, "name": rec.patient_name, "birth_date": rec.patient_birth_date,
                    "sex": rec.patient_sex},
        "device": {"modality": rec.modality, "manufacturer": rec.manufacturer, "model": rec.model_name,
                   "serial_number": rec.device_serial_number},
        "acquisition": {
            "datetime": _iso(rec.acquisition_datetime),
            "utc": _iso(utc),
            "raw": rec.acquisition_datetime_raw,
            "zone_source": rec.zone_source,
            "time_source_attribute": rec.time_source_attribute,
        },
        "groups": [
            {
                "index": g.index,
                "label": g.label,
                "sampling_frequency_hz": g.sampling_frequency,
                "n_samples": g.n_samples,
                "duration_s": g.duration_s,
                "interpretation": g.interpretation,
                "bits_allocated": g.bits_allocated,
                "padding_value": g.padding_value,
                "start": _iso(g.start),
                "time_offset_s": g.time_offset_s,
                "channels": [
                    {
                        "label": c.label,
                        "source": None if c.source is None else
                        {"value": c.source.value, "scheme": c.source.scheme, "meaning": c.source.meaning},
                        "units": c.units,
                        "sensitivity": c.sensitivity,
                        "correction_factor": c.correction_factor,
                        "baseline": c.baseline,
                        "skew_s": c.skew_s,
                        "bits_stored": c.bits_stored,
                        "filter_low_hz": c.filter_low_hz,
                        "filter_high_hz": c.filter_high_hz,
                        "notch_hz": c.notch_hz,
                    }
                    for c in g.channels
                ],
            }
            for g in rec.groups
        ],
        "measurements": [
            {"name": m.concept.meaning, "code": m.concept.value, "scheme": m.concept.scheme, "value": m.value,
             "units": m.units, "referenced_channels": [list(p) for p in m.referenced_channels]}
            for m in rec.measurements
        ],
        "statements": list(rec.statements),
        "fiducials": len(rec.fiducials),
        "synchronization": None if rec.synchronization is None else {
            "frame_of_reference_uid": rec.synchronization.frame_of_reference_uid,
            "synchronization_trigger": rec.synchronization.synchronization_trigger,
            "acquisition_time_synchronized": rec.synchronization.acquisition_time_synchronized,
        },
        "warnings": list(rec.warnings),
    }


def _filters(channels: list[Any]) -> str:
    parts = {(c.filter_low_hz, c.filter_high_hz, c.notch_hz) for c in channels}
    if len(parts) == 1:
        low, high, notch = parts.pop()
        if low is None and high is None and notch is None:
            return "not stated"
        return f"{_fmt_hz(low)} - {_fmt_hz(high)}, notch {_fmt_hz(notch)}"
    return "differ per channel (see --json)"


def _echo_text(rec: Any, summary: dict[str, Any]) -> None:
    echo = click.echo
    echo(f"SOP class:   {summary['sop_class_name'] or 'unknown'} ({rec.sop_class_uid})")
    echo(f"SOP instance: {rec.sop_instance_uid}")
    p = summary["patient"]
    echo(f"Patient:     {p['name'] or '(no name)'}  ID {p['id'] or '(none)'}  sex {p['sex'] or '-'}  "
         f"born {p['birth_date'] or '-'}")
    d = summary["device"]
    echo(f"Device:      {d['manufacturer'] or '-'} {d['model'] or ''}".rstrip())
    when = rec.acquisition_datetime
    if when is None:
        echo("Acquired:    unknown")
    else:
        utc = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when.tzinfo else "zone unknown"
        echo(f"Acquired:    {when.isoformat(sep=' ')}  ({utc}; zone: {rec.zone_source}; "
             f"from {rec.time_source_attribute})")
    for g in rec.groups:
        echo("")
        echo(f"Group {g.index} {g.label or '(no label)'}: {g.n_channels} channels x {g.n_samples} samples "
             f"@ {g.sampling_frequency:g} Hz ({g.duration_s:.3f} s), {g.interpretation} {g.bits_allocated}-bit")
        if g.start is not None:
            echo(f"  start:   {g.start.isoformat(sep=' ')} (offset {g.time_offset_s:g} s)")
        units = sorted({c.units or "raw" for c in g.channels})
        echo(f"  units:   {', '.join(units)}")
        echo(f"  leads:   {', '.join(c.label for c in g.channels)}")
        echo(f"  filters: {_filters(g.channels)}")
    if rec.measurements:
        echo("")
        echo("Measurements:")
        for m in rec.measurements:
            echo(f"  {m.concept.meaning or m.concept.value}: {m.value:g} {m.units or ''}".rstrip())
    if rec.statements:
        echo("")
        echo("Statements:")
        for s in rec.statements:
            echo(f"  {s}")
    if rec.fiducials:
        echo("")
        echo(f"Fiducial annotations: {len(rec.fiducials)}")
    echo("")
    if rec.warnings:
        echo(f"Warnings ({len(rec.warnings)}):")
        for w in rec.warnings:
            echo(f"  - {w}")
    else:
        echo("Warnings: none")


_ZONE_HELP = ("Zone for times without a UTC offset (IANA name, e.g. Europe/Rome). Default: the node's "
              "default_timezone (UTC unless configured).")


@click.command()
@click.argument("file", metavar="FILE|UID")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--zone", default=None, help=_ZONE_HELP)
@node_options
@handle_errors
def show(file: str, as_json: bool, zone: str | None, config: NodeConfig) -> None:
    """Decode FILE (or the node's instance UID) and print a summary: patient, time, groups, leads, measurements."""
    rec = _load(file, zone, config)
    summary = recording_summary(rec)
    if as_json:
        echo_json(summary)
    else:
        _echo_text(rec, summary)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "group"


def _cell(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def write_group_csv(group: Any, path: Path) -> None:
    """Write one multiplex group as CSV: ``time_s`` then one column per channel, in physical units.

    The header names each column ``label [units]``; padded samples are empty cells. ``time_s`` is the time from
    the group start; a channel with a skew (shown by ``ecg-node show --json``) is offset from it by that skew.
    """
    header = ["time_s"] + [f"{c.label} [{c.units or 'raw'}]" for c in group.channels]
    times = group.times()
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for t, row in zip(times.tolist(), group.samples.tolist(), strict=True):
            writer.writerow([repr(t), *(_cell(v) for v in row)])


@click.command()
@click.argument("file", metavar="FILE|UID")
@click.option("--csv", "csv_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for one CSV per multiplex group (created when absent).")
@click.option("--zone", default=None, help=_ZONE_HELP)
@node_options
@handle_errors
def export(file: str, csv_dir: str, zone: str | None, config: NodeConfig) -> None:
    """Decode FILE (or the node's instance UID) and write one CSV per group (seconds, then physical units)."""
    rec = _load(file, zone, config)
    out = Path(csv_dir)
    out.mkdir(parents=True, exist_ok=True)
    for g in rec.groups:
        path = out / f"group{g.index}_{_slug(g.label)}.csv"
        write_group_csv(g, path)
        click.echo(f"{path}: {g.n_samples} rows x {g.n_channels} channels")
