"""The analysis package's error.

:class:`AnalysisError` sits under :class:`dicom_ecg_node.errors.EcgNodeError` (``EcgNodeError → AnalysisError``);
it is defined here rather than in ``errors.py`` until the lead folds it into the one tree there.
"""

from __future__ import annotations

from dicom_ecg_node.errors import EcgNodeError


class AnalysisError(EcgNodeError):
    """A recording cannot be measured, or an analysis argument is invalid.

    Parameters
    ----------
    message : str
        What is wrong, in words a user can act on.
    reason : str, optional
        A short machine-readable cause (``"too-short"``, ``"no-beats"``, ``"no-leads"``, ``"bad-threshold"``...).
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        self.reason = reason
        super().__init__(message)
