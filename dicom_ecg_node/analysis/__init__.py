"""ECG analysis: the node's own measurements and serial-comparison flags (issue 6).

Pure: imports numpy, scipy and :mod:`dicom_ecg_node.waveform` only; no I/O.

Public API
----------
:func:`measure` (``Recording`` → :class:`EcgMeasurements` with per-lead :class:`LeadMeasurements`),
:func:`compare` (current, prior → list of :class:`ChangeFlag`; :func:`evaluate` also lists the rules it could not
evaluate), the threshold table :data:`THRESHOLDS` of
:class:`Threshold`, lead helpers :func:`canonical_lead` and :data:`STANDARD_LEADS`, and :class:`AnalysisError`.
"""

from dicom_ecg_node.analysis.compare import (
    THRESHOLDS,
    ChangeFlag,
    Comparison,
    Threshold,
    axis_category,
    compare,
    evaluate,
    resolve_thresholds,
)
from dicom_ecg_node.analysis.errors import AnalysisError
from dicom_ecg_node.analysis.leads import STANDARD_LEADS, canonical_lead
from dicom_ecg_node.analysis.measure import (
    QTC_FORMULAS,
    EcgMeasurements,
    LeadMeasurements,
    MedianBeat,
    measure,
    qtc_bazett,
    qtc_fridericia,
)

__all__ = [
    "QTC_FORMULAS",
    "STANDARD_LEADS",
    "THRESHOLDS",
    "AnalysisError",
    "ChangeFlag",
    "Comparison",
    "EcgMeasurements",
    "LeadMeasurements",
    "MedianBeat",
    "Threshold",
    "axis_category",
    "canonical_lead",
    "compare",
    "evaluate",
    "measure",
    "qtc_bazett",
    "qtc_fridericia",
    "resolve_thresholds",
]
