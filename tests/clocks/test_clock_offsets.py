"""Carts with clocks set fast and slow store ECGs over real associations; ``ecg-node clocks --json`` shows it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from clocksupport import cart_ecg, send

from dicom_ecg_node.cli import main


def clocks_json(node) -> list[dict]:
    result = CliRunner().invoke(main, ["clocks", "--json", "--data-dir", str(node.config.data_dir)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def by_device(entries: list[dict]) -> dict[tuple[str, str], dict]:
    return {(e["ae_title"], e["device_serial"]): e for e in entries}


def test_fast_and_slow_carts_show_their_offsets(node, tmp_path):
    assert send(node, [cart_ecg(600, serial="FAST")], tmp_path, calling="CART_FAST") == [0]
    assert send(node, [cart_ecg(-300, serial="SLOW")], tmp_path, calling="CART_SLOW") == [0]
    assert send(node, [cart_ecg(0, serial="GOOD")], tmp_path, calling="CART_GOOD") == [0]
    devices = by_device(clocks_json(node))
    fast, slow, good = devices[("CART_FAST", "FAST")], devices[("CART_SLOW", "SLOW")], devices[("CART_GOOD", "GOOD")]
    # A lower bound: at most the true offset, short of it by the creation-to-receipt delay (well under 5 s here).
    assert 595 <= fast["offset_s"] <= 600.5
    assert -305 <= slow["offset_s"] <= -299.5
    assert -5 <= good["offset_s"] <= 0.5
    for entry in (fast, slow, good):
        assert entry["samples"] == 1
        datetime.fromisoformat(entry["last_seen"])
        assert {"ae_title", "device_serial", "offset_s", "samples", "last_seen", "flags",
                "drift_s_per_day"} <= set(entry)
    assert "offset-beyond-threshold" in fast["flags"] and "offset-beyond-threshold" in slow["flags"]
    assert "offset-beyond-threshold" not in good["flags"]
    assert good["synchronization"] == {"acquisition_time_synchronized": "Y", "time_source": "NTP",
                                       "time_distribution_protocol": None}
    assert fast["history"][0]["instance_creation"]


def test_offset_is_the_tightest_bound_over_queued_sends(node, tmp_path):
    """ECGs held on the cart before sending give looser bounds; the estimate keeps the tightest one."""
    now = datetime.now(UTC)
    held = [cart_ecg(120, serial="Q", now=now - timedelta(minutes=m)) for m in (30, 10, 5)]  # created earlier
    fresh = cart_ecg(120, serial="Q")
    assert send(node, [*held, fresh], tmp_path, calling="CARTQ") == [0, 0, 0, 0]
    entry = by_device(clocks_json(node))[("CARTQ", "Q")]
    assert entry["samples"] == 4
    assert 115 <= entry["offset_s"] <= 120.5
    bounds = sorted(h["bound_s"] for h in entry["history"])
    assert bounds[0] < -1000  # the ECG held for 30 minutes: a loose bound that the maximum ignores


def test_unsynchronized_and_missing_synchronization_are_flagged(node, tmp_path):
    send(node, [cart_ecg(0, serial="N", synchronized=False, time_source=None)], tmp_path, calling="CARTN")
    send(node, [cart_ecg(0, serial="ABSENT", synchronized=None, time_source=None)], tmp_path, calling="CARTA")
    devices = by_device(clocks_json(node))
    assert "not-synchronized" in devices[("CARTN", "N")]["flags"]
    assert devices[("CARTN", "N")]["synchronization"]["acquisition_time_synchronized"] == "N"
    assert "not-synchronized" in devices[("CARTA", "ABSENT")]["flags"]
    assert devices[("CARTA", "ABSENT")]["synchronization"]["acquisition_time_synchronized"] is None


def test_acquisition_after_creation_is_flagged(node, tmp_path):
    send(node, [cart_ecg(0, serial="ODD", acquired_before_s=-120)], tmp_path, calling="CARTODD")
    entry = by_device(clocks_json(node))[("CARTODD", "ODD")]
    assert "acquisition-after-creation" in entry["flags"]


def test_zone_offset_is_applied_and_a_zone_jump_is_flagged(node, tmp_path):
    """A cart that sends Timezone Offset From UTC: its local times are read in that offset (PS3.3 C.12.1.1.8).

    The same cart crossing a daylight-saving change (+0100 then +0200) keeps the same offset estimate but is
    flagged, because its wall-clock strings jump by an hour.
    """
    send(node, [cart_ecg(60, serial="DST", zone_offset="+0100")], tmp_path, calling="CARTDST")
    entry = by_device(clocks_json(node))[("CARTDST", "DST")]
    assert 55 <= entry["offset_s"] <= 60.5
    assert entry["utc_offset_minutes"] == 60 and "zone-jump" not in entry["flags"]
    send(node, [cart_ecg(60, serial="DST", zone_offset="+0200")], tmp_path, calling="CARTDST")
    entry = by_device(clocks_json(node))[("CARTDST", "DST")]
    assert 55 <= entry["offset_s"] <= 60.5
    assert entry["utc_offset_minutes"] == 120
    assert "zone-jump" in entry["flags"]
    assert entry["trusted"] is False


def test_device_timezone_setting_applies_to_zone_less_times(node_factory, tmp_path):
    node = node_factory(device_timezones="CARTPARIS=Europe/Paris")
    send(node, [cart_ecg(0, serial="P", zone_offset="+0100")], tmp_path, calling="CARTPARIS")
    # Remove the explicit offset: the configured zone must give the same answer (Paris is +0100 or +0200).
    ds = cart_ecg(0, serial="P2", zone_offset="+0100")
    del ds.TimezoneOffsetFromUTC
    send(node, [ds], tmp_path, calling="CARTPARIS")
    devices = by_device(clocks_json(node))
    assert -5 <= devices[("CARTPARIS", "P")]["offset_s"] <= 0.5
    paris = devices[("CARTPARIS", "P2")]
    assert paris["history"][0]["zone_source"] == "device_timezones"
    # Within 5 s of the truth in winter (+0100); in summer Paris is +0200, so the cart is read an hour behind.
    assert min(abs(paris["offset_s"]), abs(paris["offset_s"] - 3600)) <= 5


def test_clocks_table_output(node, tmp_path):
    send(node, [cart_ecg(600, serial="FAST")], tmp_path, calling="CART_FAST")
    result = CliRunner().invoke(main, ["clocks", "--data-dir", str(node.config.data_dir)])
    assert result.exit_code == 0, result.output
    assert "CART_FAST" in result.output and re.search(r"\+(59[5-9]|600)\.\d s", result.output)
    assert "offset-beyond-threshold" in result.output
