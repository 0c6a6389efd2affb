"""The web viewer at the HTTP level, against a real uvicorn server: access control, sessions, CSRF, the API and
Server-Sent Events catch-up with Last-Event-ID."""

from __future__ import annotations

import http.client
import json
import threading

import numpy as np
import pytest
from websupport import PASSWORD, USER, synthetic_ecg


def test_unauthenticated_requests_get_only_the_login_page(web_node):
    web_node.store(synthetic_ecg())
    c = web_node.client()
    for path in ("/api/ecgs", "/api/openapi.json", "/api/events", "/api/patients/WEB0001/timeline"):
        r = c.get(path)
        assert r.status == 401, path
        assert r.json() == {"error": "login required"}
    for path in ("/", "/ecg/1.2.3", "/patients/WEB0001"):
        r = c.get(path)
        assert r.status == 303, path
        assert r.headers["location"].startswith("/login?next=")
        assert r.body == b""
    login = c.get("/login")
    assert login.status == 200 and b'id="login-form"' in login.body
    assert c.get("/static/app.css").status == 200  # the login page's own style carries no patient data
    assert c.post_form("/api/ecgs/1.2.3/review", {"reviewed": "1"}).status == 401


def test_login_sets_a_strict_httponly_session_and_logout_ends_it(web_node):
    c = web_node.client()
    assert c.get("/api/ecgs").status == 401
    token = c.csrf_from_login_page()
    wrong = c.post_form("/login", {"csrf_token": token, "username": USER, "password": "nope", "next": "/"})
    assert wrong.status == 401 and b"wrong password" in wrong.body
    ok = c.post_form("/login", {"csrf_token": c.csrf_from_login_page(), "username": USER, "password": PASSWORD,
                                "next": "/ecg/1.2.3"})
    assert ok.status == 303 and ok.headers["location"] == "/ecg/1.2.3"
    cookie = ok.set_cookies[-1].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # plain HTTP here
    assert c.get("/api/me").json()["user"] == USER
    assert c.get("/api/ecgs").status == 200
    page = c.get("/")
    assert page.status == 200 and b'id="logout"' in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    out = c.post_form("/logout", {"csrf_token": c.csrf()})
    assert out.status == 303 and out.headers["location"] == "/login"
    assert c.get("/api/ecgs").status == 401


def test_login_refuses_an_offsite_next_and_a_post_without_token(web_node):
    c = web_node.client()
    c.get("/login")
    assert c.post_form("/login", {"username": USER, "password": PASSWORD}).status == 403
    r = c.post_form("/login", {"csrf_token": c.csrf_from_login_page(), "username": USER, "password": PASSWORD,
                               "next": "//evil.example/"})
    assert r.status == 303 and r.headers["location"] == "/"


def test_csrf_token_is_required_on_every_post(web_node):
    uid = web_node.store(synthetic_ecg()).sop_instance_uid
    c = web_node.client()
    assert c.login().status == 303
    body = json.dumps({"reviewed": True}).encode()
    json_type = {"Content-Type": "application/json"}
    assert c.request("POST", f"/api/ecgs/{uid}/review", body=body, headers=json_type).status == 403
    bad = {**json_type, "X-CSRF-Token": "x" * 43}
    assert c.request("POST", f"/api/ecgs/{uid}/review", body=body, headers=bad).status == 403
    assert c.post_form("/logout", {}).status == 403  # a form without the field
    good = {**json_type, "X-CSRF-Token": c.csrf()}
    r = c.request("POST", f"/api/ecgs/{uid}/review", body=body, headers=good)
    assert r.status == 200 and r.json()["reviewed"] is True
    assert c.get("/api/ecgs?unreviewed=1").json()["items"] == []
    assert [i["sop_instance_uid"] for i in c.get("/api/ecgs").json()["items"]] == [uid]


def test_worklist_api_newest_first_with_filters_and_timeline_in_true_time_order(web_node):
    # Stored out of time order: the worklist follows arrival, the timeline the UTC acquisition time.
    late = web_node.store(synthetic_ecg("P-A", minutes=60)).sop_instance_uid
    early = web_node.store(synthetic_ecg("P-A", minutes=0)).sop_instance_uid
    other = web_node.store(synthetic_ecg("P-B", minutes=30)).sop_instance_uid
    c = web_node.client()
    c.login()
    items = c.get("/api/ecgs").json()["items"]
    assert [i["sop_instance_uid"] for i in items] == [other, early, late]
    first = items[0]
    assert first["patient"]["id"] == "P-B" and first["device"]["model"] == "SYNTH-12"
    assert first["measurements"]["cart"]["heart_rate_bpm"] == pytest.approx(60, abs=1)
    assert [i["sop_instance_uid"] for i in c.get("/api/ecgs?patient=P-A").json()["items"]] == [early, late]
    assert c.get("/api/ecgs?flagged=1").json()["items"] == []  # analysis is off in this node
    since = items[1]["id"]
    assert [i["sop_instance_uid"] for i in c.get(f"/api/ecgs?since={since}").json()["items"]] == [other]
    timeline = c.get("/api/patients/P-A/timeline").json()["items"]
    assert [i["sop_instance_uid"] for i in timeline] == [early, late]
    assert c.get(f"/api/ecgs/{late}").json()["prior"] == early
    assert c.get("/api/ecgs?limit=0").status == 400
    assert c.get("/api/ecgs/1.2.3.4").status == 404


def test_samples_are_float32_le_channel_major_microvolts(web_node):
    from dicom_ecg_node.waveform import decode

    data = synthetic_ecg()
    uid = web_node.store(data).sop_instance_uid
    rec = decode(data)
    c = web_node.client()
    c.login()
    detail = c.get(f"/api/ecgs/{uid}").json()
    g = detail["groups"][detail["rhythm_group"]]
    r = c.get(g["samples_url"])
    assert r.status == 200 and r.headers["content-type"] == "application/octet-stream"
    n_ch, n_s = int(r.headers["x-channels"]), int(r.headers["x-samples"])
    assert (n_ch, n_s) == (g["n_channels"], g["n_samples"])
    got = np.frombuffer(r.body, dtype="<f4").reshape(n_ch, n_s)
    group = rec.groups[g["index"]]
    factor = {"uV": 1.0, "mV": 1000.0}[group.channels[0].units]
    np.testing.assert_allclose(got, (group.samples * factor).T.astype(np.float32), rtol=1e-6, atol=1e-3)
    assert [ch["units"] for ch in g["channels"]] == ["uV"] * n_ch


def test_layout_geometry_and_pdf(web_node):
    uid = web_node.store(synthetic_ecg()).sop_instance_uid
    c = web_node.client()
    c.login()
    lay = c.get(f"/api/ecgs/{uid}/layout?gain=20&speed=50&layout=6x2").json()
    pulse = np.array(lay["calibration"][0])
    assert pulse[:, 1].max() - pulse[:, 1].min() == pytest.approx(20.0)  # 1 mV at 20 mm/mV
    assert {p["lead"] for p in lay["panels"]} >= {"I", "V6"} and all(p["channel"] is not None for p in lay["panels"])
    assert c.get(f"/api/ecgs/{uid}/layout?gain=7").status == 400
    pdf = c.get(f"/api/ecgs/{uid}/pdf")
    assert pdf.status == 200 and pdf.body.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"


def test_openapi_document_lists_the_api(web_node):
    c = web_node.client()
    c.login()
    doc = c.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/ecgs", "/api/ecgs/{uid}", "/api/ecgs/{uid}/groups/{index}/samples", "/api/ecgs/{uid}/pdf",
                 "/api/patients/{patient_id}/timeline", "/api/events"):
        assert path in doc["paths"]


def _read_events(port: int, cookies: str, *, last_event_id: str | None = None, want: int,
                 timeout: float = 10.0) -> list[tuple[str | None, str, dict]]:
    """Open /api/events, read until ``want`` 'ecg' events arrived, close; returns (id, event, data)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Cookie": cookies, "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    conn.request("GET", "/api/events", headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events: list[tuple[str | None, str, dict]] = []
    current: dict[str, str] = {}
    try:
        while sum(1 for e in events if e[1] == "ecg") < want:
            line = resp.readline().decode().rstrip("\r\n")
            if line == "":
                if "data" in current:
                    events.append((current.get("id"), current.get("event", "message"), json.loads(current["data"])))
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                current[name] = value[1:] if value.startswith(" ") else value
    finally:
        conn.close()
    return events


def test_sse_reconnect_with_last_event_id_replays_missed_ecgs(web_node):
    c = web_node.client()
    c.login()
    cookies = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    port = web_node.web.address[1]
    first = web_node.store(synthetic_ecg(minutes=1)).sop_instance_uid
    got = _read_events(port, cookies, last_event_id="0", want=1)
    ecg = [e for e in got if e[1] == "ecg"]
    assert [e[2]["sop_instance_uid"] for e in ecg] == [first]
    seen_id = ecg[0][0]
    assert seen_id == str(ecg[0][2]["id"])
    # The tablet is offline while two more ECGs arrive ...
    missed = [web_node.store(synthetic_ecg(minutes=m)).sop_instance_uid for m in (2, 3)]
    # ... and reconnects with the last id it saw: exactly the missed ones, in order.
    replay = [e for e in _read_events(port, cookies, last_event_id=seen_id, want=2) if e[1] == "ecg"]
    assert [e[2]["sop_instance_uid"] for e in replay] == missed
    assert int(replay[0][0]) > int(seen_id)


def test_sse_pushes_a_new_store_while_connected(web_node):
    c = web_node.client()
    c.login()
    cookies = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    result: list = []
    reader = threading.Thread(target=lambda: result.extend(
        _read_events(web_node.web.address[1], cookies, want=1)))
    reader.start()
    from websupport import wait_until

    assert wait_until(lambda: web_node.hub.subscriber_count > 0)
    uid = web_node.store(synthetic_ecg()).sop_instance_uid
    reader.join(10)
    assert [e[2]["sop_instance_uid"] for e in result if e[1] == "ecg"] == [uid]
    assert result[0][1] == "ready"


def test_open_access_needs_no_login_and_says_so_on_every_page(web_node_factory, caplog):
    wn = web_node_factory(http_open=True)
    wn.store(synthetic_ecg())
    c = wn.client()
    assert c.get("/api/ecgs").status == 200
    for path in ("/", "/patients/WEB0001"):
        page = c.get(path)
        assert page.status == 200 and b"OPEN ACCESS" in page.body and b"banner-open" in page.body
    assert c.get("/login").status == 303
    body = json.dumps({"reviewed": True}).encode()
    uid = c.get("/api/ecgs").json()["items"][0]["sop_instance_uid"]
    assert c.request("POST", f"/api/ecgs/{uid}/review", body=body,
                     headers={"Content-Type": "application/json"}).status == 403  # CSRF still applies
