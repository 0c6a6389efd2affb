"""Helpers shared by the whole suite: sample files (ours and ../shared's), free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "sample_data"
SHARED_SAMPLE_DIR = ROOT.parent / "shared" / "sample_data" / "ecg"
DCMFX_DIR = SHARED_SAMPLE_DIR / "dcmfx"


def sample(rel: str) -> Path:
    """Path of a permissively licensed sample file shipped in ``sample_data/``."""
    return SAMPLE_DIR / rel


def dcmfx(name: str) -> Path:
    """Path of an AGPL DCMfx file in ``../shared``; skips the test (saying why) where that folder is absent."""
    path = DCMFX_DIR / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the AGPL-3.0 DCMfx test files stay in ../shared/sample_data and are not "
                    "copied into this project")
    return path


def all_samples() -> list[Path]:
    """Every DICOM file in ``sample_data/``."""
    return sorted(SAMPLE_DIR.rglob("*.dcm"))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def renumbered_copy(src: Path, dst: Path, **changes: object) -> Path:
    """Copy a sample file with fresh Study/Series/SOP Instance UIDs (and any attribute ``changes``), same syntax.

    Little endian syntaxes only (pydicom will not convert byte order on save).
    """
    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in changes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if "SOPClassUID" in changes and changes["SOPClassUID"] is not None:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.save_as(dst, enforce_file_format=True,
               implicit_vr=ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian, little_endian=True)
    return dst


@dataclass
class RunningNode:
    """A node started by the ``node`` fixture."""

    config: Any
    node: Any
    ingest: Any


    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.node.address[1]

    @property
    def aet(self) -> str:
        return self.config.aet


def make_config(tmp_path: Path, **overrides: object) -> Any:
    from dicom_ecg_node.config import load_config

    # accept_unknown: most tests call from ad-hoc AE titles; tests/security checks the refusing default explicitly.
    # No per-peer limit: every test peer is 127.0.0.1 (tests/security sets one explicitly).
    # No fan-out made ahead (see the ``lean_archives`` fixture in conftest.py).
    values: dict[str, object] = {"data_dir": tmp_path / "data", "host": "127.0.0.1", "port": 0, "aet": "ECGNODE",
                                 "accept_unknown": True, "max_associations_per_peer": 0, "prepare_archive": False}
    values.update(overrides)
    return load_config(environ={}, **values)



def dcmtk(tool: str) -> str:
    """Path of a DCMTK tool; skips (saying why) where DCMTK is not installed."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"DCMTK's {tool} is not installed (scripts/test installs it with apt-get install dcmtk)")
    return path


def run_dcmtk(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with TCP_NODELAY=1 (without it DCMTK waits on Nagle's algorithm)."""
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run([dcmtk(tool), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def start_node_process(data_dir: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``python -m dicom_ecg_node serve`` in a subprocess on 127.0.0.1:``port``; returns once it answers C-ECHO.

    Polls with C-ECHO (never a blind sleep); raises with the node's log if it exits or does not come up in 60 s.
    """
    import sys
    import time

    from dicom_ecg_node.net.scu import echo

    proc = subprocess.Popen(
        [sys.executable, "-m", "dicom_ecg_node", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--accept-unknown", *extra],  # test peers are not registered
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if echo("127.0.0.1", port, timeout=2) == 0:
                return proc
        except Exception:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"node did not answer C-ECHO within 60 s:\n{log.read_text()}")


def request_association(ae: Any, host: str, port: int, **kwargs: Any) -> Any:
    """``ae.associate(host, port, **kwargs)``, reporting an immediate rejection as a rejection.

    pynetdicom's requestor races a fast rejection: when its reactor has read the A-ASSOCIATE-RJ and closed the
    connection (PS3.8 AE-4) before the requesting thread checks that the connection is up, it reports an abort
    (seen about once in 150 immediate rejections under load). The PDUs received tell that apart from a real abort:
    only when the node's A-ASSOCIATE-RJ did arrive is the request made again (at most three times). The returned
    association's ``request_attempts`` says how many requests the node saw (each one audited, for instance).
    """
    from pynetdicom import evt
    from pynetdicom.pdu import A_ASSOCIATE_RJ

    handlers = list(kwargs.pop("evt_handlers", None) or [])
    assoc = None
    for attempt in range(1, 4):
        received: list[Any] = []
        assoc = ae.associate(host, port, evt_handlers=[*handlers, (evt.EVT_PDU_RECV, _record_pdu, [received])],
                             **kwargs)
        assoc.request_attempts = attempt
        if not (assoc.is_aborted and any(isinstance(pdu, A_ASSOCIATE_RJ) for pdu in received)):
            break
    return assoc


def _record_pdu(event: Any, received: list[Any]) -> None:
    received.append(event.pdu)


def sqlite_writer_state(database: str) -> tuple[bool, int]:
    """Seen from outside: whether the catalog's writer lock is free (another descriptor takes its ``flock`` at once)
    and how many instance rows are committed (another connection counts them)."""
    import fcntl
    import sqlite3

    lock = os.open(f"{database}-writer", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        free = True
    except BlockingIOError:
        free = False
    finally:
        os.close(lock)
    other = sqlite3.connect(database)
    try:
        return free, int(other.execute("SELECT COUNT(*) FROM instance").fetchone()[0])
    finally:
        other.close()
