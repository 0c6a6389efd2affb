"""``ecg-node render``: prior from the catalog, the node's analysis in the header, ``--store`` (Encapsulated PDF)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from helpers import dcmtk, make_config, sample
from rendersupport import pdf_streams

from dicom_ecg_node.cli import main
from dicom_ecg_node.errors import DatasetError
from dicom_ecg_node.services.report import (
    EKG_STUDY,
    build_encapsulated_pdf,
    document_bytes,
    encode,
    render_context,
)
from dicom_ecg_node.waveform.sopclass import ENCAPSULATED_PDF
from dicom_ecg_node.waveform.synth import synthesize_ecg, write_ecg

PATIENT = "RSTORE01"
CET = timezone(timedelta(hours=1))


@dataclass
class Node:
    data: str
    uids: list[str]
    studies: list[str]
    series: list[str]
    files: list[Path]

    def run(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*args, "--data-dir", self.data])
        return result.exit_code, result.output


def _node(tmp_path: Path, times: list[datetime], **kw: object) -> Node:
    files, uids, studies, series = [], [], [], []
    for i, when in enumerate(times):
        ds = synthesize_ecg(patient_id=PATIENT, acquisition_datetime=when, include_median=True, seed=10 + i,
                            heart_rate_bpm=60.0 + 10 * i, **kw)  # type: ignore[arg-type]
        path = tmp_path / f"ecg{i}.dcm"
        write_ecg(path, ds)
        files.append(path)
        uids.append(ds.SOPInstanceUID)
        studies.append(ds.StudyInstanceUID)
        series.append(ds.SeriesInstanceUID)
    node = Node(str(tmp_path / "data"), uids, studies, series, files)
    code, out = node.run("import", *map(str, files))
    assert code == 0, out
    return node


@pytest.fixture()
def two(tmp_path: Path) -> Node:
    """Two ECGs of one patient, the second five days later, each in its own study; not analysed yet."""
    return _node(tmp_path, [datetime(2026, 1, 10, 9, 0, tzinfo=CET), datetime(2026, 1, 15, 9, 30, tzinfo=CET)])


def _stream_with(pdf: bytes, marker: bytes) -> bytes:
    found = [s for s in pdf_streams(pdf) if marker in s]
    assert len(found) == 1, f"{marker!r} in {len(found)} streams"
    return found[0]


def _stored_uid(output: str) -> str:
    m = re.search(r"stored Encapsulated PDF ([0-9.]+) in study ([0-9.]+)", output)
    assert m is not None, output
    return m.group(1)


def _archived(node: Node, uid: str) -> pydicom.Dataset:
    from dicom_ecg_node.services.maintenance import locate_instance

    return pydicom.dcmread(locate_instance(make_config(Path(node.data).parent), uid))


# -- the prior from the catalog ---------------------------------------------------------------------------------


def test_overlay_prior_from_the_catalog(two: Node, tmp_path: Path) -> None:
    out = tmp_path / "second.pdf"
    code, output = two.run("render", two.uids[1], "--overlay-prior", "--pdf", str(out))
    assert code == 0, output
    assert f"prior: {two.uids[0]}" in output
    pdf = out.read_bytes()
    assert pdf.count(b"/Type /Page\n") == 2
    overlay = _stream_with(pdf, b"Overlay on QRS onset")
    # The overlay page names the first ECG by its acquisition time (09:00 +01:00 = 08:00 UTC).
    assert b"current 2026-01-15 08:30 UTC" in overlay and b"prior 2026-01-10 08:00 UTC" in overlay

    first = tmp_path / "first.pdf"
    code, output = two.run("render", two.uids[0], "--overlay-prior", "--pdf", str(first))
    assert code == 0 and "no prior ECG" in output
    assert first.read_bytes().count(b"/Type /Page\n") == 1


def test_prior_is_chosen_in_true_utc_order(tmp_path: Path) -> None:
    # Wall clock says b (08:00) came before a (10:00); UTC says a (05:00 UTC) came first.
    day0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    a = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=5)))
    b = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    node = _node(tmp_path, [day0, a, b])
    config = make_config(tmp_path)
    assert render_context(config, node.uids[2], find_prior=True).prior_uid == node.uids[1]
    assert render_context(config, node.uids[1], find_prior=True).prior_uid == node.uids[0]
    assert render_context(config, node.uids[0], find_prior=True).prior_uid is None
    # Without find_prior nothing is looked up; the analysis has not run, so no measurements.
    ctx = render_context(config, node.uids[2])
    assert (ctx.prior_uid, ctx.measurements, ctx.flags) == (None, None, ())
    assert ctx.study_instance_uid == node.studies[2]


def test_explicit_prior_still_works(two: Node, tmp_path: Path) -> None:
    out = tmp_path / "x.pdf"
    code, output = two.run("render", two.uids[1], "--pdf", str(out), "--overlay-prior", str(two.files[0]))
    assert code == 0, output
    assert out.read_bytes().count(b"/Type /Page\n") == 2
    code, output = two.run("render", two.uids[1], "--pdf", str(out), "--overlay-prior", two.uids[0])
    assert code == 0, output
    assert b"prior 2026-01-10 08:00 UTC" in _stream_with(out.read_bytes(), b"Overlay on QRS onset")


# -- the node's analysis in the header --------------------------------------------------------------------------


def _flag_second(node: Node, tmp_path: Path) -> None:
    """Analyse both ECGs, then give the second's stored comparison a flag in V2 and V3 (the rules would not fire
    on these synthetic ECGs)."""
    from dicom_ecg_node.catalog.analysis import FlagData, analysis_target, get_analysis, save_comparison
    from dicom_ecg_node.services.maintenance import open_catalog

    code, output = node.run("analyse", "--all")
    assert code == 0, output
    with open_catalog(make_config(tmp_path)) as catalog:
        target = analysis_target(catalog, node.uids[1])
        assert target is not None
        assert save_comparison(catalog, target, node.uids[0],
                               [FlagData("st-elevation", ("V2", "V3"), {}, {}, "test", "")], {})
        row = get_analysis(catalog, node.uids[1])
        assert row is not None and row.prior_sop_instance_uid == node.uids[0]


def test_header_shows_node_measurements_and_flags(two: Node, tmp_path: Path) -> None:
    _flag_second(two, tmp_path)
    svg = tmp_path / "ecg.svg"
    code, output = two.run("render", two.uids[1], "--svg", str(svg), "--overlay-prior")
    assert code == 0, output
    assert "header: the node's measurements and 1 comparison flag(s)" in output
    assert f"prior: {two.uids[0]} (the prior of the node's stored comparison)" in output
    text = svg.read_text()
    assert "Node:  HR" in text and "Compared with prior: st-elevation (V2, V3)" in text
    overlay = (tmp_path / "ecg.overlay.svg").read_text()
    assert "V2  changed" in overlay and "V3  changed" in overlay and "V1  changed" not in overlay
    assert "st-elevation (V2, V3)" in overlay

    # The same prior given explicitly: its stored flags still apply; --changed replaces them.
    code, output = two.run("render", two.uids[1], "--svg", str(svg), "--overlay-prior", two.uids[0],
                           "--changed", "aVF")
    assert code == 0, output
    overlay = (tmp_path / "ecg.overlay.svg").read_text()
    assert "aVF  changed" in overlay and "V2  changed" not in overlay

    # Another prior: the stored flags compare with a different ECG and mark nothing.
    code, output = two.run("render", two.uids[1], "--svg", str(svg), "--overlay-prior",
                           str(sample("cabolabs-dicom-waveform/Example.dcm")))
    assert code == 0, output
    assert "changed" not in (tmp_path / "ecg.overlay.svg").read_text()


# -- --store ----------------------------------------------------------------------------------------------------


def test_store_puts_the_exact_pdf_in_the_study(two: Node, tmp_path: Path) -> None:
    out = tmp_path / "printout.pdf"
    code, output = two.run("render", two.uids[1], "--overlay-prior", "--pdf", str(out), "--store")
    assert code == 0, output
    new_uid = _stored_uid(output)
    pdf = out.read_bytes()

    from dicom_ecg_node.services.maintenance import open_catalog

    with open_catalog(make_config(tmp_path)) as catalog:
        detail = catalog.get_instance(new_uid)
    assert detail is not None
    s = detail.summary
    assert (s.sop_class_uid, s.study_instance_uid, s.patient_id) == (ENCAPSULATED_PDF, two.studies[1], PATIENT)
    assert s.series_instance_uid not in two.series and s.modality == "ECG" and s.sender_ae == "ECGNODE"

    ds = _archived(two, new_uid)
    assert ds.SOPClassUID == ENCAPSULATED_PDF and ds.StudyInstanceUID == two.studies[1]
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.DocumentTitle.startswith("ECG printout 3x4+1, 25 mm/s, 10 mm/mV") and "overlay" in ds.DocumentTitle
    assert ds.BurnedInAnnotation == "YES" and ds.ConversionType == "WSD" and ds.StationName == "ECGNODE"
    code_item = ds.ConceptNameCodeSequence[0]
    assert (code_item.CodeValue, code_item.CodingSchemeDesignator, code_item.CodeMeaning) == EKG_STUDY
    refs = [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in ds.SourceInstanceSequence]
    ecg_class = pydicom.dcmread(two.files[1]).SOPClassUID
    assert refs == [(ecg_class, two.uids[1]), (ecg_class, two.uids[0])]
    assert (ds.PatientID, str(ds.PatientName)) == (PATIENT, "DOE^JANE")
    assert ds.EncapsulatedDocumentLength == len(pdf)
    assert document_bytes(ds) == pdf

    # DCMTK extracts the very same bytes.
    extracted = tmp_path / "extracted.pdf"
    result = subprocess.run([dcmtk("dcm2pdf"), str(Path(two.data) / detail.summary.path), str(extracted)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert extracted.read_bytes() == pdf


def test_store_without_an_output_file_stores_the_reproducible_rendering(two: Node, tmp_path: Path) -> None:
    code, output = two.run("render", two.uids[1], "--store")
    assert code == 0, output
    stored = document_bytes(_archived(two, _stored_uid(output)))
    again = tmp_path / "again.pdf"
    code, output = two.run("render", two.uids[1], "--pdf", str(again))
    assert code == 0, output
    assert stored == again.read_bytes()  # reportlab's invariant mode: same pages, same bytes
    assert stored.count(b"/Type /Page\n") == 1


def test_store_and_catalog_prior_need_a_catalogued_uid(two: Node, tmp_path: Path) -> None:
    code, output = two.run("render", str(two.files[1]), "--store")
    assert code == 2 and "--store needs the SOP Instance UID" in output
    code, output = two.run("render", str(two.files[1]), "--pdf", str(tmp_path / "x.pdf"), "--overlay-prior")
    assert code == 2 and "--overlay-prior without FILE|UID needs" in output
    code, output = two.run("render", "1.2.3.4.5", "--store")
    assert code == 2 and "not in the catalog" in output


# -- build_encapsulated_pdf (pure) ------------------------------------------------------------------------------


def _ecg(**kw: object) -> pydicom.Dataset:
    return synthesize_ecg(patient_id=PATIENT, acquisition_datetime=datetime(2026, 1, 15, 9, 30, tzinfo=CET),
                          seed=1, duration_s=2.0, **kw)  # type: ignore[arg-type]


def test_build_keeps_odd_length_pdf_bytes_and_the_iod_attributes() -> None:
    pdf = b"%PDF-1.4\n%odd-length document\n%%EOF"
    assert len(pdf) % 2 == 1
    source = _ecg()
    now = datetime(2026, 2, 1, 12, 0, 5, tzinfo=UTC)
    ds = build_encapsulated_pdf(pdf, source, station_aet="NODE1", document_title="ECG printout", now=now,
                                other_sources=[("1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.3")])
    back = pydicom.dcmread(pydicom.filebase.DicomBytesIO(encode(ds)))
    assert len(back.EncapsulatedDocument) == len(pdf) + 1  # padded to even length on encoding
    assert document_bytes(back) == pdf and back.EncapsulatedDocumentLength == len(pdf)
    assert back.file_meta.MediaStorageSOPClassUID == ENCAPSULATED_PDF == back.SOPClassUID
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.StudyInstanceUID == source.StudyInstanceUID and back.SeriesInstanceUID != source.SeriesInstanceUID
    assert (back.Modality, back.SeriesNumber, back.InstanceNumber) == ("ECG", 9902, 1)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer", "ContentDate",
                    "ContentTime", "AcquisitionDateTime", "DocumentTitle", "ConceptNameCodeSequence"):
        assert keyword in back, keyword  # type 1 and 2 attributes of A.45.1's modules
    assert back.AcquisitionDateTime == source.AcquisitionDateTime
    # Content Date/Time in the ECG's own zone (+01:00), like its Study Date/Time.
    assert (back.ContentDate, back.ContentTime) == ("20260201", "130005")
    assert [i.ReferencedSOPInstanceUID for i in back.SourceInstanceSequence] == [source.SOPInstanceUID, "1.2.3"]


def test_build_copies_timezone_offset_and_refuses_bad_input() -> None:
    source = _ecg(zone_style="timezone-offset")
    ds = build_encapsulated_pdf(b"%PDF-1.7\n", source, station_aet="NODE1", document_title="t",
                                now=datetime(2026, 2, 1, 23, 30, tzinfo=UTC))
    assert ds.TimezoneOffsetFromUTC == source.TimezoneOffsetFromUTC == "+0100"
    assert (ds.ContentDate, ds.ContentTime) == ("20260202", "003000")
    with pytest.raises(DatasetError, match="pdf"):
        build_encapsulated_pdf(b"<svg/>", source, station_aet="N", document_title="t")
    with pytest.raises(DatasetError, match="document_title"):
        build_encapsulated_pdf(b"%PDF-1.7\n", source, station_aet="N", document_title="x" * 1025)
    del source.StudyInstanceUID
    with pytest.raises(DatasetError, match="StudyInstanceUID"):
        build_encapsulated_pdf(b"%PDF-1.7\n", source, station_aet="N", document_title="t")


def test_prior_of_an_ecg_not_compared_yet_is_the_previous_measured_one(two: Node, tmp_path: Path) -> None:
    code, output = two.run("analyse", two.uids[0])  # the analysis of the second ECG is still pending
    assert code == 0, output
    ctx = render_context(make_config(tmp_path), two.uids[1], find_prior=True)
    assert (ctx.prior_uid, ctx.prior_source, ctx.measurements, ctx.flags) == (two.uids[0], "measured", None, ())
    assert ctx.changed_leads(two.uids[0]) == []
