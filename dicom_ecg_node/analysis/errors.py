"""The analysis package's error, :class:`~dicom_ecg_node.errors.AnalysisError` (defined in the one error tree)."""

from dicom_ecg_node.errors import AnalysisError

__all__ = ["AnalysisError"]
