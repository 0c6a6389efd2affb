"""Fast reads of element values from pydicom datasets, by tag.

pydicom converts a raw element into a typed value on first access (charset handling, DSfloat/IS objects,
MultiValue); for the hundreds of small numeric and code elements of a waveform object (channel definitions,
annotation items) that conversion costs more than decoding the samples. These helpers read raw values directly
when that is safe (numbers, ASCII text without ISO 2022 escapes) and fall back to pydicom otherwise.
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

_TEXT_VRS = frozenset({"ST", "LT", "UT"})  # leading spaces are significant (PS3.5 6.2)
_INT_FORMATS = {"US": (2, False), "SS": (2, True), "UL": (4, False), "SL": (4, True), "UV": (8, False),
                "SV": (8, True)}


def _raw(ds: Dataset, tag: int) -> tuple[RawDataElement | None, Any]:
    # Dataset._dict (tag -> raw or converted element) is what Dataset.get_item reads; going to it directly
    # skips a Tag() conversion per lookup, which dominates when most looked-up tags are absent.
    elem = ds._dict.get(tag)
    if elem is None:
        return None, None
    if isinstance(elem, RawDataElement) and elem.value is not None:
        return elem, None
    return None, elem.value


def _vr(elem: RawDataElement) -> str:
    vr = elem.VR
    if vr:
        return vr
    try:
        return dictionary_VR(elem.tag)
    except KeyError:
        return "UN"


def text(ds: Dataset, tag: int) -> str | None:
    """First value of a string element as ``str`` (``None`` when absent or empty); PN goes through pydicom."""
    elem, value = _raw(ds, tag)
    if elem is not None:
        vr = _vr(elem)
        raw: bytes = elem.value
        if vr != "PN" and raw.isascii() and b"\x1b" not in raw:
            s = raw.decode("ascii")
            s = s.rstrip(" \x00") if vr in _TEXT_VRS else s.split("\\", 1)[0].strip(" \x00")
            return s or None
        value = ds[tag].value
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or (hasattr(value, "__getitem__") and not isinstance(value, str)):
        value = value[0] if len(value) else None
    return None if value is None or str(value) == "" else str(value)


def numbers(ds: Dataset, tag: int) -> tuple[float, ...] | tuple[int, ...]:
    """Every value of a numeric element (DS, IS, US, UL...), ``()`` when absent or empty."""
    elem, value = _raw(ds, tag)
    if elem is not None:
        vr = _vr(elem)
        raw = elem.value
        if vr in ("DS", "IS"):
            parts = [p.strip(b" \x00") for p in raw.split(b"\\")]
            kind = float if vr == "DS" else int
            try:
                return tuple(kind(p) for p in parts if p)  # type: ignore[operator]
            except ValueError:
                return tuple(float(p) for p in parts if p)
        if vr in _INT_FORMATS:
            size, signed = _INT_FORMATS[vr]
            order = "little" if elem.is_little_endian else "big"
            return tuple(int.from_bytes(raw[i:i + size], order, signed=signed)
                         for i in range(0, len(raw) - size + 1, size))
        value = ds[tag].value
    if value is None or value == "":
        return ()
    if isinstance(value, str | bytes | int | float):
        return (value,)  # type: ignore[return-value]
    return tuple(value)


def number(ds: Dataset, tag: int) -> float | None:
    """First value of a numeric element as a Python number, ``None`` when absent or empty."""
    values = numbers(ds, tag)
    return values[0] if values else None


def sequence(ds: Dataset, tag: int) -> list[Dataset]:
    """Items of a sequence element, ``[]`` when absent."""
    if tag not in ds._dict:
        return []
    value = ds[tag].value
    return list(value) if value else []
