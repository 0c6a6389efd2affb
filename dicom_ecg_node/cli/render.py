"""``ecg-node render``: print an ECG at true scale as vector PDF and/or SVG, and store the PDF back in its study.

FILE is a DICOM file or the SOP Instance UID of an instance the node holds (see
:func:`dicom_ecg_node.cli.files.resolve_source`). For a catalogued UID the header also shows the node's own
measurements and the stored serial-comparison flags when the analysis has them
(:func:`dicom_ecg_node.services.report.render_context`).

``--overlay-prior`` alone takes the patient's previous ECG from the catalog, the same prior the serial analysis
uses, and marks the leads the stored comparison flagged; ``--overlay-prior FILE|UID`` takes an explicit prior
(its leads are marked only when it is the stored comparison's prior, or with ``--changed``). ``--store`` stores
the rendered PDF, byte for byte, in the ECG's study as Encapsulated PDF
(:func:`dicom_ecg_node.services.report.store_printout`) and prints its new SOP Instance UID.
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
#: ``--overlay-prior`` given without a value: the prior comes from the catalog.
_FROM_CATALOG = "\0catalog"
_PRIOR_SOURCES = {"comparison": "the prior of the node's stored comparison",
                  "measured": "the patient's previous measured ECG",
                  "catalog": "the patient's previous ECG in the catalog, not analysed yet"}


def _decode(ref: str, zone: str | None, config: NodeConfig) -> Any:
    from dicom_ecg_node.waveform import decode  # numpy and pydicom only when the command runs

    return decode(resolve_source(ref, config), default_zone=zone or config.default_timezone)


def _is_file(ref: str) -> bool:
    """Whether FILE|UID names a file (as :func:`resolve_source` decides); otherwise it is a catalogued UID."""
    return Path(ref).is_file()


def _document_title(layout: str, speed: str, gain: str, with_overlay: bool) -> str:
    return (f"ECG printout {layout}, {float(speed):g} mm/s, {float(gain):g} mm/mV"
            + (", serial overlay" if with_overlay else ""))


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
@click.option("--overlay-prior", "prior_ref", metavar="[FILE|UID]", default=None, is_flag=False,
              flag_value=_FROM_CATALOG,
              help="Add a page overlaying the median beats of this ECG and a prior, aligned on QRS onset. Without a "
                   "value (put it after FILE|UID): the patient's previous ECG from the catalog, as the serial "
                   "analysis chooses it, with the leads its stored comparison flagged marked.")
@click.option("--changed", "changed", metavar="LEADS", default=None,
              help="Comma-separated leads to mark as changed on the overlay page (e.g. V2,V3); replaces the "
                   "leads of the stored comparison flags.")
@click.option("--store", "store", is_flag=True,
              help="Store the rendered PDF in the ECG's study as Encapsulated PDF (FILE|UID must be a UID the node "
                   "holds) and print its SOP Instance UID.")
@click.option("--zone", default=None, help=_ZONE_HELP)
@node_options
@handle_errors
def render(file: str, pdf_out: str | None, svg_out: str | None, layout: str, speed: str, gain: str, paper: str,
           filter_name: str, notch: str | None, rhythm_lead: str, start_s: float, prior_ref: str | None,
           changed: str | None, store: bool, zone: str | None, config: NodeConfig) -> None:
    """Print FILE (or the node's instance UID) at true scale: grid, calibration pulses, header, footer.

    For a UID the node holds, the header adds the node's measurements and comparison flags, and --store files the
    PDF in the ECG's study.
    """
    if not pdf_out and not svg_out and not store:
        raise click.UsageError("give --pdf OUT.pdf and/or --svg OUT.svg (or --store)")
    catalogued = not _is_file(file)
    if not catalogued and (store or prior_ref == _FROM_CATALOG):
        what = "--store" if store else "--overlay-prior without FILE|UID"
        raise click.UsageError(f"{what} needs the SOP Instance UID of an ECG the node holds, not a file")
    from dicom_ecg_node.render import RenderOptions, display_filter, layout_ecg, layout_overlay, to_pdf, to_svg

    options = RenderOptions(layout=layout, speed_mm_s=float(speed), gain_mm_mv=float(gain), paper=paper,
                            display_filter=display_filter(filter_name, float(notch) if notch else None),
                            rhythm_lead=rhythm_lead, start_s=start_s)
    recording = _decode(file, zone, config)
    context = None
    if catalogued:
        from dicom_ecg_node.services.report import render_context

        context = render_context(config, file, find_prior=prior_ref == _FROM_CATALOG)
        if context.measurements is not None:
            n = len(context.flags)
            click.echo("header: the node's measurements" + (f" and {n} comparison flag(s)" if n else ""))
    started = time.perf_counter()
    pages = [layout_ecg(recording, options, node_measurements=context.measurements if context else None,
                        flags=context.flags if context else ())]
    prior = None
    if prior_ref == _FROM_CATALOG and context is not None:
        if context.prior_uid is None:
            click.echo("no prior ECG: no earlier resting ECG of this patient in the catalog; no overlay page",
                       err=True)
        else:
            click.echo(f"prior: {context.prior_uid} ({_PRIOR_SOURCES[context.prior_source]})")
            prior_ref = context.prior_uid
    if prior_ref is not None and prior_ref != _FROM_CATALOG:
        prior = _decode(prior_ref, zone, config)
        flags = context.flags_against(prior.sop_instance_uid) if context else ()
        marked = _leads(changed) if changed is not None else (
            context.changed_leads(prior.sop_instance_uid) if context else [])
        pages.append(layout_overlay(recording, prior, options, changed_leads=marked, flags=flags))
    pdf = to_pdf(pages) if pdf_out or store else b""
    if pdf_out:
        _write(Path(pdf_out), pdf)
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
    if store:
        from dicom_ecg_node.services.report import store_printout

        others = ([(prior.sop_class_uid, prior.sop_instance_uid)]
                  if prior is not None and prior.sop_class_uid and prior.sop_instance_uid else [])
        outcome = store_printout(config, file, pdf, other_sources=others,
                                 document_title=_document_title(layout, speed, gain, prior is not None))
        click.echo(f"stored Encapsulated PDF {outcome.sop_instance_uid} in study {outcome.study_instance_uid} "
                   f"({outcome.status})")
