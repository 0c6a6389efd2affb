"""Serial order with clock correction: a trusted fast cart's ECGs move to their true place in the timeline."""

from __future__ import annotations

import json

from click.testing import CliRunner
from clocksupport import cart_ecg, send

from dicom_ecg_node.cli import main


def timeline(node, correction: str) -> list[dict]:
    result = CliRunner().invoke(main, ["timeline", "SERIAL1", "--json", "--data-dir", str(node.config.data_dir)],
                                env={"ECG_NODE_CLOCK_CORRECTION": correction})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_timeline_uses_corrected_time_of_a_trusted_device(node_factory, tmp_path):
    node = node_factory(clock_correction="trusted", clock_trust_samples=3)
    # The fast cart (600 s ahead) records three ECGs five minutes (true time) before the good cart's one.
    fast = [cart_ecg(600, serial="F", acquired_before_s=300, patient_id="SERIAL1") for _ in range(3)]
    good = cart_ecg(0, serial="G", acquired_before_s=0, patient_id="SERIAL1")
    assert send(node, fast, tmp_path, calling="CARTF") == [0, 0, 0]
    assert send(node, [good], tmp_path, calling="CARTG") == [0]
    fast_uids = {ds.SOPInstanceUID for ds in fast}

    plain = timeline(node, "off")
    assert plain[0]["sop_instance_uid"] == good.SOPInstanceUID  # by the carts' own clocks the good one is first
    assert all(r["corrected_utc"] is None for r in plain)

    corrected = timeline(node, "trusted")
    assert {r["sop_instance_uid"] for r in corrected[:3]} == fast_uids
    assert corrected[3]["sop_instance_uid"] == good.SOPInstanceUID
    for row in corrected[:3]:  # the original stays beside the corrected time
        assert row["acquisition_utc"] > row["corrected_utc"]
    assert corrected[3]["corrected_utc"] is None  # one sample only: the good cart is not trusted yet
