"""Decoding of DICOM waveform objects (placeholder: being written)."""
from __future__ import annotations

from typing import Any


def decode(source: Any, *, default_zone: Any = None) -> Any:  # pragma: no cover - placeholder
    raise NotImplementedError
