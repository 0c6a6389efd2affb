"""Synthetic recordings with known signals, and small SVG / PDF readers for the render tests."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from dicom_ecg_node.waveform.model import Channel, CodedConcept, Measurement, MultiplexGroup, Recording

SVG_NS = {"s": "http://www.w3.org/2000/svg"}
CODES = {"I": "5.6.3-9-1", "II": "5.6.3-9-2", "III": "5.6.3-9-61", "aVR": "5.6.3-9-62", "aVL": "5.6.3-9-63",
         "aVF": "5.6.3-9-64", "V1": "5.6.3-9-3", "V2": "5.6.3-9-4", "V3": "5.6.3-9-5", "V4": "5.6.3-9-6",
         "V5": "5.6.3-9-7", "V6": "5.6.3-9-8"}
LEADS = list(CODES)
PATIENT_ID = "RENDER-4711"


def channel(label: str, units: str | None = "uV", coded: bool = True) -> Channel:
    source = CodedConcept(CODES[label], "SCPECG", f"Lead {label}") if coded and label in CODES else None
    return Channel(label=label, source=source, units=units, sensitivity=1.0, correction_factor=1.0, baseline=0.0,
                   skew_s=0.0, bits_stored=16, filter_low_hz=0.05, filter_high_hz=150.0, notch_hz=50.0)


def group(signals_mv: dict[str, np.ndarray], fs: float, label: str = "RHYTHM", units: str = "uV",
          coded: bool = True, index: int = 0) -> MultiplexGroup:
    """A group whose channel values are ``signals_mv`` (mV), stored in ``units``."""
    factor = {"uV": 1000.0, "mV": 1.0}[units]
    chans = [channel(name, units, coded) for name in signals_mv]
    samples = np.column_stack([np.asarray(v, dtype=np.float64) * factor for v in signals_mv.values()])
    return MultiplexGroup(index=index, label=label, sampling_frequency=fs, n_samples=samples.shape[0],
                          channels=chans, raw=np.round(samples).astype(np.int32), samples=samples,
                          start=datetime(2026, 1, 15, 9, 30, tzinfo=UTC))


def recording(groups: list[MultiplexGroup], patient_id: str = PATIENT_ID, **kw: object) -> Recording:
    values: dict[str, object] = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.9.1.1", "sop_instance_uid": "1.2.3.4.5.6",
        "study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4", "patient_id": patient_id,
        "patient_name": "TEST^RENDER", "acquisition_datetime": datetime(2026, 1, 15, 9, 30, tzinfo=UTC),
        "patient_birth_date": "19700101", "patient_sex": "F", "manufacturer": "ACME", "model_name": "Cart-1",
    }
    values.update(kw)
    return Recording(groups=groups, **values)  # type: ignore[arg-type]


def twelve_lead(fn: Callable[[str, np.ndarray], np.ndarray], fs: float = 500.0, seconds: float = 10.0,
                units: str = "uV", **kw: object) -> Recording:
    """A 12-lead recording whose lead ``name`` carries ``fn(name, t)`` mV."""
    t = np.arange(round(fs * seconds)) / fs
    return recording([group({name: fn(name, t) for name in LEADS}, fs, units=units)], **kw)


def cart_measurements() -> list[Measurement]:
    def m(code: str, meaning: str, value: float, units: str) -> Measurement:
        return Measurement(CodedConcept(code, "SCPECG", meaning), value, units, ((1, 0),))

    return [m("5.10.2.1-3", "RR Interval", 1000.0, "ms"), m("5.13.5-7", "PR Interval", 160.0, "ms"),
            m("5.13.5-9", "QRS Duration", 90.0, "ms"), m("5.13.5-11", "QT Interval", 400.0, "ms"),
            m("5.10.2.5-5", "QTc Interval", 410.0, "ms"), m("5.10.3-13", "QRS Axis", 45.0, "deg"),
            # The ECG Toolkit's mislabelled T axis: the code decides, not the meaning.
            m("5.10.3-15", "QRS Axis", 30.0, "deg")]


# ------------------------------------------------------------------------------------------------ SVG


def parse_svg(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


def svg_points(el: ET.Element) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in el.attrib["points"].split()])


def svg_polylines(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter("{http://www.w3.org/2000/svg}polyline") if el.attrib.get("class") == cls]


def svg_texts(root: ET.Element, cls: str | None = None) -> list[ET.Element]:
    return [el for el in root.iter("{http://www.w3.org/2000/svg}text") if cls is None or el.attrib["class"] == cls]


def svg_grid_lines(root: ET.Element, gid: str) -> tuple[list[float], list[float]]:
    """x of vertical lines and y of horizontal lines in ``<g id=gid>``."""
    g = root.find(f".//s:g[@id='{gid}']", SVG_NS)
    xs, ys = [], []
    for line in g.iter("{http://www.w3.org/2000/svg}line"):
        x1, y1, x2, y2 = (float(line.attrib[k]) for k in ("x1", "y1", "x2", "y2"))
        if x1 == x2:
            xs.append(x1)
        else:
            assert y1 == y2
            ys.append(y1)
    return sorted(xs), sorted(ys)


# ------------------------------------------------------------------------------------------------ PDF


def pdf_streams(data: bytes) -> list[bytes]:
    """Every stream's content, inflated when FlateDecode."""
    out = []
    for m in re.finditer(rb"<<(.*?)>>\s*stream\r?\n", data, re.S):
        start = m.end()
        end = data.index(b"endstream", start)
        raw = data[start:end].rstrip(b"\r\n")
        if b"ASCII85Decode" in m.group(1):  # reportlab wraps compressed streams in ASCII85
            raw = base64.a85decode(raw.strip().removesuffix(b"~>"))
        if b"FlateDecode" in m.group(1):
            raw = zlib.decompress(raw)
        out.append(raw)
    return out


_NUM = rb"-?\d+(?:\.\d+)?"


def pdf_subpaths(content: bytes) -> list[np.ndarray]:
    """Subpaths of ``x y m (x y l)*`` sequences in a content stream (user-space coordinates)."""
    paths: list[list[tuple[float, float]]] = []
    for m in re.finditer(rb"(" + _NUM + rb") (" + _NUM + rb") ([ml])\b", content):
        x, y, op = float(m.group(1)), float(m.group(2)), m.group(3)
        if op == b"m" or not paths:
            paths.append([(x, y)])
        else:
            paths[-1].append((x, y))
    return [np.array(p) for p in paths]
