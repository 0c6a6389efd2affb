"""Retrieve fixtures: a node filled with synthetic ECGs, destination SCPs (pynetdicom and DCMTK), catalog URLs."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import dcmtk, free_port
from pgserver import catalog_url, pg_server

__all__ = ["catalog_url", "pg_server"]

from retrievesupport import T0, ecg_bytes, fill  # noqa: F401  (re-exported for the fixtures)


@dataclass
class StorageSCP:
    """A pynetdicom storage SCP standing in for a viewer / PACS: records what it receives."""

    aet: str
    port: int
    received: list[tuple[str, str, Any]] = field(default_factory=list)  # (uid, transfer syntax, dataset)
    refuse: set[str] = field(default_factory=set)
    first: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event | None = None
    delay_s: float = 0.0  # a slow destination: each store takes this long
    server: Any = None

    def handle(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        self.first.set()
        if self.gate is not None:
            self.gate.wait(20)
        time.sleep(self.delay_s)
        if uid in self.refuse:
            return 0xA700  # PS3.4 B.2.3 Refused: Out of resources
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append((uid, str(event.context.transfer_syntax), ds))
        return 0x0000


@pytest.fixture
def storage_scp() -> Iterator[Callable[..., StorageSCP]]:
    started: list[StorageSCP] = []

    def start(aet: str = "VIEWER", syntaxes: list[str] | None = None) -> StorageSCP:
        from pydicom.uid import (
            DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian,
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
        )
        from pynetdicom import AE, evt

        from dicom_ecg_node.waveform.sopclass import STORAGE_SOP_CLASSES

        ts = syntaxes or [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                          ExplicitVRBigEndian]
        scp = StorageSCP(aet, free_port())
        ae = AE(ae_title=aet)
        for uid in STORAGE_SOP_CLASSES:
            ae.add_supported_context(uid, ts)
        scp.server = ae.start_server(("127.0.0.1", scp.port), block=False,
                                     evt_handlers=[(evt.EVT_C_STORE, scp.handle)])
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.server.shutdown()


@dataclass
class DcmtkStoreSCP:
    aet: str
    port: int
    out: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture
def dcmtk_storescp(tmp_path: Path) -> Iterator[DcmtkStoreSCP]:
    """DCMTK storescp writing into a temp folder, as a C-MOVE destination; ready once it answers C-ECHO."""
    from dicom_ecg_node.net.scu import echo

    out = tmp_path / "storescp"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen([dcmtk("storescp"), "-aet", "STORESCP", "-od", str(out), str(port)],
                            env=dict(os.environ, TCP_NODELAY="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            echo("127.0.0.1", port, called_aet="STORESCP", timeout=2)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("storescp did not start") from None
            time.sleep(0.02)  # polling for readiness, not waiting a fixed time
    yield DcmtkStoreSCP("STORESCP", port, out, proc)
    proc.terminate()
    proc.wait(10)
