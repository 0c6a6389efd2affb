"""The web viewer in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), tablet-sized.

Few and focused, since Chromium is heavy: login → live worklist (a C-STORE appears within 2 s) → logout; and the
ECG view (calibration pulse height in device pixels at devicePixelRatio 2, calipers, prior overlay).
Screenshots go to ``$ECG_WEB_SCREENSHOTS`` (default: the test's temporary directory).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from websupport import PASSWORD, USER, synthetic_ecg

TABLET = {"width": 1024, "height": 768}
CSS_PX_PER_MM = 96 / 25.4


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ECG_WEB_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _login(page, base: str, next_path: str = "/") -> None:
    page.goto(base + next_path)
    assert "/login" in page.url  # nothing but the login page without a session
    page.fill("#username", USER)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(base + next_path)


@pytest.mark.timeout(180)
def test_login_live_worklist_cstore_within_2s_and_logout(browser, web_node, tmp_path):
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    from dicom_ecg_node.waveform.synth import synthesize_ecg

    for minutes, pid in ((0, "WL-1"), (5, "WL-2")):
        web_node.store(synthetic_ecg(pid, minutes=minutes))
    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    try:
        _login(page, web_node.base_url)
        page.wait_for_selector("#live[data-state=open]", timeout=10_000)
        assert page.locator("#ecg-rows tr").count() == 2

        ds = synthesize_ecg(patient_id="WL-3", patient_name="LIVE^NEW", heart_rate_bpm=60.0, seed=3)
        ae = AE(ae_title="TESTCART")
        ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", web_node.node.address[1], ae_title=web_node.config.aet)
        assert assoc.is_established
        try:
            status = assoc.send_c_store(ds)
        finally:
            assoc.release()
        stored_at = time.monotonic()
        assert status.Status == 0x0000
        page.wait_for_selector(f'#ecg-rows tr[data-uid="{ds.SOPInstanceUID}"]', timeout=2_000)
        assert time.monotonic() - stored_at < 2.0
        first = page.locator("#ecg-rows tr").first
        assert first.get_attribute("data-uid") == ds.SOPInstanceUID  # newest first
        assert "WL-3" in first.inner_text() and "60 bpm" in first.inner_text()
        page.screenshot(path=str(_shots(tmp_path) / "worklist.png"))

        page.click("#logout")
        page.wait_for_url(web_node.base_url + "/login")
        page.goto(web_node.base_url + "/")
        assert "/login" in page.url
    finally:
        context.close()


@pytest.mark.timeout(180)
def test_ecg_view_calibration_pulse_calipers_and_prior_overlay(browser, web_node, tmp_path):
    web_node.store(synthetic_ecg("EV-1", minutes=0, heart_rate_bpm=60.0))
    uid = web_node.store(synthetic_ecg("EV-1", minutes=90, heart_rate_bpm=60.0, seed=11)).sop_instance_uid
    context = browser.new_context(viewport=TABLET, device_scale_factor=2)
    page = context.new_page()
    try:
        _login(page, web_node.base_url, f"/ecg/{uid}")
        page.wait_for_selector("#ecg-canvas[data-ready=ecg]", timeout=15_000)
        page.locator("#ecg-canvas").scroll_into_view_if_needed()
        geo = page.evaluate("JSON.parse(document.getElementById('ecg-canvas').dataset.geometry)")
        assert geo["dpr"] == 2 and geo["pxPerMm"] == pytest.approx(CSS_PX_PER_MM)
        size = page.evaluate("(() => { const c = document.getElementById('ecg-canvas');"
                             " const r = c.getBoundingClientRect();"
                             " return {w: c.width, h: c.height, cssW: r.width, cssH: r.height}; })()")
        assert size["w"] == round(size["cssW"] * 2) and size["h"] == round(size["cssH"] * 2)

        # Calibration pulse of the first row: 1 mV at 10 mm/mV = 10 mm = 10 x 96/25.4 CSS px = 75.6 device px.
        # Measured between the centres of the drawn baseline (before the rise) and the pulse's top.
        pulse = page.evaluate(f"fetch('/api/ecgs/{uid}/layout').then(r => r.json()).then(j => j.calibration[0])")
        (x_start, base_y), (rise_x, _), _, (top_end_x, top_y) = pulse[0], pulse[1], pulse[2], pulse[3]
        k = geo["pxPerMm"] * geo["dpr"]
        column_js = """([x, y0, y1]) => {
            const c = document.getElementById('ecg-canvas');
            const img = c.getContext('2d').getImageData(Math.round(x), y0, 1, y1 - y0).data;
            let w = 0, s = 0;
            for (let i = 0; i < img.length / 4; i++) {
                const d = 255 - (img[4 * i] + img[4 * i + 1] + img[4 * i + 2]) / 3;
                if (img[4 * i] < 140 && img[4 * i + 1] < 140) { w += d; s += d * (y0 + i + 0.5); }
            }
            return w ? s / w : null; }"""
        lo = int((top_y - geo["originY"] - 3) * k)
        hi = int((base_y - geo["originY"] + 3) * k)
        baseline_px = page.evaluate(column_js, [((x_start + rise_x) / 2 - geo["originX"]) * k, lo, hi])
        top_px = page.evaluate(column_js, [((rise_x + top_end_x) / 2 - geo["originX"]) * k, lo, hi])
        assert baseline_px - top_px == pytest.approx(10 * CSS_PX_PER_MM * 2, abs=1.0)

        # Calipers on the rhythm strip: 1.000 s and 1 mV apart.
        strip = next(p for p in geo["panels"] if p["row"] == max(q["row"] for q in geo["panels"]))
        rect = page.evaluate("(() => { const r = document.getElementById('caliper-canvas')"
                             ".getBoundingClientRect(); return {left: r.left, top: r.top}; })()")

        def to_css(x_mm: float, y_mm: float) -> tuple[float, float]:
            return (rect["left"] + (x_mm - geo["originX"]) * geo["pxPerMm"],
                    rect["top"] + (y_mm - geo["originY"]) * geo["pxPerMm"])

        x1, y1 = to_css(strip["x"] + (1.0 - strip["t0_s"]) * geo["speed"], strip["baseline_y"])
        x2, y2 = to_css(strip["x"] + (2.0 - strip["t0_s"]) * geo["speed"], strip["baseline_y"] - geo["gain"])
        assert y1 < TABLET["height"], "the rhythm strip must be on screen for the pointer"
        page.mouse.move(x1, y1)
        page.mouse.down()
        page.mouse.move(x2, y2, steps=8)
        page.mouse.up()
        readout = page.locator("#caliper-readout")
        one_px_ms = 1000 / (geo["pxPerMm"] * geo["speed"])
        one_px_uv = 1000 / (geo["pxPerMm"] * geo["gain"])
        assert float(readout.get_attribute("data-ms")) == pytest.approx(1000.0, abs=one_px_ms + 0.5)
        assert float(readout.get_attribute("data-uv")) == pytest.approx(1000.0, abs=one_px_uv + 0.5)
        assert "ms" in readout.inner_text() and "µV" in readout.inner_text()
        page.screenshot(path=str(_shots(tmp_path) / "ecg_view.png"))

        # The prior ECG's median beats, on demand.
        assert page.locator("#c-prior").is_enabled()
        page.check("#c-prior")
        page.wait_for_selector("#ecg-canvas[data-ready=overlay]", timeout=15_000)
        page.screenshot(path=str(_shots(tmp_path) / "ecg_overlay.png"))
        href = page.get_attribute("#pdf-link", "href")
        assert href.startswith(f"/api/ecgs/{uid}/pdf?") and "prior=1" in href
    finally:
        context.close()
