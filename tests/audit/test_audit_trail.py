"""The audit trail: JSON lines with UTC timestamps, filters, RFC 5424 syslog over UDP and TCP, the CLI."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from dicom_ecg_node.cli import main
from dicom_ecg_node.errors import ConfigError
from dicom_ecg_node.services.audit import AuditLog, parse_since, read_events


def test_events_are_json_lines_with_utc_timestamps(tmp_path):
    with AuditLog(tmp_path, node="ECGNODE", fsync_interval=0) as audit:
        audit.record("store", ae="CART1", address="10.1.2.3:4000", patient_ids=["P1", "P1"],
                     study_uids=["1.2.3"], sop_instance_uids=["1.2.3.4"])
        audit.record("association", outcome="refused", ae="X", reason="unknown-ae")
    files = list(tmp_path.glob("audit-*.jsonl"))
    assert len(files) == 1 and (files[0].stat().st_mode & 0o777) == 0o600
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [e["event"] for e in lines] == ["store", "association"]
    assert lines[0]["patient_ids"] == ["P1"] and lines[0]["node"] == "ECGNODE"
    ts = datetime.fromisoformat(lines[0]["time"].replace("Z", "+00:00"))
    assert lines[0]["time"].endswith("Z") and abs(ts - datetime.now(UTC)) < timedelta(minutes=1)
    assert files[0].name == f"audit-{ts.date().isoformat()}.jsonl"


def test_appends_never_rewrite(tmp_path):
    AuditLog(tmp_path).record("admin", detail={"action": "a"})
    with AuditLog(tmp_path) as second:  # another process or a restart appends to the same day's file
        second.record("admin", detail={"action": "b"})
    assert [e["detail"]["action"] for e in read_events(tmp_path)] == ["a", "b"]


def test_filters_patient_ae_since_event(tmp_path):
    with AuditLog(tmp_path) as audit:
        audit.record("store", ae="CART1", patient_ids=["P1"])
        audit.record("query", ae="VIEWER", detail={"keys": {"PatientID": "P1"}, "answers": 0})
        audit.record("retrieve", ae="VIEWER", patient_ids=["P2"], detail={"destination": "PACS"})
    assert [e["event"] for e in read_events(tmp_path, patient="P1")] == ["store", "query"]
    assert [e["event"] for e in read_events(tmp_path, ae="VIEWER")] == ["query", "retrieve"]
    assert [e["event"] for e in read_events(tmp_path, ae="PACS")] == ["retrieve"]
    assert list(read_events(tmp_path, since=datetime.now(UTC) + timedelta(hours=1))) == []
    assert len(list(read_events(tmp_path, since=parse_since("1h")))) == 3
    assert [e["event"] for e in read_events(tmp_path, event="store")] == ["store"]


def test_torn_last_line_is_skipped(tmp_path):
    with AuditLog(tmp_path) as audit:
        audit.record("store", ae="A")
    path = next(tmp_path.glob("audit-*.jsonl"))
    with path.open("a") as fh:
        fh.write('{"time": "2024')  # a crash in the middle of a write
    assert [e["ae"] for e in read_events(tmp_path)] == ["A"]


def test_parse_since():
    now = datetime(2024, 5, 2, 12, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2024, 5, 2, 10, tzinfo=UTC)
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00+02:00") == datetime(2024, 5, 1, 8, tzinfo=UTC)
    with pytest.raises(ConfigError):
        parse_since("yesterday")


def test_syslog_rfc5424_over_udp(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(10)
        port = collector.getsockname()[1]
        with AuditLog(tmp_path, syslog=f"udp://127.0.0.1:{port}") as audit:
            audit.record("association", outcome="refused", ae="STRANGER", reason="unknown-ae")
            data, _ = collector.recvfrom(65535)
    header, _, msg = data.partition(b" \xef\xbb\xbf")
    parts = header.decode().split(" ")
    assert parts[0] == "<84>1"  # facility 10 (security/authorization) * 8 + severity 4 (warning)
    assert parts[1].endswith("Z") and parts[3] == "ecg-node" and parts[5] == "association" and parts[6] == "-"
    assert json.loads(msg)["ae"] == "STRANGER"


def test_syslog_over_tcp_uses_octet_counting(tmp_path):
    received: list[bytes] = []
    got = threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            buf = b""
            while b" " not in buf or len(buf.partition(b" ")[2]) < int(buf.partition(b" ")[0]):
                chunk = self.request.recv(65535)
                if not chunk:
                    return
                buf += chunk
            received.append(buf)
            got.set()

    with socketserver.TCPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with AuditLog(tmp_path, syslog=f"tcp://127.0.0.1:{server.server_address[1]}") as audit:
                audit.record("store", ae="CART1", patient_ids=["P1"])
                assert got.wait(10)
        finally:
            server.shutdown()
    length, _, message = received[0].partition(b" ")
    assert int(length) == len(message) and message.startswith(b"<86>1 ")  # 10 * 8 + 6 informational


def test_unreachable_syslog_never_fails_the_record(tmp_path, caplog):
    with AuditLog(tmp_path, syslog="tcp://127.0.0.1:1") as audit:
        audit.record("store", ae="CART1")
    assert [e["ae"] for e in read_events(tmp_path)] == ["CART1"]
    assert any("syslog" in r.getMessage() for r in caplog.records)


def test_audit_cli_answers_who_saw_this_patient(tmp_path):
    data = tmp_path / "data"
    with AuditLog(data / "audit") as audit:
        audit.record("store", ae="CART1", patient_ids=["P1"])
        audit.record("query", ae="VIEWER", patient_ids=["P1"], detail={"answers": 1, "keys": {}})
        audit.record("retrieve", ae="VIEWER", patient_ids=["P2"], detail={"operation": "move",
                                                                          "destination": "PACS"})
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "--data-dir", str(data), "--patient", "P1"])
    assert result.exit_code == 0, result.output
    assert "CART1" in result.output and "VIEWER" in result.output and "PACS" not in result.output
    result = runner.invoke(main, ["audit", "--data-dir", str(data), "--ae", "VIEWER", "--json"])
    events = [json.loads(line) for line in result.output.splitlines()]
    assert [e["event"] for e in events] == ["query", "retrieve"]
    result = runner.invoke(main, ["audit", "--data-dir", str(data), "--since", "nonsense"])
    assert result.exit_code == 2 and "--since" in result.output


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "big"])
def test_store_subject_quick_scan_agrees_with_pydicom(syntax):
    import io

    import pydicom

    from dicom_ecg_node.services.audit import store_subject
    from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

    data = ecg_to_bytes(synthesize_ecg(patient_id="Pé-1", patient_name="Müller^Jörg", transfer_syntax=syntax))
    ds = pydicom.dcmread(io.BytesIO(data))
    assert store_subject(data) == (ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID)
    assert store_subject(b"not dicom") == (None, None, None)
