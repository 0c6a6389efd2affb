"""Test support: simulated ECGs with ground truth (``analysis.simulate``) as DICOM 12-lead ECG objects.

``analysis.simulate`` builds :class:`Recording` objects only, and ``waveform.synth`` has no ST-segment control, so
this encoder takes a synth 12-lead object (every module the IOD needs) and puts the simulated samples in its
Waveform Data at 1 uV per count (same lead order: I, II, III, aVR, aVL, aVF, V1-V6).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pydicom.uid import generate_uid

from dicom_ecg_node.analysis.simulate import simulate_ecg
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg


def simulated_ecg_bytes(*, patient_id: str, when: datetime, study_uid: str | None = None, sex: str = "M",
                        birth_date: str = "19600101", seed: int = 0, **simulate: object) -> tuple[bytes, str, str]:
    """A Part 10 12-lead ECG of a simulated recording; returns (bytes, SOP Instance UID, Study Instance UID)."""
    sim = simulate_ecg(seed=seed, sex=sex, birth_date=birth_date, acquisition_datetime=when, **simulate)  # type: ignore[arg-type]
    samples = sim.recording.groups[0].samples
    study_uid = study_uid or generate_uid()
    ds = synthesize_ecg(patient_id=patient_id, patient_name=f"SIM^{patient_id}", sex=sex, birth_date=birth_date,
                        acquisition_datetime=when, study_instance_uid=study_uid, seed=seed,
                        duration_s=samples.shape[0] / 500.0)
    group = ds.WaveformSequence[0]
    for ch in group.ChannelDefinitionSequence:
        ch.ChannelSensitivity = "1"
        ch.ChannelSensitivityCorrectionFactor = "1"
        ch.ChannelBaseline = "0"
    group.NumberOfWaveformSamples = samples.shape[0]
    group.WaveformData = np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
    for attr in ("WaveformAnnotationSequence",):  # the synth annotations describe the synth beat, not ours
        if attr in ds:
            delattr(ds, attr)
    return ecg_to_bytes(ds), str(ds.SOPInstanceUID), study_uid
