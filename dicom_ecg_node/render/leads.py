"""Lead identity for printing: the shared normaliser of :mod:`dicom_ecg_node.waveform.leads`."""

from dicom_ecg_node.waveform.leads import STANDARD_LEADS, canonical_lead, lead_from_code, lead_from_label, lead_index

__all__ = ["STANDARD_LEADS", "canonical_lead", "lead_from_code", "lead_from_label", "lead_index"]
