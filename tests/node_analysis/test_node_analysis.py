"""Serial analysis in the node (issue 6): background measurement and comparison, catalog results, SR, CLI."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from ecgsupport import simulated_ecg_bytes
from helpers import dcmtk, make_config
from pgserver import catalog_url, pg_server  # noqa: F401  (fixtures)
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from dicom_ecg_node.catalog.analysis import get_analysis
from dicom_ecg_node.cli import main
from dicom_ecg_node.errors import ConfigError
from dicom_ecg_node.services.analysis import AnalysisService
from dicom_ecg_node.services.ingest import IngestService
from dicom_ecg_node.waveform.sopclass import COMPREHENSIVE_SR

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
DAY1 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
DAY2 = datetime(2026, 2, 3, 14, 30, tzinfo=UTC)
DAY3 = datetime(2026, 2, 5, 9, 0, tzinfo=UTC)
#: New anterior ST elevation, well above the UDMI cut-points (man >= 40: V2-V3 200 uV, others 100 uV).
STEMI = {"V2": 350.0, "V3": 350.0, "V4": 250.0}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def c_store(node: Any, *payloads: bytes) -> list[int]:
    """Send Part 10 byte strings over one real association; returns the statuses."""
    ae = AE(ae_title="CART1")
    ae.add_requested_context(TWELVE_LEAD)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(io.BytesIO(p))).Status) for p in payloads]
    finally:
        assoc.release()


def done(catalog: Any, uid: str) -> Any:
    row = get_analysis(catalog, uid)
    return row if row is not None and row.status == "done" else None


def cli(config: Any, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(config.data_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_second_ecg_over_dicom_shows_what_changed_and_an_sr_is_in_the_study(node_factory):
    node = node_factory()
    first, uid1, _study1 = simulated_ecg_bytes(patient_id="P100", when=DAY1, seed=1)
    second, uid2, study2 = simulated_ecg_bytes(patient_id="P100", when=DAY2, seed=2, st_uv=STEMI)
    assert c_store(node, first, second) == [0, 0]
    catalog = node.ingest.catalog

    def flagged() -> Any:
        row = done(catalog, uid2)
        return row if row is not None and row.prior_sop_instance_uid == uid1 and row.sr_sop_instance_uid else None

    row = wait_for(flagged, timeout=30)
    st = next(f for f in row.flags if f.rule == "st-elevation")
    assert {"V2", "V3"} <= set(st.leads)
    before, after = st.values["V2.st_j_uv"]
    assert abs(before) < 50 and after > 300
    assert st.threshold["V2"] == 200.0 and st.threshold["V4"] == 100.0
    assert "Fourth Universal Definition" in st.source
    assert done(catalog, uid1).prior_sop_instance_uid is None and done(catalog, uid1).flags == ()

    # The timeline shows the node's measurements and what changed, with rule, leads and values.
    out = json.loads(cli(node.config, "timeline", "P100", "--json").output)
    out = [r for r in out if r["sop_instance_uid"] in (uid1, uid2)]  # the timeline also lists the SR
    assert [r["sop_instance_uid"] for r in out] == [uid1, uid2]
    assert out[0]["changes"] is None and 60 < out[0]["node_hr"] < 80
    assert out[1]["changes"].startswith("st-elevation[") and out[1]["prior_sop_instance_uid"] == uid1
    flag = next(f for f in out[1]["flags"] if f["rule"] == "st-elevation")
    assert "V2" in flag["leads"] and flag["values"]["V2.st_j_uv"][1] > 300
    text = cli(node.config, "timeline", "P100").output
    assert "NODE_QTC" in text and f"{uid2}: st-elevation in" in text

    # The SR is in the ECG's study (C-FIND at IMAGE level), new series, same patient.
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)

    def c_find(level: str, **keys: str) -> list[Dataset]:
        query = Dataset()
        query.QueryRetrieveLevel = level
        for kw, value in keys.items():
            setattr(query, kw, value)
        return [ds for status, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
                if status and status.Status in (0xFF00, 0xFF01)]

    series = {s.Modality: s.SeriesInstanceUID for s in c_find("SERIES", StudyInstanceUID=study2,
                                                               SeriesInstanceUID="", Modality="")}
    assert set(series) == {"ECG", "SR"}
    images = c_find("IMAGE", StudyInstanceUID=study2, SeriesInstanceUID=series["SR"], SOPInstanceUID="",
                    SOPClassUID="")
    assoc.release()
    assert [(i.SOPInstanceUID, i.SOPClassUID) for i in images] == [(row.sr_sop_instance_uid, COMPREHENSIVE_SR)]
    sr_file = node.config.data_dir / next(
        i.path for i in catalog.list_instances(study2) if i.sop_instance_uid == row.sr_sop_instance_uid)
    sr = pydicom.dcmread(sr_file)
    assert sr.Modality == "SR" and sr.PatientID == "P100" and sr.StudyInstanceUID == study2
    assert sr.SeriesInstanceUID != pydicom.dcmread(io.BytesIO(second)).SeriesInstanceUID
    assert_report_content(sr, current=uid2, prior=uid1)
    assert_dsrdump_clean(sr_file)


def _items(seq: Any) -> list[Dataset]:
    return list(seq or [])


def _concept(item: Dataset) -> tuple[str, str]:
    c = item.ConceptNameCodeSequence[0]
    return c.CodeValue, c.CodingSchemeDesignator


def assert_report_content(sr: Dataset, *, current: str, prior: str) -> None:
    """TID 3700 structure and values of a report with an ST-elevation flag."""
    assert _concept(sr) == ("28010-7", "LN") and sr.ContentTemplateSequence[0].TemplateIdentifier == "3700"
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == current
    assert sr.PertinentOtherEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == prior
    top = {_concept(i): i for i in sr.ContentSequence}
    assert top[("122140", "DCM")].ConceptCodeSequence[0].CodeValue == "373066001"  # prior comparison done: yes
    prior_ref = top[("122140", "DCM")].ContentSequence[0]
    assert prior_ref.ValueType == "WAVEFORM" and prior_ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == prior
    assert top[("121112", "DCM")].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == current
    glob = {_concept(i): i for i in top[("122158", "DCM")].ContentSequence}
    hr = float(glob[("8867-4", "LN")].MeasuredValueSequence[0].NumericValue)
    assert 60 < hr < 80
    qtc = glob[("8636-3", "LN")]
    assert qtc.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "ms"
    assert qtc.ContentSequence[0].ConceptCodeSequence[0].CodeValue == "122730"  # Bazett
    leads = [i for i in sr.ContentSequence if _concept(i) == ("122159", "DCM")]
    v2 = next(c for c in leads if c.ContentSequence[0].ConceptCodeSequence[0].CodeMeaning == "Lead V2")
    st_j = next(i for i in v2.ContentSequence if _concept(i) == ("ST-J", "99ECGNODE"))
    assert float(st_j.MeasuredValueSequence[0].NumericValue) > 300
    findings = _items(top[("122145", "DCM")].ContentSequence)
    st = next(f for f in findings if f.ValueType == "CODE" and f.ConceptCodeSequence[0].CodeValue == "76388001")
    props = {_concept(i)[0]: i for i in st.ContentSequence if i.ValueType == "TEXT"}
    assert props["RULE"].TextValue == "st-elevation"
    assert "V2.st_j_uv" in props["VALUES"].TextValue and "Fourth Universal" in props["RULE-SOURCE"].TextValue
    lead_ids = [i.ConceptCodeSequence[0].CodeMeaning for i in st.ContentSequence if _concept(i) == ("122148", "DCM")]
    assert "Lead V2" in lead_ids
    assert "st-elevation" in top[("121111", "DCM")].TextValue


def assert_dsrdump_clean(path: Path) -> None:
    result = subprocess.run([dcmtk("dsrdump"), str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # no error nor warning about the structure or values
    assert "ECG Report" in result.stdout and "Lead V2" in result.stdout


def test_store_answers_before_the_analysis_runs(node_factory, monkeypatch):
    import dicom_ecg_node.services.analysis as analysis_module

    gate = threading.Event()
    real = analysis_module.measure

    def held(*args: Any, **kwargs: Any) -> Any:
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis_module, "measure", held)
    node = node_factory()
    data, uid, _ = simulated_ecg_bytes(patient_id="P200", when=DAY1)
    started = time.perf_counter()
    assert c_store(node, data) == [0]
    elapsed = time.perf_counter() - started
    # Success came back while the measurement is still held: the response does not wait for the analysis.
    row = get_analysis(node.ingest.catalog, uid)
    assert row is None or row.status == "running"
    assert elapsed < 10
    gate.set()
    assert wait_for(lambda: done(node.ingest.catalog, uid)).measurements["heart_rate_bpm"] > 0


def test_restart_analyses_what_was_missed(tmp_path, node_factory):
    config = make_config(tmp_path)
    uids = []
    with IngestService.open(config) as ingest:  # stored while no analysis ran (e.g. the node was killed)
        for when, st, seed in ((DAY1, None, 1), (DAY2, STEMI, 2)):
            data, uid, _ = simulated_ecg_bytes(patient_id="P300", when=when, seed=seed, st_uv=st)
            ingest.store(data, sender_ae="CART", sender_address="test")
            uids.append(uid)
        assert AnalysisService(config, ingest).pending() == uids
    node = node_factory()
    row = wait_for(lambda: done(node.ingest.catalog, uids[1]) if done(node.ingest.catalog, uids[1]) and
                   done(node.ingest.catalog, uids[1]).prior_sop_instance_uid == uids[0] else None)
    assert "st-elevation" in [f.rule for f in row.flags]
    assert AnalysisService(node.config, node.ingest).pending() == []


def test_late_older_ecg_recompares_the_next_one(tmp_path, catalog_url):  # noqa: F811
    config = make_config(tmp_path, db_url=catalog_url, analysis_sr="compared")
    with IngestService.open(config) as ingest:
        service = AnalysisService(config, ingest)
        a, uid_a, _ = simulated_ecg_bytes(patient_id="P400", when=DAY1, seed=1)
        c, uid_c, _ = simulated_ecg_bytes(patient_id="P400", when=DAY3, seed=3, st_uv=STEMI)
        for data in (a, c):
            ingest.store(data, sender_ae="CART", sender_address="test")
        assert service.analyse(uid_a).status == "done"
        out_c = service.analyse(uid_c)
        assert out_c.prior_sop_instance_uid == uid_a and "st-elevation" in out_c.flags and out_c.sr_sop_instance_uid
        first_sr = out_c.sr_sop_instance_uid
        # B, acquired between A and C, arrives last and already shows the elevation.
        b, uid_b, _ = simulated_ecg_bytes(patient_id="P400", when=DAY2, seed=2, st_uv=STEMI)
        ingest.store(b, sender_ae="CART", sender_address="test")
        out_b = service.analyse(uid_b)
        assert out_b.prior_sop_instance_uid == uid_a and "st-elevation" in out_b.flags
        assert out_b.recompared == (uid_c,)
        row_c = get_analysis(ingest.catalog, uid_c)
        assert row_c.prior_sop_instance_uid == uid_b and "st-elevation" not in [f.rule for f in row_c.flags]
        # C's new report replaces the earlier one (Predecessor Documents Sequence).
        assert row_c.sr_sop_instance_uid not in (None, first_sr)
        new_sr = pydicom.dcmread(config.data_dir / ingest.catalog.find_instance_file(row_c.sr_sop_instance_uid).path)
        pred = new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert pred.ReferencedSOPInstanceUID == first_sr
        # Unmeasurable and non-ECG instances are not pending for ever.
        assert service.pending() == []


def test_cli_find_compare_and_analyse_all(tmp_path):
    config = make_config(tmp_path)
    with IngestService.open(config) as ingest:
        specs = [("P500", DAY1, {}, 1), ("P500", DAY2, {"st_uv": STEMI}, 2),
                 ("P501", DAY1, {}, 3), ("P501", DAY3, {"qt_ms": 580.0}, 4)]
        uids = []
        for pid, when, extra, seed in specs:
            data, uid, _ = simulated_ecg_bytes(patient_id=pid, when=when, seed=seed, **extra)
            ingest.store(data, sender_ae="CART", sender_address="test")
            uids.append(uid)
    result = cli(config, "analyse", "--all")
    assert "analysed 4 ECGs: 4 done" in result.output

    found = json.loads(cli(config, "find", "--flag", "st-elevation", "--since", "2026-02-02", "--json").output)
    assert [r["sop_instance_uid"] for r in found] == [uids[1]]
    assert found[0]["flags"][0]["rule"] == "st-elevation" and "V2" in found[0]["flags"][0]["leads"]
    assert json.loads(cli(config, "find", "--flag", "st-elevation", "--since", "2026-02-04", "--json").output) == []
    long_qt = json.loads(cli(config, "find", "--qtc-over", "500", "--json").output)
    assert [r["sop_instance_uid"] for r in long_qt] == [uids[3]] and long_qt[0]["qtc"] > 500
    assert "qtc-prolongation" in cli(config, "find", "--qtc-over", "500").output

    cmp = json.loads(cli(config, "compare", uids[1], "--json").output)
    assert cmp["prior_sop_instance_uid"] == uids[0] and cmp["stored"]
    assert cmp["flags"][0]["rule"] == "st-elevation" and cmp["flags"][0]["threshold"]["V2"] == 200.0
    text = cli(config, "compare", uids[1]).output
    assert "FLAG st-elevation in" in text and "V2.st_j_uv" in text and "source: Thygesen" in text
    assert "QTc (ms)" in text
    # --prior: compare with any ECG, computed on the fly, not stored.
    other = json.loads(cli(config, "compare", uids[0], "--prior", uids[1], "--json").output)
    assert not other["stored"] and other["prior_sop_instance_uid"] == uids[1]
    assert "st-elevation" not in [f["rule"] for f in other["flags"]]  # elevation went away: not "new"

    # analyse UID re-measures one ECG with the same result.
    assert "analysed 1 ECGs: 1 done" in cli(config, "analyse", uids[1]).output
    with IngestService.open(config) as ingest:
        assert [f.rule for f in get_analysis(ingest.catalog, uids[1]).flags][:1] == ["st-elevation"]


def test_threshold_overrides_from_the_config(tmp_path):
    toml = tmp_path / "node.toml"
    toml.write_text('[analysis]\nsr = "off"\n[analysis.thresholds]\nst_elevation_uv = 400\n'
                    'st_elevation_v2v3_men_40_plus_uv = 400\n')
    from dicom_ecg_node.config import load_config

    config = load_config(toml, environ={}, data_dir=tmp_path / "data")
    assert config.analysis_sr == "off" and "st_elevation_uv=400" in config.analysis_thresholds
    with IngestService.open(config) as ingest:
        service = AnalysisService(config, ingest)
        for when, st, seed in ((DAY1, None, 1), (DAY2, STEMI, 2)):
            data, uid, _ = simulated_ecg_bytes(patient_id="P600", when=when, seed=seed, st_uv=st)
            ingest.store(data, sender_ae="CART", sender_address="test")
            outcome = service.analyse(uid)
        assert "st-elevation" not in outcome.flags and outcome.sr_sop_instance_uid is None
    bad = tmp_path / "bad.toml"
    bad.write_text("[analysis.thresholds]\nst_elevation_mv = 1\n")
    with pytest.raises(ConfigError, match="unknown threshold 'st_elevation_mv'"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="confirmed"):
        load_config(environ={}, analysis_prior="confirmed")


def test_analysis_tables_on_both_databases(tmp_path, catalog_url):  # noqa: F811
    config = make_config(tmp_path, db_url=catalog_url)
    with IngestService.open(config) as ingest:
        assert ingest.catalog.schema_version() >= 5
        service = AnalysisService(config, ingest)
        bad = pydicom.dcmread(io.BytesIO(simulated_ecg_bytes(patient_id="P700", when=DAY1)[0]))
        bad.WaveformSequence[0].NumberOfWaveformSamples = 500  # 1 s: too short to measure
        bad.WaveformSequence[0].WaveformData = bad.WaveformSequence[0].WaveformData[:500 * 12 * 2]
        buf = io.BytesIO()
        bad.save_as(buf, enforce_file_format=True)
        ingest.store(buf.getvalue(), sender_ae="CART", sender_address="test")
        failed = service.analyse(str(bad.SOPInstanceUID))
        assert failed.status == "failed" and "shorter" in failed.detail
        assert get_analysis(ingest.catalog, str(bad.SOPInstanceUID)).status == "failed"
        assert service.pending() == []
        assert service.analyse(str(bad.SOPInstanceUID)).status == "skipped"  # not retried for ever
