"""``ecg-node render``: print an ECG at true scale as vector PDF and/or SVG.

FILE is a DICOM file or the SOP Instance UID of an instance the node holds (see
:func:`dicom_ecg_node.cli.files.resolve_source`). ``--overlay-prior`` takes the prior ECG explicitly for now; the
automatic prior lookup from the catalog and ``--store`` (Encapsulated PDF back into the study) come later.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from dicom_ecg_node.cli.common import handle_errors, node_options
from dicom_ecg_node.cli.files import resolve_source
from dicom_ecg_node.config import NodeConfig

_ZONE_HELP = ("Zone for times without a UTC offset (IANA name). Default: the node's default_timezone.")


def _decode(ref: str, zone: str | None, config: NodeConfig) -> Any:
    from dicom_ecg_node.waveform import decode  # numpy and pydicom only when the command runs

    return decode(resolve_source(ref, config), default_zone=zone or config.default_timezone)


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


def _leads(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


@click.command()
@click.argument("file", metavar="FILE|UID")
@click.option("--pdf", "pdf_out", type=click.Path(dir_okay=False), default=None, help="Write a vector PDF here.")
@click.option("--svg", "svg_out", type=click.Path(dir_okay=False), default=None,
              help="Write an SVG (sized in mm) here; with --overlay-prior the overlay goes to NAME.overlay.svg.")
@click.option("--layout", type=click.Choice(["3x4+1", "6x2", "12x1"]), default="3x4+1", show_default=True,
              help="3x4 with a 10 s lead II rhythm strip, 6x2, or 12x1.")
@click.option("--speed", type=click.Choice(["25", "50"]), default="25", show_default=True,
              help="Paper speed, mm/s. A row always holds 250 mm: 10 s at 25 mm/s, 5 s at 50 mm/s.")
@click.option("--gain", type=click.Choice(["5", "10", "20"]), default="10", show_default=True, help="mm/mV.")
@click.option("--paper", type=click.Choice(["a4", "letter"]), default="a4", show_default=True,
              help="Landscape A4 (297 x 210 mm) or US Letter (279.4 x 215.9 mm).")
@click.option("--filter", "filter_name", type=click.Choice(["none", "diagnostic", "monitor"]), default="none",
              show_default=True,
              help="Zero-phase display filter on a copy of the data: diagnostic 0.05-150 Hz, monitor 0.5-40 Hz.")
@click.option("--notch", type=click.Choice(["50", "60"]), default=None, help="Add a zero-phase mains notch, Hz.")
@click.option("--rhythm-lead", default="II", show_default=True, help="Lead of the 3x4+1 rhythm strip.")
@click.option("--start", "start_s", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Seconds into the recording at which the page starts.")
@click.option("--overlay-prior", "prior_ref", metavar="FILE|UID", default=None,
              help="Prior ECG: add a page overlaying both median beats, aligned on QRS onset.")
@click.option("--changed", "changed", metavar="LEADS", default=None,
              help="Comma-separated leads to mark as changed on the overlay page (e.g. V2,V3).")
@click.option("--zone", default=None, help=_ZONE_HELP)
@node_options
@handle_errors
def render(file: str, pdf_out: str | None, svg_out: str | None, layout: str, speed: str, gain: str, paper: str,
           filter_name: str, notch: str | None, rhythm_lead: str, start_s: float, prior_ref: str | None,
           changed: str | None, zone: str | None, config: NodeConfig) -> None:
    """Print FILE (or the node's instance UID) at true scale: grid, calibration pulses, header, footer."""
    if not pdf_out and not svg_out:
        raise click.UsageError("give --pdf OUT.pdf and/or --svg OUT.svg")
    from dicom_ecg_node.render import RenderOptions, display_filter, layout_ecg, layout_overlay, to_pdf, to_svg

    options = RenderOptions(layout=layout, speed_mm_s=float(speed), gain_mm_mv=float(gain), paper=paper,
                            display_filter=display_filter(filter_name, float(notch) if notch else None),
                            rhythm_lead=rhythm_lead, start_s=start_s)
    recording = _decode(file, zone, config)
    started = time.perf_counter()
    pages = [layout_ecg(recording, options)]
    if prior_ref is not None:
        prior = _decode(prior_ref, zone, config)
        pages.append(layout_overlay(recording, prior, options, changed_leads=_leads(changed)))
    if pdf_out:
        _write(Path(pdf_out), to_pdf(pages))
        click.echo(f"{pdf_out}: {len(pages)} page(s), {paper} landscape, {float(speed):g} mm/s, "
                   f"{float(gain):g} mm/mV")
    if svg_out:
        svg_path = Path(svg_out)
        _write(svg_path, to_svg(pages[0]).encode("utf-8"))
        click.echo(f"{svg_path}: {pages[0].width_mm:g} x {pages[0].height_mm:g} mm")
        if len(pages) > 1:
            overlay_path = svg_path.with_name(svg_path.stem + ".overlay.svg")
            _write(overlay_path, to_svg(pages[1]).encode("utf-8"))
            click.echo(f"{overlay_path}: serial overlay")
    for page in pages:
        for note in page.notes:
            click.echo(f"note: {note}", err=True)
    click.echo(f"rendered in {1000 * (time.perf_counter() - started):.0f} ms", err=True)
