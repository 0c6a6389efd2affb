"""Helpers of the storage commitment tests: synthetic ECGs stored in a node, N-ACTION requests from a cart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

SC_CLASS = "1.2.840.10008.1.20.1"
SC_INSTANCE = "1.2.840.10008.1.20.1.1"
ECG12 = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG = "1.2.840.10008.5.1.4.1.1.9.1.2"


def store_ecgs(node: Any, n: int, *, sender: str = "CART1") -> list[tuple[str, str]]:
    """Store ``n`` synthetic 12-lead ECGs; return their (SOP Class UID, SOP Instance UID)."""
    refs = []
    for i in range(n):
        ds = synthesize_ecg(acquisition_datetime=datetime(2024, 3, 1, 8, i, tzinfo=UTC), seed=i + 1,
                            sop_instance_uid=generate_uid())
        out = node.ingest.store(ecg_to_bytes(ds), sender_ae=sender, sender_address="127.0.0.1")
        refs.append((out.sop_class_uid, out.sop_instance_uid))
    return refs


def action_information(transaction_uid: str, refs: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for cls, uid in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


@dataclass
class Cart:
    """A requesting SCU: one association to the node, reports received on it recorded."""

    assoc: Any
    reports: list[tuple[int, Dataset]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def on_report(self, event: Any) -> tuple[int, None]:
        self.reports.append((int(event.event_type), event.event_information))
        self.arrived.set()
        return 0x0000, None

    def request(self, transaction_uid: str, refs: list[tuple[str, str]], action_type: int = 1,
                instance: str = SC_INSTANCE) -> Dataset:
        status, _ = self.assoc.send_n_action(action_information(transaction_uid, refs), action_type, SC_CLASS,
                                             instance)
        return status

    def wait_report(self, count: int = 1, timeout: float = 20.0) -> tuple[int, Dataset]:
        poll(lambda: len(self.reports) >= count, timeout, "an N-EVENT-REPORT on the requesting association")
        return self.reports[count - 1]

    def release(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def connect(node: Any, aet: str = "CART1", *, listen: bool = True) -> Cart:
    """Associate with the node proposing Storage Commitment (default roles); bind EVT_N_EVENT_REPORT if ``listen``."""
    ae = AE(ae_title=aet)
    ae.add_requested_context(SC_CLASS)
    ae.add_requested_context(ECG12)
    cart = Cart(None)
    handlers = [(evt.EVT_N_EVENT_REPORT, cart.on_report)] if listen else []
    cart.assoc = ae.associate(node.host, node.port, ae_title=node.aet, evt_handlers=handlers)
    if not cart.assoc.is_established:
        raise AssertionError("association with the node failed")
    return cart


def refs_of(ds: Dataset, keyword: str = "ReferencedSOPSequence") -> list[tuple[str, str]]:
    return [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)) for i in ds.get(keyword, [])]


def failures_of(ds: Dataset) -> dict[str, int]:
    return {str(i.ReferencedSOPInstanceUID): int(i.FailureReason) for i in ds.get("FailedSOPSequence", [])}


def poll(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Wait until ``predicate()`` is truthy (polling, never a blind sleep); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
