"""``ecg-node render``: files and catalogued UIDs in, PDF and SVG out."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pydicom
from click.testing import CliRunner
from helpers import renumbered_copy, sample

from dicom_ecg_node.cli import main


def test_render_file_to_pdf_and_svg(tmp_path):
    pdf, svg = tmp_path / "out" / "ecg.pdf", tmp_path / "ecg.svg"
    result = CliRunner().invoke(main, ["render", str(sample("pydicom/waveform_ecg.dcm")), "--pdf", str(pdf),
                                       "--svg", str(svg), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert pdf.read_bytes().startswith(b"%PDF-")
    root = ET.parse(svg).getroot()
    assert root.attrib["width"] == "297mm" and root.attrib["data-layout"] == "3x4+1"
    assert "642341" in svg.read_text()


def test_render_options_reach_the_page(tmp_path):
    svg = tmp_path / "ecg.svg"
    result = CliRunner().invoke(main, [
        "render", str(sample("pixelmed/39da47b7.dcm")), "--svg", str(svg), "--layout", "6x2", "--speed", "50",
        "--gain", "20", "--paper", "letter", "--filter", "diagnostic", "--notch", "60",
        "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    root = ET.parse(svg).getroot()
    assert (root.attrib["width"], root.attrib["data-layout"]) == ("279.4mm", "6x2")
    assert (root.attrib["data-speed-mm-s"], root.attrib["data-gain-mm-mv"]) == ("50", "20")
    assert "zero-phase 0.05-150 Hz, notch 60 Hz" in svg.read_text()


def test_render_by_catalog_uid_with_prior_overlay(tmp_path):
    src = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    uid = pydicom.dcmread(src).SOPInstanceUID
    data = str(tmp_path / "data")
    runner = CliRunner()
    assert runner.invoke(main, ["import", str(src), "--data-dir", data]).exit_code == 0
    pdf, svg = tmp_path / "ecg.pdf", tmp_path / "ecg.svg"
    result = runner.invoke(main, ["render", uid, "--pdf", str(pdf), "--svg", str(svg), "--overlay-prior",
                                  str(sample("cabolabs-dicom-waveform/Example.dcm")), "--changed", "V2,V3",
                                  "--data-dir", data])
    assert result.exit_code == 0, result.output
    assert pdf.read_bytes().count(b"/Type /Page\n") == 2
    overlay = (tmp_path / "ecg.overlay.svg").read_text()
    assert 'data-layout="overlay"' in overlay and "V2  changed" in overlay


def test_render_needs_an_output_and_a_known_input(tmp_path):
    runner = CliRunner()
    data = str(tmp_path / "data")
    no_out = runner.invoke(main, ["render", str(sample("pydicom/waveform_ecg.dcm")), "--data-dir", data])
    assert no_out.exit_code == 2 and "--pdf" in no_out.output
    unknown = runner.invoke(main, ["render", "1.2.3.4.5", "--pdf", str(tmp_path / "x.pdf"), "--data-dir", data])
    assert unknown.exit_code == 2 and "not in the catalog" in unknown.output
    no_median = runner.invoke(main, ["render", str(sample("pixelmed/39da47b7.dcm")), "--pdf",
                                     str(tmp_path / "x.pdf"), "--overlay-prior",
                                     str(sample("pydicom/waveform_ecg.dcm")), "--data-dir", data])
    assert no_median.exit_code == 2 and "MEDIAN BEAT" in no_median.output
