"""Storage commitment fixtures: nodes whose retry policy is set before they start, requesters (SCU and SCP)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import RunningNode, free_port, make_config
from pgserver import catalog_url, pg_server

from dicom_ecg_node.services.commitment import RetryPolicy

__all__ = ["catalog_url", "pg_server"]

#: Fast back-off for tests: a failed report is retried within a fraction of a second.
FAST_RETRY = RetryPolicy(base_s=0.1, factor=2.0, max_delay_s=0.3, max_attempts=1000)


@pytest.fixture
def commit_node_factory(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """Start nodes on ``tmp_path/data`` (the same data directory for every node of a test)."""
    started: list[RunningNode] = []

    def start(retry: RetryPolicy = FAST_RETRY, **overrides: object) -> RunningNode:
        from dicom_ecg_node.net.server import DicomNode
        from dicom_ecg_node.services.ingest import IngestService

        config = make_config(tmp_path, **overrides)
        ingest = IngestService.open(config)
        node = DicomNode(config, ingest)
        node.commitment.retry = retry  # before start: the first attempt already uses it
        node.start()
        running = RunningNode(config, node, ingest)
        started.append(running)
        return running

    yield start
    for running in started:
        running.node.stop(grace_s=5)
        running.ingest.close()


@dataclass
class ReportSCP:
    """A requester's own Storage Commitment SCU-side listener: accepts the node's report association."""

    aet: str
    port: int
    reports: list[tuple[int, Any, tuple[bool, bool]]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    server: Any = None

    def handle(self, event: Any) -> tuple[int, None]:
        cx = next(c for c in event.assoc.accepted_contexts if c.abstract_syntax == "1.2.840.10008.1.20.1")
        self.reports.append((int(event.event_type), event.event_information, (cx.as_scu, cx.as_scp)))
        self.arrived.set()
        return 0x0000, None

    def start(self) -> None:
        from pynetdicom import AE, evt

        ae = AE(ae_title=self.aet)
        # The node proposes SCU-role 0 / SCP-role 1 (PS3.7 D.3.3.4): accept it taking the SCP role.
        ae.add_supported_context("1.2.840.10008.1.20.1", scu_role=False, scp_role=True)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.handle)])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture
def report_scp() -> Iterator[Callable[..., ReportSCP]]:
    made: list[ReportSCP] = []

    def make(aet: str = "CART1", *, start: bool = True) -> ReportSCP:
        scp = ReportSCP(aet, free_port())
        if start:
            scp.start()
        made.append(scp)
        return scp

    yield make
    for scp in made:
        scp.stop()
