"""Root fixtures. Plain helpers live in ``tests/helpers.py`` (``tests/`` is on ``sys.path`` via setup.cfg)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import RunningNode, make_config


@pytest.fixture(autouse=True)
def lean_archives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes and commands started by a test (CLI, subprocess) make no archive fan-out ahead.

    A full fan-out is 4,352 folders (17 MB); made by every test's data directory it filled this machine's inodes.
    The stores then make their folders as they need them, a path of the product in its own right;
    ``test_archive_fan_out_is_created_once_and_used`` covers the default.
    """
    monkeypatch.setenv("ECG_NODE_PREPARE_ARCHIVE", "false")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator:
    started: list[RunningNode] = []

    def start(**overrides: object) -> RunningNode:
        config = make_config(tmp_path, **overrides)
        from dicom_ecg_node.net.server import DicomNode
        from dicom_ecg_node.services.ingest import IngestService

        ingest = IngestService.open(config)
        node = DicomNode(config, ingest)
        node.start()
        running = RunningNode(config, node, ingest)
        started.append(running)
        return running

    yield start
    for running in started:
        running.node.stop(grace_s=5)
        running.ingest.close()


@pytest.fixture
def node(node_factory) -> RunningNode:
    return node_factory()


