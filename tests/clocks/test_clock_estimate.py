"""The clock estimator (pure) and its catalog tables on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import make_config
from pydicom.dataset import Dataset

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.services.clocks import DRIFT_HISTORY, ClockService, Sample, drift, estimate, window

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def test_estimate_is_the_largest_bound_and_trust_needs_agreement():
    samples = [Sample(T0 + timedelta(minutes=i), b, 0, False, "Y") for i, b in enumerate([590, 598, 599.5, 560, 599])]
    est = estimate(samples, threshold_s=60, trust_samples=5, trust_tolerance_s=5)
    assert est.offset_s == 599.5 and est.samples == 5 and est.trusted
    assert est.flags == ("offset-beyond-threshold",)
    loose = [Sample(T0 + timedelta(minutes=i), b, 0, False, "Y") for i, b in enumerate([590, 500, 599.5, 560, 400])]
    assert not estimate(loose, trust_samples=5, trust_tolerance_s=5).trusted  # top three disagree by 40 s
    assert not estimate(samples[:3], trust_samples=5).trusted  # too few


def test_zone_jump_and_missing_creation_are_flagged():
    samples = [Sample(T0, 10.0, 60, False, "Y"), Sample(T0 + timedelta(hours=1), 10.0, 120, False, "Y"),
               Sample(T0 + timedelta(hours=2), None, 120, False, None)]
    est = estimate(samples, trust_samples=3)
    assert set(est.flags) == {"zone-jump", "no-creation-time", "not-synchronized"}
    assert not est.trusted


def test_window_keeps_the_newest_within_hours():
    samples = [Sample(T0 + timedelta(hours=h), float(h)) for h in (0, 1, 30, 31, 32)]
    assert [s.bound_s for s in window(samples, 20, 24)] == [30.0, 31.0, 32.0]
    assert [s.bound_s for s in window(samples, 2, 24)] == [31.0, 32.0]


def test_drift_is_the_slope_of_the_hourly_envelope():
    # A clock gaining 2 s per day, observed every 30 min for two days with queueing delays of 0-20 s.
    samples = [Sample(T0 + timedelta(minutes=30 * i), 100 + 2 * (i / 48) - (i * 7 % 20)) for i in range(96)]
    d = drift(samples)
    assert d is not None and abs(d - 2.0) < 1.5
    assert drift(samples[:4]) is None  # spans less than six hours


def _ds(creation: datetime, acquisition: datetime, sync: str | None = "Y") -> Dataset:
    ds = Dataset()
    ds.InstanceCreationDate = creation.strftime("%Y%m%d")
    ds.InstanceCreationTime = creation.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = acquisition.strftime("%Y%m%d%H%M%S.%f+0000")
    if sync:
        ds.AcquisitionTimeSynchronized = sync
        ds.TimeSource = "NTP"
    return ds


@pytest.fixture
def clock_service(catalog_url, tmp_path):
    catalog = Catalog.open(catalog_url)
    config = make_config(tmp_path, clock_correction="trusted", clock_trust_samples=3, clock_trust_tolerance_s=5)
    yield ClockService(catalog, config)
    catalog.close()


def test_device_estimate_trust_and_corrected_times(clock_service):
    offset = 600.0
    for i in range(4):
        received = T0 + timedelta(minutes=10 * i)
        created = received - timedelta(seconds=2 + i) + timedelta(seconds=offset)  # device clock, 600 s fast
        est = clock_service.record(f"1.2.3.{i}", "CART1", "SN1", received, _ds(created, created - timedelta(minutes=1)))
    assert est.trusted and 595 <= est.offset_s <= 600
    [device] = clock_service.devices()
    assert (device.ae_title, device.device_serial, device.samples, device.total) == ("CART1", "SN1", 4, 4)
    assert device.trusted and device.time_source == "NTP"
    # The corrected time of an ECG acquired 1 min before its creation on a clock 600 s fast: about 10 min earlier.
    corrected = clock_service.corrected_time("1.2.3.3")
    acquired = T0 + timedelta(minutes=30) - timedelta(seconds=5) + timedelta(seconds=offset) - timedelta(minutes=1)
    assert corrected is not None and abs((acquired - corrected).total_seconds() - offset) < 5
    history = clock_service.history("CART1", "SN1", limit=2)
    assert [o.sop_instance_uid for o in history] == ["1.2.3.3", "1.2.3.2"]
    assert history[0].bound_s == pytest.approx(offset - 5, abs=0.01)


def test_a_re_recorded_instance_counts_once(clock_service):
    ds = _ds(T0, T0)
    clock_service.record("1.2.9", "CART2", "", T0, ds)
    clock_service.record("1.2.9", "CART2", "", T0, ds)
    [device] = clock_service.devices()
    assert device.samples == 1 and device.device_serial == ""


@pytest.mark.parametrize("order", ["received", "interleaved"])
def test_cached_history_gives_what_the_catalog_gives(catalog_url, tmp_path, order):
    """One service (history cached), a cold service per observation, and two services taking turns on one catalog
    (two worker processes) end with the same device estimate and the same corrected times; also when ECGs are
    observed out of their receive order (the derived work of two worker processes, caught up by catalog id)."""
    from dicom_ecg_node.catalog import Catalog

    config = make_config(tmp_path, clock_correction="trusted", clock_trust_samples=3, clock_trust_tolerance_s=5)

    def observations():
        for i in range(30):
            # "interleaved": every pair observed later-received first, and every fifth ECG received 3 hours before
            # the ones observed before it (it belongs far down the history, out of the window of recent ones).
            j = i if order == "received" else (i + 1 if i % 2 == 0 else i - 1)
            received = T0 + timedelta(minutes=7 * j - (180 if order != "received" and i % 5 == 4 else 0))
            offset = 600.0 + (40.0 if i >= 20 else 0.0)  # the cart's clock is reset by 40 s after 20 ECGs
            created = received - timedelta(seconds=2 + i % 4) + timedelta(seconds=offset)
            yield f"1.2.7.{i}", received, _ds(created, created - timedelta(minutes=1))

    def run(url_suffix: str, services) -> tuple:
        catalog = Catalog.open(url_suffix)
        try:
            svcs = services(catalog)
            for n, (uid, received, ds) in enumerate(observations()):
                svcs[n % len(svcs)].record(uid, "CART9", "SN9", received, ds)
            [device] = svcs[0].devices()
            corrected = [svcs[0].corrected_time(f"1.2.7.{i}") for i in range(30)]
            cached = svcs[0]._history.get(("CART9", "SN9"))
            if cached is not None and len(svcs) == 1:  # the history kept in memory is the catalog's, in its order
                stored = svcs[0].history("CART9", "SN9", limit=DRIFT_HISTORY)
                assert [(s.received_at, s.bound_s) for s in cached[1]] == [(o.received_at, o.bound_s)
                                                                          for o in stored]
            return (device.offset_s, device.drift_s_per_day, device.samples, device.total, device.trusted,
                    device.flags), corrected
        finally:
            catalog.close()

    sqlite = [f"sqlite:///{tmp_path / f'c{i}.sqlite'}" for i in range(3)]
    warm = run(sqlite[0], lambda c: [ClockService(c, config)])
    cold = run(sqlite[1], lambda c: _ColdServices(c, config))
    pair = run(sqlite[2], lambda c: [ClockService(c, config), ClockService(c, config)])
    assert warm == cold == pair
    assert warm[0][3] == 30 and warm[0][4]  # all counted, trusted
    if not catalog_url.startswith("sqlite"):  # and the same on PostgreSQL, two writers taking turns
        assert run(catalog_url, lambda c: [ClockService(c, config), ClockService(c, config)]) == warm


class _ColdServices(list):
    """A fresh ClockService (empty cache) for every observation."""

    def __init__(self, catalog, config) -> None:
        super().__init__([None])
        self._catalog, self._config = catalog, config

    def __getitem__(self, index):
        return ClockService(self._catalog, self._config)
