"""dicom-ecg-node: a DICOM waveform store-and-query node for cardiology."""

__version__ = "0.1.0"
