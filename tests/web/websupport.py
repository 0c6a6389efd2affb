"""Helpers of the web viewer tests (imported by name, so the module name is unique): an HTTP client, a
synthetic ECG factory, the running node with its web server, polling."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER, PASSWORD = "alice", "correct horse battery"


def synthetic_ecg(patient_id: str = "WEB0001", *, minutes: int = 0, **kwargs: Any) -> bytes:
    """A synthetic 12-lead ECG (60 bpm, 500 Hz, median beats) as Part 10 bytes, ``minutes`` after a fixed time."""
    from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

    when = datetime(2026, 3, 2, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    values: dict[str, Any] = {"patient_id": patient_id, "heart_rate_bpm": 60.0, "include_median": True,
                              "acquisition_datetime": when, "seed": 7}
    values.update(kwargs)
    return ecg_to_bytes(synthesize_ecg(**values))


@dataclass
class Response:
    """A finished HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes
    set_cookies: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A minimal cookie-keeping HTTP client on ``http.client`` (no redirects followed; httpx is not installed)."""

    def __init__(self, host: str, port: int, ssl_context: Any = None) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context  # HTTPS when given
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.ssl_context)
            if self.ssl_context is not None else http.client.HTTPConnection(self.host, self.port, timeout=30))
        try:
            hdrs = dict(headers or {})
            if self.cookies:
                hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            set_cookies = resp.headers.get_all("set-cookie") or []
            for raw in set_cookies:
                jar = SimpleCookie()
                jar.load(raw)
                for name, morsel in jar.items():
                    if morsel.value in ("", "null") or morsel["expires"].startswith("Thu, 01 Jan 1970"):
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, set_cookies)
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post_form(self, path: str, fields: dict[str, str]) -> Response:
        return self.request("POST", path, body=urllib.parse.urlencode(fields).encode(),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})

    def csrf_from_login_page(self) -> str:
        page = self.get("/login").body.decode()
        marker = 'name="csrf_token" value="'
        start = page.index(marker) + len(marker)
        return page[start:page.index('"', start)]

    def login(self, user: str = USER, password: str = PASSWORD) -> Response:
        return self.post_form("/login", {"csrf_token": self.csrf_from_login_page(), "username": user,
                                         "password": password, "next": "/"})

    def csrf(self) -> str:
        return str(self.get("/api/me").json()["csrf_token"])


@dataclass
class WebNode:
    """A running node (DICOM listener) with its web viewer."""

    config: Any
    node: Any
    ingest: Any
    hub: Any
    web: Any

    @property
    def base_url(self) -> str:
        return self.web.url.rstrip("/")

    def client(self, ssl_context: Any = None) -> Client:
        host, port = self.web.address
        return Client(host, port, ssl_context)

    def store(self, data: bytes) -> Any:
        return self.ingest.store(data, sender_ae="TESTCART", sender_address="127.0.0.1")


def verifier(catalog: Any) -> Any:
    """The node's real user check with a test user, or a fixed pair while services.security is absent."""
    try:
        from dicom_ecg_node.services.security import UserService
    except ImportError:
        return lambda user, password: (user, password) == (USER, PASSWORD)
    users = UserService(catalog)
    users.add(USER, PASSWORD)
    from dicom_ecg_node.web.server import node_user_verifier

    return node_user_verifier(catalog)



def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        event.wait(interval)
    return bool(predicate())
