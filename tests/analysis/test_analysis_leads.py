"""Lead-name normalisation (PS3.16 CID 3001 codes, vendor labels) and contiguity."""

from __future__ import annotations

import pytest

from dicom_ecg_node.analysis.leads import contiguous_runs, lead_from_code, lead_from_label


@pytest.mark.parametrize(("value", "scheme", "lead"), [
    ("5.6.3-9-1", "SCPECG", "I"), ("5.6.3-9-2", "SCPECG", "II"), ("5.6.3-9-3", "SCPECG", "V1"),
    ("5.6.3-9-8", "SCPECG", "V6"), ("5.6.3-9-61", "SCPECG", "III"), ("5.6.3-9-62", "SCPECG", "aVR"),
    ("5.6.3-9-63", "SCPECG", "aVL"), ("5.6.3-9-64", "SCPECG", "aVF"), ("2:1", "MDC", "I"), ("2:61", "MDC", "III"),
    ("2:64", "MDC", "aVF"), ("2:5", "MDC", "V3"), ("131073", "MDC", "I"), ("131136", "MDC", "aVF"),
    ("MDC_ECG_LEAD_AVL", "MDC", "aVL"), ("5.6.3-9-9", "SCPECG", None), ("2:70", "MDC", None),
])
def test_codes(value: str, scheme: str, lead: str | None) -> None:
    assert lead_from_code(value, scheme) == lead


@pytest.mark.parametrize(("label", "lead"), [
    ("Lead I (Einthoven)", "I"), ("Lead aVR", "aVR"), ("I", "I"), ("V1", "V1"), ("MDC_ECG_LEAD_I", "I"),
    ("mdc_ecg_lead_avf", "aVF"), ("LEAD_III", "III"), ("avl", "aVL"), ("Lead V6", "V6"), ("-aVR", None),
    ("Resp", None), ("V7", None),
])
def test_labels(label: str, lead: str | None) -> None:
    assert lead_from_label(label) == lead


def test_contiguity() -> None:
    assert contiguous_runs({"V3"}) == []
    assert contiguous_runs({"V2", "V4"}) == []  # not neighbours
    assert contiguous_runs({"V2", "V3", "V4"}) == [("V2", "V3", "V4")]
    assert contiguous_runs({"I", "II"}) == []  # -aVR sits between them in Cabrera order
    assert contiguous_runs({"I", "-aVR"}) == [("I", "-aVR")]
    assert contiguous_runs({"aVR", "II"}) == []  # aVR itself is not in the sequence, -aVR is
    assert contiguous_runs({"III", "aVF", "V1"}) == [("aVF", "III")]
    assert contiguous_runs({"III", "aVL"}) == []  # the two ends of the Cabrera sequence are not neighbours
