"""Use cases shared by the network layer and the command line: ingest (C-STORE / import) and maintenance."""

from dicom_ecg_node.services.ingest import IngestService, StoreOutcome

__all__ = ["IngestService", "StoreOutcome"]
