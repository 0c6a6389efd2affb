"""Helpers shared by the whole suite: sample files (ours and ../shared's), free loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

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
