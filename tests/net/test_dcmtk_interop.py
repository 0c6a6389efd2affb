"""DCMTK's echoscu and storescu, independent third-party peers, against the running node."""

from __future__ import annotations

import pydicom
import pytest
from helpers import renumbered_copy, run_dcmtk, sample

pytestmark = pytest.mark.dcmtk

MORTARA = sample("pydicom/waveform_ecg.dcm")


def test_echoscu(node):
    result = run_dcmtk("echoscu", "-aec", node.aet, node.host, str(node.port))
    assert result.returncode == 0, result.stderr


def test_echoscu_wrong_called_aet_is_rejected(node):
    result = run_dcmtk("echoscu", "-aec", "SOMEONEELSE", node.host, str(node.port))
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in (result.stdout + result.stderr)


def test_storescu_batch(node, tmp_path):
    files = [renumbered_copy(MORTARA, tmp_path / f"ecg{i}.dcm") for i in range(10)]
    result = run_dcmtk("storescu", "-R", "-aet", "CART7", "-aec", node.aet, node.host, str(node.port),
                       *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    stored = {r.sop_instance_uid for r in node.ingest.catalog.list_instances()}
    assert stored == {pydicom.dcmread(f).SOPInstanceUID for f in files}


def test_storescu_real_sample_files(node):
    files = [sample("pydicom/waveform_ecg.dcm"), sample("pixelmed/39da47b7.dcm")]
    result = run_dcmtk("storescu", "-R", "-aec", node.aet, node.host, str(node.port), *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    classes = sorted(r.sop_class_uid for r in node.ingest.catalog.list_instances())
    assert classes == ["1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.840.10008.5.1.4.1.1.9.2.1"]


def test_storescu_sees_the_failure_status_of_a_bad_file(node):
    # The ECG Toolkit file has invalid ".." UIDs: refused with 0xA900; storescu exits non-zero and, with -v,
    # prints the status.
    result = run_dcmtk("storescu", "-v", "-R", "-aec", node.aet, node.host, str(node.port),
                       str(sample("ecgtoolkit/Example.dcm")))
    assert result.returncode != 0
    assert "Error: DataSetDoesNotMatchSOPClass" in result.stdout + result.stderr  # DCMTK's name for 0xA900
