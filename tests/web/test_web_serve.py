"""The web viewer starts and stops with the node (``serve --http-port``), in the node's own process."""

from __future__ import annotations

import http.client
import threading

from helpers import free_port, make_config


def test_serve_in_process_runs_http_with_the_node_and_stops_with_it(tmp_path):
    from dicom_ecg_node.net.workers import serve_in_process

    http_port = free_port()
    config = make_config(tmp_path, http_port=http_port, accept_unknown=True, analysis="off")
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=serve_in_process, args=(config, stop), kwargs={"ready": ready})
    runner.start()
    try:
        assert ready.wait(30)
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("GET", "/api/ecgs")
        resp = conn.getresponse()
        assert resp.status == 401  # served, and closed to anyone not logged in
        conn.close()
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    probe = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
    try:
        probe.request("GET", "/login")
        refused = False
    except OSError:
        refused = True
    finally:
        probe.close()
    assert refused
