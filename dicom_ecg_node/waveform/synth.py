"""Synthetic 12-lead ECG writer (placeholder: being written)."""
from __future__ import annotations

from typing import Any


def synthesize_ecg(**kwargs: Any) -> Any:  # pragma: no cover - placeholder
    raise NotImplementedError
