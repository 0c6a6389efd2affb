"""Fast reads of element values from pydicom datasets, by tag.

pydicom converts a raw element into a typed value on first access (charset handling, DSfloat/IS objects,
MultiValue); for the hundreds of small numeric and code elements of a waveform object (channel definitions,
annotation items) that conversion costs more than decoding the samples. These helpers read raw values directly
when that is safe (numbers, ASCII text without ISO 2022 escapes) and fall back to pydicom otherwise.

They accept a pydicom :class:`~pydicom.dataset.Dataset` or a :class:`~dicom_ecg_node.waveform._fastread.FastItem`;
both go through the same raw readers (:func:`_raw_text`, :func:`_raw_numbers`) and, where those decline, through
pydicom's converter, so the two give the same values.
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicom_ecg_node.waveform._fastread import FastItem, LazyItems

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


_CONVERT: Any = object()  # sentinel: the raw reader declines, pydicom must convert the value


def _raw_text(vr: str, raw: bytes) -> Any:
    # ASCII without escapes decodes the same in every character set (PS3.5 6.1.2.3). bytes.find, not ``in``: for
    # a bytes operand ``in`` first tries it as an integer and formats the TypeError it gets (twice the time).
    if raw.isascii() and raw.find(b"\x1b") < 0:
        if vr == "PN":
            return person_name_text(raw)
        s = raw.decode("ascii")
        s = s.rstrip(" \x00") if vr in _TEXT_VRS else s.split("\\", 1)[0].strip(" \x00")
        return s or None
    return _CONVERT


def person_name_text(raw: bytes) -> Any:
    """``str()`` of the PersonName pydicom makes of a single ASCII PN value (``None`` when empty).

    pydicom keeps leading spaces and drops trailing empty component groups (``"DOE^JANE="`` is ``"DOE^JANE"``);
    a value with a component group separator, a second value or an escape is left to pydicom (``_CONVERT``).
    """
    if raw.find(b"=") >= 0 or raw.find(b"\\") >= 0 or raw.find(b"\x1b") >= 0 or not raw.isascii():
        return _CONVERT
    return raw.decode("ascii").rstrip(" \x00") or None


def _first_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or (hasattr(value, "__getitem__") and not isinstance(value, str)):
        value = value[0] if len(value) else None
    return None if value is None or str(value) == "" else str(value)


def text(ds: Dataset | FastItem, tag: int) -> str | None:
    """First value of a string element as ``str`` (``None`` when absent or empty); PN goes through pydicom."""
    if type(ds) is FastItem:
        element = ds.elements.get(tag)
        if element is None:
            return None
        s = _raw_text(element[0], element[1])
        return _first_text(ds.convert(tag)) if s is _CONVERT else s
    elem, value = _raw(ds, tag)  # type: ignore[arg-type]
    if elem is not None:
        s = _raw_text(_vr(elem), elem.value)
        if s is not _CONVERT:
            return s  # type: ignore[no-any-return]
        value = ds[tag].value  # type: ignore[index]
    return _first_text(value)


def _raw_numbers(vr: str, raw: bytes, little: bool) -> Any:
    if vr in ("DS", "IS"):
        kind = float if vr == "DS" else int
        if raw.find(b"\\") < 0:  # the common single value, same rules as below without the lists
            single = raw.strip(b" \x00")
            if not single:
                return ()
            try:
                return (kind(single),)
            except ValueError:
                return (float(single),)
        parts = [p.strip(b" \x00") for p in raw.split(b"\\")]
        try:
            return tuple(kind(p) for p in parts if p)  # type: ignore[operator]
        except ValueError:
            return tuple(float(p) for p in parts if p)
    if vr in _INT_FORMATS:
        size, signed = _INT_FORMATS[vr]
        order = "little" if little else "big"
        if len(raw) == size:
            return (int.from_bytes(raw, order, signed=signed),)
        return tuple(int.from_bytes(raw[i:i + size], order, signed=signed)
                     for i in range(0, len(raw) - size + 1, size))
    return _CONVERT


def _all_numbers(value: Any) -> tuple[float, ...] | tuple[int, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str | bytes | int | float):
        return (value,)  # type: ignore[return-value]
    return tuple(value)


def numbers(ds: Dataset | FastItem, tag: int) -> tuple[float, ...] | tuple[int, ...]:
    """Every value of a numeric element (DS, IS, US, UL...), ``()`` when absent or empty."""
    if type(ds) is FastItem:
        element = ds.elements.get(tag)
        if element is None:
            return ()
        values = _raw_numbers(element[0], element[1], ds.little)
        return _all_numbers(ds.convert(tag)) if values is _CONVERT else values  # type: ignore[no-any-return]
    elem, value = _raw(ds, tag)  # type: ignore[arg-type]
    if elem is not None:
        values = _raw_numbers(_vr(elem), elem.value, elem.is_little_endian)
        if values is not _CONVERT:
            return values  # type: ignore[no-any-return]
        value = ds[tag].value  # type: ignore[index]
    return _all_numbers(value)


def number(ds: Dataset | FastItem, tag: int) -> float | None:
    """First value of a numeric element as a Python number, ``None`` when absent or empty."""
    values = numbers(ds, tag)
    return values[0] if values else None


def sequence(ds: Dataset | FastItem, tag: int) -> list[Any]:
    """Items of a sequence element (pydicom datasets or fast items), ``[]`` when absent."""
    if type(ds) is FastItem:
        element = ds.elements.get(tag)
        if element is None or not element[1]:
            return []
        value = element[1]
        return list(value.items() if type(value) is LazyItems else value)
    if tag not in ds._dict:  # type: ignore[union-attr]
        return []
    value = ds[tag].value  # type: ignore[index]
    return list(value) if value else []
