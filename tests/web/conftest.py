"""Fixtures of the web viewer tests: a real node with its web server on free loopback ports, and (for the few
browser tests) headless Debian Chromium driven by Playwright. Plain helpers live in ``websupport.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from websupport import CHROMIUM, CHROMIUM_ARGS, WebNode, verifier


@pytest.fixture
def web_node_factory(node_factory: Any) -> Iterator[Any]:
    started: list[WebNode] = []

    def start(**overrides: Any) -> WebNode:
        from dicom_ecg_node.services.events import EventHub
        from dicom_ecg_node.web.server import WebServer

        values: dict[str, Any] = {"http_port": 0, "accept_unknown": True, "analysis": "off"}
        values.update(overrides)
        running = node_factory(**values)
        hub = EventHub()
        running.ingest.listeners.append(hub.store_listener)
        web = WebServer(running.config, running.ingest.catalog, hub=hub,
                        verify_user=verifier(running.ingest.catalog))
        web.start()
        if not web.wait_started():
            raise RuntimeError("web server did not start")
        wn = WebNode(running.config, running.node, running.ingest, hub, web)
        started.append(wn)
        return wn

    yield start
    for wn in started:
        wn.web.stop()


@pytest.fixture
def web_node(web_node_factory: Any) -> WebNode:
    return web_node_factory()


# ------------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (scripts/test installs Debian's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (python) is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


