"""Carts with clocks set fast or slow: synthetic ECGs whose Instance Creation Date/Time reads a chosen offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_context

from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"


def cart_ecg(offset_s: float, *, serial: str = "SN-1", zone_offset: str | None = None, synchronized: bool | None = True,
             time_source: str | None = "NTP", acquired_before_s: float = 30.0, now: datetime | None = None,
             **kwargs: Any) -> Dataset:
    """An ECG as a cart whose clock reads ``offset_s`` seconds ahead of true time would stamp it now.

    ``zone_offset`` (``"+0200"``...) writes Timezone Offset From UTC and local times in that offset; otherwise the
    times are UTC wall clock without any offset (the node's default zone, UTC in the tests, applies).
    """
    now = now or datetime.now(UTC)
    device_now = now + timedelta(seconds=offset_s)
    if zone_offset is not None:
        sign = -1 if zone_offset[0] == "-" else 1
        delta = timedelta(hours=int(zone_offset[1:3]), minutes=int(zone_offset[3:5])) * sign
        local = device_now.astimezone(UTC).replace(tzinfo=None) + delta
    else:
        local = device_now.astimezone(UTC).replace(tzinfo=None)
    acquired = local - timedelta(seconds=acquired_before_s)
    ds = synthesize_ecg(acquisition_datetime=acquired.replace(tzinfo=UTC), zone_style="none",
                        acquisition_time_synchronized=synchronized, time_source=time_source,
                        device_serial_number=serial, duration_s=2.0, annotations=False, **kwargs)
    ds.InstanceCreationDate = local.strftime("%Y%m%d")
    ds.InstanceCreationTime = local.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S.%f")
    if zone_offset is not None:
        ds.TimezoneOffsetFromUTC = zone_offset
    elif "TimezoneOffsetFromUTC" in ds:
        del ds.TimezoneOffsetFromUTC
    return ds


def send(node: Any, datasets: list[Dataset], tmp_path: Path, calling: str = "CART1") -> list[int]:
    """C-STORE ``datasets`` from ``calling`` over one association; returns the statuses."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(TWELVE_LEAD)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    statuses = []
    try:
        for ds in datasets:
            path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
            path.write_bytes(ecg_to_bytes(ds))
            statuses.append(int(assoc.send_c_store(path).Status))
    finally:
        assoc.release()
    settle(node)
    return statuses


def settle(node: Any, timeout: float = 30.0) -> None:
    """Wait (bounded) until the node's background dispatcher has run the clock and reconciliation listeners."""
    assert node.node.dispatcher.wait_idle(timeout), f"derived work still running after {timeout:.0f} s"


__all__ = ["TWELVE_LEAD", "build_context", "cart_ecg", "send", "settle"]
