"""Property: whatever calibration, interpretation and transfer syntax the writer uses, the decoder gives back the
physical values within half a quantisation step, without NaN, with the right sample times and start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_ecg_node.waveform import decode
from dicom_ecg_node.waveform.synth import (
    GENERAL_32BIT_ECG,
    GENERAL_ECG,
    LEADS,
    TRANSFER_SYNTAXES,
    ecg_to_bytes,
    synthesize_ecg_with_truth,
)

_BITS = {"SB": 8, "UB": 8, "SS": 16, "US": 16, "SL": 32, "UL": 32, "SV": 64, "UV": 64}
_ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Adelaide")


@st.composite
def _cases(draw: st.DrawFn) -> dict:
    interp = draw(st.sampled_from(sorted(_BITS)))
    bits = _BITS[interp]
    bits_stored = draw(st.sampled_from([bits, bits - 1, max(8, bits // 2 + 2)] if bits > 8 else [8, 7]))
    # 8-bit samples need coarse steps to hold an ECG; clipped samples are excluded from the comparison anyway
    lo, hi = (12.0, 60.0) if bits_stored <= 8 else (0.05, 20.0)
    per_channel = draw(st.booleans())
    sens_st = st.floats(lo, hi, allow_nan=False)
    cf_st = st.floats(0.5, 2.0, allow_nan=False)
    base_st = st.floats(-1000.0, 1000.0, allow_nan=False)
    if per_channel:
        sens: float | list[float] = draw(st.lists(sens_st, min_size=12, max_size=12))
        cf: float | list[float] = draw(st.lists(cf_st, min_size=12, max_size=12))
        base_off = np.array(draw(st.lists(base_st, min_size=12, max_size=12)))
    else:
        sens, cf = draw(sens_st), draw(cf_st)
        base_off = np.full(12, draw(base_st))
    step = np.broadcast_to(np.asarray(sens, dtype=float) * np.asarray(cf, dtype=float), (12,))
    # unsigned: put zero volts mid-scale, as a device would
    mid = 2.0 ** (min(bits_stored, 16) - 1) if interp.startswith("U") else 0.0
    base = base_off - mid * step
    zone = ZoneInfo(draw(st.sampled_from(_ZONES)))
    when = draw(st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2035, 12, 31),
                             timezones=st.just(zone), allow_imaginary=False))
    sop = GENERAL_32BIT_ECG if interp == "SL" else GENERAL_ECG if interp != "SS" else None
    return {
        "sample_interpretation": interp,
        "sop_class_uid": sop,
        "bits_stored": bits_stored,
        "sensitivity": sens,
        "correction_factor": cf,
        "baseline": [float(b) for b in base],
        "transfer_syntax": draw(st.sampled_from(sorted(TRANSFER_SYNTAXES))),
        "zone_style": draw(st.sampled_from(["offset-in-dt", "timezone-offset", "none"])),
        "acquisition_datetime": when,
        "group_time_offset_ms": draw(st.sampled_from([0.0, 250.0, -40.0, 1234.5])),
        "sampling_frequency": draw(st.sampled_from([250.0, 500.0, 1000.0])),
        "heart_rate_bpm": draw(st.floats(40.0, 180.0)),
        "include_median": draw(st.booleans()),
        "noise_uv": draw(st.sampled_from([0.0, 20.0])),
        "seed": draw(st.integers(0, 2**32)),
        "duration_s": 2.0,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_writer_then_decoder_round_trip(case: dict) -> None:
    ds, truth = synthesize_ecg_with_truth(**case)
    when: datetime = case["acquisition_datetime"]
    rec = decode(ecg_to_bytes(ds), default_zone=when.tzinfo)

    assert rec.sop_instance_uid == ds.SOPInstanceUID
    conformant = case["sample_interpretation"] == "SS" or (
        case["sample_interpretation"] == "SL" and case["transfer_syntax"] != "big")
    if conformant and case["zone_style"] != "none":
        assert rec.warnings == []  # the writer's conformant objects earn no warning from the decoder
    assert len(rec.groups) == len(truth.groups)
    if case["zone_style"] == "none":
        # no offset in the object: the decoder applies default_zone; compare wall clocks (a DST fold is ambiguous)
        assert rec.acquisition_datetime.replace(tzinfo=None) == when.replace(tzinfo=None)
    else:
        # Same instant, compared in UTC: PEP 495 makes an inter-zone == False for a time in a DST fold
        # (2000-10-29 02:00 Europe/Paris happens twice), whatever the offsets.
        assert rec.acquisition_datetime.astimezone(UTC) == when.astimezone(UTC)
        assert rec.acquisition_datetime.utcoffset() == when.utcoffset()

    for group, gt in zip(rec.groups, truth.groups, strict=True):
        assert group.label == gt.label
        assert group.interpretation == case["sample_interpretation"]
        assert group.sampling_frequency == gt.sampling_frequency
        assert group.samples.shape == gt.physical.shape == (group.n_samples, 12)
        assert [ch.label for ch in group.channels] == [lead for lead, _, _ in LEADS]
        assert all(ch.units == "uV" for ch in group.channels)
        assert not np.isnan(group.samples).any()
        np.testing.assert_array_equal(np.asarray(group.raw, dtype=np.int64), gt.stored)

        step = gt.step
        tol = 1e-9 * (np.abs(gt.physical).max() + np.abs(gt.baseline).max() + 1.0)
        # decoded value is exactly stored × sensitivity × correction + baseline (PS3.3 C.10.9.1.4) ...
        np.testing.assert_allclose(group.samples, gt.stored * step + gt.baseline, rtol=1e-12, atol=tol)
        # ... hence within half a step of the physical truth wherever the sample was not clipped
        bits = case["bits_stored"]
        lo, hi = ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if case["sample_interpretation"][0] == "S"
                  else (0, 2**bits - 1))
        unclipped = (gt.stored > lo) & (gt.stored < hi)
        err = np.abs(group.samples - gt.physical)
        assert np.all(err[unclipped] <= (0.5 * step + tol)[np.nonzero(unclipped)[1]])

        # times: sample k at k / fs from the group start = acquisition + Multiplex Group Time Offset
        t = group.times()
        assert t[0] == 0.0 and np.isclose(t[-1], (group.n_samples - 1) / gt.sampling_frequency)
        expected_start = when + timedelta(seconds=gt.time_offset_s)
        if case["zone_style"] == "none":
            assert group.start.replace(tzinfo=None) == expected_start.replace(tzinfo=None)
        else:  # in UTC: wall-clock arithmetic on a zone's time drops a DST fold (datetime + timedelta has fold=0)
            expected_utc = when.astimezone(UTC) + timedelta(seconds=gt.time_offset_s)
            assert abs((group.start.astimezone(UTC) - expected_utc).total_seconds()) < 1e-6
