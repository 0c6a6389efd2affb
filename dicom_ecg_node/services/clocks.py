r"""Device clocks: how far each sending device's clock is from the node's, and whether it can be trusted.

Why
    Carts stamp ECGs with their own clock; a cart set ten minutes fast puts its ECG ten minutes late in a serial
    comparison. IHE Consistent Time (ITI-1) asks every actor to keep NTP time; this module measures how well the
    devices actually do, from what they send, without any protocol of their own.

The bound (offset_s = device clock − node clock)
    Let θ be the device's offset (device clock minus node clock). The device stamps Instance Creation Date/Time
    (0008,0012)/(0008,0013) (PS3.3 C.12.1) with its clock reading :math:`C = t_c + θ`, where :math:`t_c` is the
    true (node-clock) time of creation. The node stamps the receive time :math:`R` when the C-STORE has arrived.
    An instance is created before it is received, :math:`t_c ≤ R`, hence :math:`C − θ ≤ R` and

    .. math::  θ ≥ C − R =: b

    Each instance gives a **lower bound** :math:`b = θ − d` where :math:`d ≥ 0` is the delay between creation
    and receipt (queueing on the cart, a store-and-forward hop, the network). The delays are unknown but never
    negative, so the largest bound of a window is the tightest estimate: it is the observation whose delay was
    smallest. Example: a cart 600 s fast that sends 5 s after creation gives :math:`b = 595` s; one that held
    the ECG for an hour gives :math:`b = −3000` s, which the maximum ignores. The estimate errs on the low side by
    the smallest delay in the window (typically a few seconds) plus up to 1 s of TM truncation.

Device clock zone
    Instance Creation Date/Time carry no offset of their own; Timezone Offset From UTC (0008,0201) applies to them
    when present (PS3.3 C.12.1.1.8), else the zone configured for the device (``device_timezones``), else the
    node's ``default_timezone``.

Window and drift
    The estimate is the maximum bound over the device's last ``clock_window_samples`` observations received within
    ``clock_window_hours`` of the newest (drift of the clock within the window biases it by at most drift ×
    window). Drift is the least-squares slope, in seconds per day, through the per-hour maxima of the bounds (the
    *envelope*, which again discards queueing delays) over the last :data:`DRIFT_HISTORY` observations, once they
    span :data:`DRIFT_MIN_SPAN_H` hours.

Flags (per device, over the window)
    ``not-synchronized``
        The newest instance says Acquisition Time Synchronized (0018,1800) = N, or does not say (PS3.3 C.7.4.2:
        "Y" means the acquisition time was synchronised with an external reference, with Time Source (0018,1801)
        naming it).
    ``acquisition-after-creation``
        An instance was acquired after it was created, by the device's own clock: impossible, so the device's
        times are inconsistent (a clock set between the two, or a wrong zone).
    ``offset-beyond-threshold``
        abs(offset_s) > ``clock_offset_threshold_s`` (60 s by default).
    ``zone-jump``
        The UTC offset applied to the device's times changed between two observations (a daylight-saving change
        or a re-configured cart): the wall-clock strings of that device do not order its ECGs.
    ``no-creation-time``
        The newest instance has no Instance Creation Date/Time, so gives no bound.

Trust and correction
    An offset is *trusted* when the window holds at least ``clock_trust_samples`` bounds, its three largest
    bounds agree within ``clock_trust_tolerance_s`` (three independent near-zero-delay observations confirm the
    estimate) and there is no zone jump. With ``clock_correction = "trusted"``, the corrected time of an instance
    of a trusted device is its acquisition time minus the offset (:math:`t = C − θ`), stored beside the original
    in ``clock_observation.corrected_utc``; the stored DICOM data never change.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import peewee as pw
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial

from dicom_ecg_node.catalog.catalog import utc_naive
from dicom_ecg_node.config import NodeConfig, parse_device_timezones
from dicom_ecg_node.errors import ArchiveError, CatalogError
from dicom_ecg_node.waveform import FastItem, Unsupported, read_header_object
from dicom_ecg_node.waveform._datetime import localize, parse_da_tm, parse_dt, parse_offset
from dicom_ecg_node.waveform.decode import CONVERT, element_text

if TYPE_CHECKING:
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.services.ingest import StoreOutcome

log = logging.getLogger("dicom_ecg_node.clocks")

#: Observations the drift is fitted over.
DRIFT_HISTORY = 200
#: Devices whose recent history a ClockService keeps in memory (~20 KB each); others are read from the catalog.
HISTORY_CACHE_DEVICES = 256
#: The drift needs envelope points spanning at least this many hours.
DRIFT_MIN_SPAN_H = 6.0
#: TM values without fraction are truncated to the second; allow that much before calling acquisition "after".
ORDER_TOLERANCE_S = 1.0
#: Flag names (see the module notes).
FLAGS = ("not-synchronized", "acquisition-after-creation", "offset-beyond-threshold", "zone-jump",
         "no-creation-time")


#: The header ends with group 0040 (request attributes); the Waveform Sequence (5400,0100) and Encapsulated Document
#: (0042,0011) come after it.
HEADER_LAST_TAG = 0x0040FFFF
#: Bytes read first: an ECG's header is a few KB; a longer one is read whole.
_HEADER_PREFIX = 64 * 1024
#: Passed over by the fast reader (asked for, they are read by pydicom): the Waveform Annotation Sequence
#: (0040,B020), dozens of items the derived work does not read.
_HEADER_SKIP = frozenset({0x0040B020})


class Attributes(Protocol):
    """What the derived work reads from a header: ``get(keyword)`` as :meth:`pydicom.dataset.Dataset.get`."""

    def get(self, keyword: str, default: Any = None, /) -> Any:
        """The value of ``keyword`` (a sequence: its items), ``default`` when absent."""


class Header:
    """A stored file's header read by the waveform decoder's fast reader, answering like a pydicom dataset.

    ``get(keyword)`` gives the value :meth:`pydicom.dataset.Dataset.get` would (the fast reader converts values
    with pydicom's own converter; a sequence gives a list of :class:`Header` items). Reading a header this way
    costs a fraction of pydicom's ``read_partial``, which parses and wraps every element. Whatever the fast
    reader passed over (:data:`_HEADER_SKIP`) or cannot convert exactly is looked up in the pydicom dataset that
    ``fallback`` returns instead.
    """

    __slots__ = ("_fallback", "_item")

    def __init__(self, item: FastItem, fallback: Callable[[], Attributes]) -> None:
        self._item = item
        self._fallback = fallback

    def get(self, keyword: str, default: Any = None) -> Any:
        """The value of ``keyword`` (a sequence: its items), ``default`` when absent."""
        tag = tag_for_keyword(keyword)
        if tag is None or tag in _HEADER_SKIP:
            return self._fallback().get(keyword, default)
        element = self._item.elements.get(tag)
        if element is None:
            return default
        if element[0] == "SQ":
            return [Header(child, functools.partial(_nth_item, self._fallback, keyword, i))
                    for i, child in enumerate(element[1])]
        try:
            return self._item.convert(tag)
        except Unsupported:
            return self._fallback().get(keyword, default)

    def text(self, keyword: str) -> str | None:
        """``str(value).strip() or None`` of ``keyword``, as of :meth:`get`'s value.

        Read from the bytes when pydicom would give the same string
        (:func:`~dicom_ecg_node.waveform.decode.element_text`).
        """
        tag = tag_for_keyword(keyword)
        if tag is not None and tag not in _HEADER_SKIP:
            element = self._item.elements.get(tag)
            if element is None:
                return None
            text = element_text(*element)
            if text is not CONVERT:
                return text  # type: ignore[no-any-return]
        value = self.get(keyword)
        return (str(value).strip() or None) if value is not None else None

    def __contains__(self, keyword: str) -> bool:
        tag = tag_for_keyword(keyword)
        if tag in _HEADER_SKIP:
            return keyword in self._fallback()  # type: ignore[operator]
        return tag is not None and tag in self._item.elements


def _nth_item(parent: Callable[[], Attributes], keyword: str, index: int) -> Attributes:
    items: Any = parent().get(keyword)
    return items[index]  # type: ignore[no-any-return]


def read_header(path: str | Path) -> Attributes:
    """The attributes of a Part 10 file up to group 0040 (identity, times, equipment, request attributes).

    Stops before the Waveform Sequence (5400,0100) or Encapsulated Document (0042,0011), so the samples are never
    parsed. Read by the fast reader (:class:`Header`), or by pydicom when the file holds something it leaves to
    pydicom.

    Raises
    ------
    ArchiveError
        The file cannot be read or parsed.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(_HEADER_PREFIX)
            item = read_header_object(data, HEADER_LAST_TAG, prefix=True, skip=_HEADER_SKIP)
            if item is None and len(data) == _HEADER_PREFIX:  # perhaps only a long header: read it all
                data += fh.read()
                item = read_header_object(data, HEADER_LAST_TAG, skip=_HEADER_SKIP)
    except OSError as exc:
        raise ArchiveError(f"{path}: header cannot be read: {exc}") from exc
    pydicom_header = functools.cache(functools.partial(_read_header_pydicom, path))
    return pydicom_header() if item is None else Header(item, pydicom_header)


def _read_header_pydicom(path: str | Path) -> Dataset:
    try:
        with open(path, "rb") as fh:
            return read_partial(fh, stop_when=lambda tag, _vr, _length: tag > HEADER_LAST_TAG)
    except (OSError, InvalidDicomError, EOFError, ValueError) as exc:
        raise ArchiveError(f"{path}: header cannot be read: {exc}") from exc


class _DeviceRow(NamedTuple):
    """The columns of a device's clock row that an observation reads before it updates the row."""

    id: int
    total: int
    flags: str | None


class HeaderReader:
    """:func:`read_header` that keeps the last header it read, for the listeners of one stored instance.

    The derived work of a stored ECG (reconciliation, then the clock observation) reads the same file's header
    twice; parsing it was about a fifth of that work. The header is kept while the file's path, size and
    modification time stay the same (an archived file is never rewritten in place; ``stat`` proves it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[tuple[str, int, int], Attributes] | None = None

    def read(self, path: str | Path) -> Attributes:
        """The header of ``path`` (see :func:`read_header`; the returned object is shared: do not change it).

        Raises
        ------
        ArchiveError
        """
        try:
            st = Path(path).stat()
        except OSError as exc:
            raise ArchiveError(f"{path}: header cannot be read: {exc.strerror}") from exc
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            last = self._last
        if last is not None and last[0] == key:
            return last[1]
        ds = read_header(path)
        with self._lock:
            self._last = (key, ds)
        return ds


def _text(ds: Attributes, keyword: str) -> str | None:
    if type(ds) is Header:
        return ds.text(keyword)
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    return text or None


@dataclass(frozen=True, slots=True)
class ClockReading:
    """What one instance says about its device's clock (all times on the device's clock).

    Attributes
    ----------
    creation_raw : str or None
        Instance Creation Date + Time as sent.
    creation : datetime or None
        The same, aware (see the module notes for the zone).
    acquisition : datetime or None
        Acquisition DateTime (else Acquisition Date + Time, else Content Date + Time), aware.
    utc_offset_minutes : int or None
        The UTC offset applied to ``creation``.
    zone_source : str or None
        ``"TimezoneOffsetFromUTC"``, ``"device_timezones"`` or ``"default"``.
    time_synchronized, time_source, time_distribution_protocol : str or None
        Synchronization module (PS3.3 C.7.4.2) values as sent.
    """

    creation_raw: str | None
    creation: datetime | None
    acquisition: datetime | None
    utc_offset_minutes: int | None
    zone_source: str | None
    time_synchronized: str | None
    time_source: str | None
    time_distribution_protocol: str | None


def clock_reading(ds: Attributes, device_zone: tzinfo | None, default_zone: tzinfo) -> ClockReading:
    """Read an instance's device-clock times and Synchronization module values.

    Parameters
    ----------
    ds : Attributes
        The instance's attributes: a pydicom dataset, or a header from :func:`read_header`.
    device_zone : tzinfo or None
        The zone configured for this device, when any.
    default_zone : tzinfo
        The node's default zone.

    Returns
    -------
    ClockReading
        Unparseable times become ``None`` (the instance then gives no bound).
    """
    zone, source = (device_zone, "device_timezones") if device_zone is not None else (default_zone, "default")
    tz_text = _text(ds, "TimezoneOffsetFromUTC")
    if tz_text:
        try:
            zone, source = parse_offset(tz_text), "TimezoneOffsetFromUTC"  # PS3.3 C.12.1.1.8
        except ValueError:
            log.debug("ignoring invalid Timezone Offset From UTC %r", tz_text)

    def aware(naive: datetime) -> datetime:
        return localize(naive, zone)[0]

    creation_raw = creation = None
    date, time_ = _text(ds, "InstanceCreationDate"), _text(ds, "InstanceCreationTime")
    if date and time_:
        creation_raw = date + time_
        try:
            creation = aware(parse_da_tm(date, time_))
        except ValueError:
            creation = None
    acquisition = None
    try:
        raw = _text(ds, "AcquisitionDateTime")
        if raw:
            naive, own, _precision = parse_dt(raw)
            acquisition = naive.replace(tzinfo=own) if own is not None else aware(naive)
        else:
            for d_kw, t_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
                d, t = _text(ds, d_kw), _text(ds, t_kw)
                if d and t:
                    acquisition = aware(parse_da_tm(d, t))
                    break
    except ValueError:
        acquisition = None
    offset = creation.utcoffset() if creation is not None else None
    return ClockReading(
        creation_raw, creation, acquisition,
        None if offset is None else int(offset.total_seconds() // 60), source if creation is not None else None,
        _text(ds, "AcquisitionTimeSynchronized"), _text(ds, "TimeSource"), _text(ds, "TimeDistributionProtocol"))


# ---------------------------------------------------------------------------------------------------------------
# The estimate (pure: no database)


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation as the estimator sees it."""

    received_at: datetime  # aware UTC, node clock
    bound_s: float | None
    utc_offset_minutes: int | None = None
    acquisition_after_creation: bool = False
    time_synchronized: str | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """A device's clock estimate.

    Attributes
    ----------
    offset_s : float or None
        Device clock minus node clock (seconds): the largest lower bound of the window.
    drift_s_per_day : float or None
        Slope of the bound envelope; ``None`` until the history is long enough.
    samples : int
        Observations with a bound in the window.
    trusted : bool
    flags : tuple of str
    """

    offset_s: float | None
    drift_s_per_day: float | None
    samples: int
    trusted: bool
    flags: tuple[str, ...]


def window(samples: Sequence[Sample], max_samples: int, hours: float) -> list[Sample]:
    """The newest ``max_samples`` of ``samples`` (oldest first) received within ``hours`` of the newest one."""
    ordered = sorted(samples, key=lambda s: s.received_at)[-max_samples:]
    if not ordered:
        return []
    since = ordered[-1].received_at - timedelta(hours=hours)
    return [s for s in ordered if s.received_at >= since]


def drift(samples: Sequence[Sample]) -> float | None:
    """Seconds per day of clock drift: least-squares slope through the hourly maxima of the bounds.

    ``None`` with fewer than two hourly points or when they span less than :data:`DRIFT_MIN_SPAN_H` hours.
    """
    envelope: dict[int, tuple[float, float]] = {}  # hour bucket -> (time in s, max bound)
    for s in samples:
        if s.bound_s is None:
            continue
        t = s.received_at.timestamp()
        bucket = int(t // 3600)
        if bucket not in envelope or s.bound_s > envelope[bucket][1]:
            envelope[bucket] = (t, s.bound_s)
    points = list(envelope.values())
    if len(points) < 2:
        return None
    xs = [p[0] for p in points]
    if (max(xs) - min(xs)) / 3600.0 < DRIFT_MIN_SPAN_H:
        return None
    mx = sum(xs) / len(xs)
    my = sum(p[1] for p in points) / len(points)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (p[1] - my) for x, p in zip(xs, points, strict=True)) / sxx
    return slope * 86400.0


def estimate(recent: Sequence[Sample], *, history: Sequence[Sample] = (), threshold_s: float = 60.0,
             trust_samples: int = 5, trust_tolerance_s: float = 5.0) -> Estimate:
    """Estimate a device's offset from its window of observations (see the module notes).

    Parameters
    ----------
    recent : sequence of Sample
        The window (see :func:`window`), any order.
    history : sequence of Sample, optional
        A longer history for the drift (the window when empty).
    threshold_s : float
        Offsets beyond this (either sign) are flagged.
    trust_samples, trust_tolerance_s : int, float
        The trust rule.

    Returns
    -------
    Estimate
    """
    ordered = sorted(recent, key=lambda s: s.received_at)
    bounds = sorted((s.bound_s for s in ordered if s.bound_s is not None), reverse=True)
    offset = bounds[0] if bounds else None
    flags: list[str] = []
    if ordered and (ordered[-1].time_synchronized or "").upper() != "Y":
        flags.append("not-synchronized")
    if any(s.acquisition_after_creation for s in ordered):
        flags.append("acquisition-after-creation")
    if offset is not None and abs(offset) > threshold_s:
        flags.append("offset-beyond-threshold")
    offsets = [s.utc_offset_minutes for s in ordered if s.utc_offset_minutes is not None]
    jump = any(a != b for a, b in itertools.pairwise(offsets))
    if jump:
        flags.append("zone-jump")
    if ordered and ordered[-1].bound_s is None:
        flags.append("no-creation-time")
    trusted = (len(bounds) >= trust_samples and not jump
               and bounds[0] - bounds[min(2, len(bounds) - 1)] <= trust_tolerance_s)
    d = drift(history or ordered)
    return Estimate(offset, None if d is None or math.isnan(d) else d, len(bounds), trusted, tuple(flags))


# ---------------------------------------------------------------------------------------------------------------
# What the CLI reads


@dataclass(frozen=True, slots=True)
class Observation:
    """One stored observation (times aware UTC)."""

    sop_instance_uid: str
    received_at: datetime
    creation_raw: str | None
    creation_utc: datetime | None
    utc_offset_minutes: int | None
    zone_source: str | None
    bound_s: float | None
    acquisition_utc: datetime | None
    acquisition_after_creation: bool
    time_synchronized: str | None
    time_source: str | None
    corrected_utc: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceClockInfo:
    """A device's current estimate and the Synchronization module information it last sent."""

    ae_title: str
    device_serial: str
    offset_s: float | None
    drift_s_per_day: float | None
    samples: int
    total: int
    trusted: bool
    flags: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    utc_offset_minutes: int | None
    time_synchronized: str | None
    time_source: str | None
    time_distribution_protocol: str | None
    manufacturer: str | None
    model_name: str | None

    def as_json(self) -> dict[str, Any]:
        """The ``ecg-node clocks --json`` object."""
        return {
            "ae_title": self.ae_title, "device_serial": self.device_serial,
            "offset_s": None if self.offset_s is None else round(self.offset_s, 3),
            "drift_s_per_day": None if self.drift_s_per_day is None else round(self.drift_s_per_day, 3),
            "samples": self.samples, "observations": self.total, "trusted": self.trusted, "flags": list(self.flags),
            "first_seen": self.first_seen.isoformat(), "last_seen": self.last_seen.isoformat(),
            "utc_offset_minutes": self.utc_offset_minutes,
            "synchronization": {"acquisition_time_synchronized": self.time_synchronized,
                                "time_source": self.time_source,
                                "time_distribution_protocol": self.time_distribution_protocol},
            "manufacturer": self.manufacturer, "model_name": self.model_name,
        }


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ClockService:
    """Record device clock observations and keep each device's estimate.

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 7 or later.
    config : NodeConfig
        Thresholds, window, trust rule, zones.
    """

    def __init__(self, catalog: Catalog, config: NodeConfig, headers: HeaderReader | None = None) -> None:
        self.catalog = catalog
        self.config = config
        #: Reads a stored file's header (shared with the reconciliation in the derived work: one parse per ECG).
        self.read_header = (headers or HeaderReader()).read
        self._zones = parse_device_timezones(config.device_timezones)
        # Per device: (DeviceClock.total, newest-first history) as of this process's last write. Reading and
        # parsing DRIFT_HISTORY rows for every stored ECG cost more than the store itself; the cached list is
        # used only while the row's total proves no other writer (another worker process) observed the device.
        self._history: dict[tuple[str, str], tuple[int, list[Sample]]] = {}

    def device_zone(self, ae_title: str, device_serial: str) -> tzinfo | None:
        """The zone configured for a device (``AE/SERIAL`` before ``AE``), or ``None``."""
        return self._zones.get((ae_title, device_serial or None)) or self._zones.get((ae_title, None))

    # -- writes ----------------------------------------------------------------------------------------------

    def observe(self, outcome: StoreOutcome) -> None:
        """Store listener: record the clock observation of a newly stored instance.

        Duplicates are skipped (their receive time is the first one's); the sender and receive time come from the
        catalog row, the device times from the archived file's header.
        """
        if outcome.status == "duplicate":
            return
        I = self.catalog.models.Instance  # noqa: N806, E741
        select = self.catalog.prepared("clocks.instance", lambda p: (
            I.select(I.sender_ae, I.device_serial_number, I.received_at).where(I.sop_instance_uid == p("uid"))
            .limit(1)))
        with self.catalog._connection():
            row = select.one(uid=outcome.sop_instance_uid)
        if row is None:
            return
        sender, serial, received = row
        ds = self.read_header(outcome.path)
        self.record(outcome.sop_instance_uid, sender or "", serial or "", _aware(received) or datetime.now(UTC), ds,
                    manufacturer=_text(ds, "Manufacturer"), model_name=_text(ds, "ManufacturerModelName"))

    def record(self, sop_instance_uid: str, ae_title: str, device_serial: str, received_at: datetime,
               ds: Attributes, *, manufacturer: str | None = None, model_name: str | None = None) -> Estimate:
        """Record one observation and update the device's estimate, in one transaction.

        Parameters
        ----------
        sop_instance_uid : str
            The observed instance.
        ae_title, device_serial : str
            The device (calling AE title and Device Serial Number, ``""`` when absent).
        received_at : datetime
            Node receive time (aware, or naive UTC).
        ds : Attributes
            The instance's attributes (a pydicom dataset, or a header from :func:`read_header`).
        manufacturer, model_name : str, optional
            Shown with the device.

        Returns
        -------
        Estimate
            The device's estimate after this observation.

        Raises
        ------
        CatalogError
        """
        received_at = received_at.replace(tzinfo=UTC) if received_at.tzinfo is None else received_at.astimezone(UTC)
        reading = clock_reading(ds, self.device_zone(ae_title, device_serial), self.config.zone)
        bound = None if reading.creation is None else (reading.creation - received_at).total_seconds()
        after = (reading.creation is not None and reading.acquisition is not None
                 and (reading.acquisition - reading.creation).total_seconds() > ORDER_TOLERANCE_S)
        m = self.catalog.models
        O, D = m.ClockObservation, m.DeviceClock  # noqa: N806, E741
        cfg = self.config
        observation = {
            "sop_instance_uid": sop_instance_uid, "ae_title": ae_title, "device_serial": device_serial,
            "received_at": utc_naive(received_at), "creation_raw": reading.creation_raw,
            "creation_utc": utc_naive(reading.creation), "utc_offset_minutes": reading.utc_offset_minutes,
            "zone_source": reading.zone_source, "bound_s": bound, "acquisition_utc": utc_naive(reading.acquisition),
            "acquisition_after_creation": after, "time_synchronized": reading.time_synchronized,
            "time_source": reading.time_source, "time_distribution_protocol": reading.time_distribution_protocol,
        }
        insert = self.catalog.prepared("clocks.insert-observation", lambda p: O.insert(
            **{name: p(name, O._meta.fields[name]) for name in observation}).on_conflict_ignore().as_rowcount())
        select_device = self.catalog.prepared("clocks.device", lambda p: D.select(D.id, D.total, D.flags).where(
            (D.ae_title == p("ae")) & (D.device_serial == p("serial"))).limit(1))
        try:
            # Not durable: a lost observation leaves its instance "unobserved", which the dispatcher catches up.
            with self.catalog._write(durable=False):
                inserted = insert.execute(**observation).rowcount
                device = (O.ae_title == ae_title) & (O.device_serial == device_serial)
                found = select_device.one(ae=ae_title, serial=device_serial)
                existing = None if found is None else _DeviceRow(*found)
                key = (ae_title, device_serial)
                cached = self._history.get(key)
                sample = Sample(utc_naive(received_at).replace(tzinfo=UTC), bound, reading.utc_offset_minutes,
                                after, reading.time_synchronized)
                if cached is not None and existing is not None and cached[0] == existing.total and inserted == 1:
                    # Only this process observed the device since: the history is the cached one with this sample
                    # at its place in the query's order below (received_at desc, then id desc: the new row has the
                    # highest id, so it goes before those received at the same time). ECGs are observed out of
                    # their receive order when worker processes' stores are caught up by catalog id.
                    old = cached[1]
                    at = next((i for i, s in enumerate(old) if s.received_at <= sample.received_at), len(old))
                    history = [*old[:at], sample, *old[at:]][:DRIFT_HISTORY]
                else:
                    rows = list(O.select(O.received_at, O.bound_s, O.utc_offset_minutes,
                                         O.acquisition_after_creation, O.time_synchronized).where(device)
                                .order_by(O.received_at.desc(), O.id.desc()).limit(DRIFT_HISTORY).tuples())
                    history = [Sample(_aware(r[0]), r[1], r[2], bool(r[3]), r[4])  # type: ignore[arg-type]
                               for r in rows]
                recent = window(history, cfg.clock_window_samples, cfg.clock_window_hours)
                est = estimate(recent, history=history, threshold_s=cfg.clock_offset_threshold_s,
                               trust_samples=cfg.clock_trust_samples, trust_tolerance_s=cfg.clock_trust_tolerance_s)
                now = utc_naive(received_at)
                values = {
                    "offset_s": est.offset_s, "drift_s_per_day": est.drift_s_per_day, "samples": est.samples,
                    "trusted": est.trusted, "flags": ",".join(est.flags), "last_seen": now,
                    "utc_offset_minutes": reading.utc_offset_minutes, "time_synchronized": reading.time_synchronized,
                    "time_source": reading.time_source,
                    "time_distribution_protocol": reading.time_distribution_protocol,
                    "manufacturer": manufacturer, "model_name": model_name,
                }
                newly_beyond = "offset-beyond-threshold" in est.flags and (
                    existing is None or "offset-beyond-threshold" not in (existing.flags or "").split(","))
                if existing is None:
                    D.insert(ae_title=ae_title, device_serial=device_serial, first_seen=now, total=1,
                             **values).execute()
                else:
                    update = self.catalog.prepared("clocks.update-device", lambda p: D.update(
                        total=D.total + 1, **{name: p(name, D._meta.fields[name]) for name in values})
                        .where(D.id == p("id")))
                    update.execute(id=existing.id, **values)
                self._history.pop(key, None)
                self._history[key] = (1 if existing is None else int(existing.total) + 1, history)
                if len(self._history) > HISTORY_CACHE_DEVICES:  # least recently observed device first
                    del self._history[next(iter(self._history))]
                if est.trusted and est.offset_s is not None:
                    # The window's observations are those the estimate describes: give them their corrected time
                    # (those already corrected with this very offset keep theirs: usually all but the new one).
                    since = utc_naive(recent[0].received_at) if recent else now
                    stale = O.applied_offset_s.is_null() | (O.applied_offset_s != est.offset_s)
                    for oid, acq in list(O.select(O.id, O.acquisition_utc)
                                         .where(device & (O.received_at >= since) & O.acquisition_utc.is_null(False)
                                                & stale)
                                         .tuples()):
                        corrected = _aware(acq) - timedelta(seconds=est.offset_s)  # type: ignore[operator]
                        (O.update(corrected_utc=utc_naive(corrected), applied_offset_s=est.offset_s)
                         .where(O.id == oid).execute())
        except pw.PeeweeException as exc:
            raise CatalogError(f"clock observation of {sop_instance_uid}: {exc}") from exc
        if newly_beyond:  # once when the device crosses the threshold, not for every object it sends
            log.warning("device %s/%s clock is %+.0f s from the node's (threshold %.0f s)", ae_title,
                        device_serial or "-", est.offset_s, cfg.clock_offset_threshold_s)
        return est

    # -- reads -----------------------------------------------------------------------------------------------

    def devices(self) -> list[DeviceClockInfo]:
        """Every device seen, ordered by AE title and serial (one query)."""
        D = self.catalog.models.DeviceClock  # noqa: N806
        with self.catalog._connection():
            rows = list(D.select().order_by(D.ae_title, D.device_serial))
        return [DeviceClockInfo(
            r.ae_title, r.device_serial, r.offset_s, r.drift_s_per_day, int(r.samples), int(r.total),
            bool(r.trusted), tuple(f for f in (r.flags or "").split(",") if f), _aware(r.first_seen),
            _aware(r.last_seen), r.utc_offset_minutes, r.time_synchronized, r.time_source,  # type: ignore[arg-type]
            r.time_distribution_protocol, r.manufacturer, r.model_name) for r in rows]

    def history(self, ae_title: str, device_serial: str, limit: int = 10) -> list[Observation]:
        """A device's newest observations, newest first (one query)."""
        O = self.catalog.models.ClockObservation  # noqa: N806, E741
        with self.catalog._connection():
            rows = list(O.select().where((O.ae_title == ae_title) & (O.device_serial == device_serial))
                        .order_by(O.received_at.desc(), O.id.desc()).limit(limit))
        return [Observation(r.sop_instance_uid, _aware(r.received_at), r.creation_raw,  # type: ignore[arg-type]
                            _aware(r.creation_utc), r.utc_offset_minutes, r.zone_source, r.bound_s,
                            _aware(r.acquisition_utc), bool(r.acquisition_after_creation), r.time_synchronized,
                            r.time_source, _aware(r.corrected_utc)) for r in rows]

    def corrected_time(self, sop_instance_uid: str) -> datetime | None:
        """The corrected acquisition time (aware UTC) of an instance of a trusted device, else ``None``."""
        O = self.catalog.models.ClockObservation  # noqa: N806, E741
        with self.catalog._connection():
            value = O.select(O.corrected_utc).where(O.sop_instance_uid == sop_instance_uid).scalar()
        return _aware(value)


#: Catch-up looks back this far before the newest clock observation (stores finish out of order; a backlog).
CATCH_UP_LOOKBACK = timedelta(hours=6)
#: Catch-up considers at most this many of the newest instance rows.
CATCH_UP_MAX_ROWS = 20000


@dataclass(frozen=True, slots=True)
class UnobservedInstance:
    """A network-received instance without a clock observation (see :func:`unobserved_instances`)."""

    id: int
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    path: str  # relative to the data directory
    size: int
    sha256: str
    received_at: datetime  # aware UTC


def unobserved_instances(catalog: Catalog, *, after_id: int = 0, received_before: datetime | None = None,
                         limit: int = 200, lookback: timedelta = CATCH_UP_LOOKBACK,
                         max_rows: int = CATCH_UP_MAX_ROWS) -> list[UnobservedInstance]:
    """Instances whose store listeners have not run (yet), for the catch-up of :mod:`.dispatch`; by row id.

    The clock observation is the last derived record written for a stored instance (the dispatcher runs
    :meth:`ClockService.observe` after the reconciliation), so an instance without one still needs its derived
    work. Only instances received over the network count (``sender_address`` other than ``"local"``): imports,
    re-indexed files and the node's own objects were never observed. The look-back is bounded: instances received
    within ``lookback`` before the newest observation (or the newest instance, before the first observation), and
    among the newest ``max_rows`` rows; older work is not resurrected.

    Parameters
    ----------
    catalog : Catalog
        An open catalog.
    after_id : int
        Keyset paging: only rows with a larger ``instance.id``.
    received_before : datetime, optional
        Only instances received before this (aware UTC).
    limit : int
        At most this many rows.
    lookback : timedelta
        How far before the newest observation to look.
    max_rows : int
        Only among this many of the newest instance rows.

    Returns
    -------
    list of UnobservedInstance
        Ascending ``id``, at most ``limit``.
    """
    m = catalog.models
    I, O, Se, St = m.Instance, m.ClockObservation, m.Series, m.Study  # noqa: N806, E741
    network = I.sender_address.is_null() | (I.sender_address != "local")
    with catalog._connection():
        newest = O.select(pw.fn.MAX(O.received_at)).scalar()
        if newest is None:
            newest = I.select(pw.fn.MAX(I.received_at)).where(network).scalar()
        top = I.select(pw.fn.MAX(I.id)).scalar()
        if newest is None or top is None:
            return []
        since = utc_naive(_aware(newest) - lookback)  # type: ignore[operator]
        cond = (I.id > max(after_id, int(top) - max_rows)) & network & (I.received_at >= since) & O.id.is_null()
        if received_before is not None:
            cond &= I.received_at < utc_naive(received_before)
        rows = list(I.select(I.id, I.sop_instance_uid, I.sop_class_uid, St.study_instance_uid, I.path, I.size,
                             I.sha256, I.received_at)
                    .join(O, pw.JOIN.LEFT_OUTER, on=(O.sop_instance_uid == I.sop_instance_uid))
                    .switch(I).join(Se, on=(I.series == Se.id)).join(St, on=(Se.study == St.id))
                    .where(cond).order_by(I.id).limit(limit).tuples())
    return [UnobservedInstance(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], _aware(r[7]))  # type: ignore[arg-type]
            for r in rows]


def is_observed(catalog: Catalog, sop_instance_uid: str) -> bool:
    """The instance has a clock observation (its derived work is done)."""
    O = catalog.models.ClockObservation  # noqa: N806, E741
    select = catalog.prepared("clocks.observed",
                              lambda p: O.select(O.id).where(O.sop_instance_uid == p("uid")).limit(1))
    with catalog._connection():
        return select.one(uid=sop_instance_uid) is not None


def corrected_times(catalog: Catalog, sop_instance_uids: Sequence[str]) -> dict[str, datetime]:
    """Corrected acquisition times (aware UTC) of those instances whose device offset was trusted.

    One query per 500 UIDs. The catalog function behind ``clock_correction = "trusted"``: callers order by
    ``corrected.get(uid) or acquisition_utc`` and show both.
    """
    O = catalog.models.ClockObservation  # noqa: N806, E741
    out: dict[str, datetime] = {}
    uids = list(dict.fromkeys(sop_instance_uids))
    with catalog._connection():
        for i in range(0, len(uids), 500):
            for uid, value in (O.select(O.sop_instance_uid, O.corrected_utc)
                               .where(O.sop_instance_uid.in_(uids[i:i + 500]) & O.corrected_utc.is_null(False))
                               .tuples()):
                when = _aware(value)
                if when is not None:
                    out[uid] = when
    return out


def serial_key(sop_instance_uid: str, acquisition_utc: datetime | None,
               corrected: dict[str, datetime]) -> tuple[int, float, str]:
    """Sort key of serial order: the corrected time when known, else the acquisition time; undated last."""
    when = corrected.get(sop_instance_uid) or acquisition_utc
    return (0, when.timestamp(), sop_instance_uid) if when is not None else (1, 0.0, sop_instance_uid)


__all__ = ["CATCH_UP_LOOKBACK", "CATCH_UP_MAX_ROWS", "FLAGS", "ClockReading", "ClockService", "DeviceClockInfo",
           "Estimate", "HeaderReader", "Observation", "Sample", "UnobservedInstance", "clock_reading",
           "corrected_times", "drift", "estimate", "is_observed", "read_header", "serial_key", "unobserved_instances",
           "window"]
