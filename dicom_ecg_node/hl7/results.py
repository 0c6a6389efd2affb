"""ORU^R01 results (HL7 v2.5.1 7.3.1): one stored ECG as MSH, PID, ORC, OBR and OBX segments.

OBX value types (v2.5.1 7.4.2, table 0125)
    * ``NM`` each measurement with its UCUM unit (OBX-6 ``unit^unit^UCUM``): the cart's (as catalogued, with the
      cart's code) and the node's own (LOINC codes: 8867-4 heart rate, 8625-6 PR, 8633-0 QRS, 8634-8 QT, 8636-3
      QTc) when the analysis has run;
    * ``TX`` the node's statements (analysis notes), ``ST`` each serial-comparison change flag;
    * ``ED`` the rendered PDF printout, base64 (``ECGNODE^AP^PDF^Base64^...``), when rendering succeeds.

The message is UTF-8 (MSH-18 ``UNICODE UTF-8``).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.errors import EcgNodeError, NotFoundError
from dicom_ecg_node.hl7.messages import Header, escape

log = logging.getLogger("dicom_ecg_node.hl7")

_H = Header(charset="UNICODE UTF-8")
#: The node's own measurements: analysis field → (LOINC code, name, UCUM unit).
NODE_MEASUREMENTS: dict[str, tuple[str, str, str]] = {
    "heart_rate_bpm": ("8867-4", "Heart rate", "/min"),
    "pr_ms": ("8625-6", "P-R interval", "ms"),
    "qrs_ms": ("8633-0", "QRS duration", "ms"),
    "qt_ms": ("8634-8", "Q-T interval", "ms"),
    "qtc_ms": ("8636-3", "Q-T interval corrected", "ms"),
}


@dataclass(frozen=True, slots=True)
class BuiltResult:
    """An ORU^R01 ready to send: its MSH-10 and text."""

    control_id: str
    text: str


def _e(value: Any) -> str:
    return "" if value is None else escape(str(value), _H)


def _xpn(name: str | None) -> str:
    """A DICOM PN (alphabetic group) as an HL7 XPN: prefix and suffix swap places, components escaped."""
    if not name:
        return ""
    comps = [*name.split("=")[0].split("^"), "", "", "", "", ""][:5]
    family, given, middle, prefix, suffix = (_e(c) for c in comps)
    return "^".join([family, given, middle, suffix, prefix]).rstrip("^")


def _num(value: float) -> str:
    return f"{value:.6g}"


def build_oru(catalog: Catalog, data_dir: Path, sop_instance_uid: str, *, own_app: str = "ECGNODE",
              receiver: str = "", with_pdf: bool = True) -> BuiltResult:
    """Build the ORU^R01 of one stored ECG from the catalog (current patient values: merges included).

    Parameters
    ----------
    catalog : Catalog
        The node's catalog.
    data_dir : Path
        The data directory (archive paths are relative to it), to render the PDF.
    sop_instance_uid : str
        The ECG.
    own_app : str
        MSH-3 sending application.
    receiver : str
        MSH-5 receiving application.
    with_pdf : bool
        Render and embed the PDF printout (skipped, with a warning in the log, when rendering fails).

    Raises
    ------
    NotFoundError
        The instance is not in the catalog.
    """
    m = catalog.models
    detail = catalog.get_instance(sop_instance_uid)
    if detail is None:
        raise NotFoundError(f"SOP Instance UID {sop_instance_uid} is not in the catalog")
    s = detail.summary
    P, S = m.Patient, m.Study  # noqa: N806
    with catalog._connection():
        row = (S.select(S.accession_number, P.patient_id, P.issuer, P.patient_name, P.birth_date, P.sex)
               .join(P, on=(S.patient == P.id)).where(S.study_instance_uid == s.study_instance_uid).dicts().first())
        order = None
        if row and row["accession_number"] and m.WorklistEntry is not None:
            W = m.WorklistEntry  # noqa: N806
            order = W.select(W.placer_order, W.filler_order).where(
                W.accession_number == row["accession_number"]).dicts().first()
    row = row or {"accession_number": None, "patient_id": s.patient_id, "issuer": "", "patient_name": None,
                  "birth_date": None, "sex": None}
    control_id = hl7.generate_message_control_id()
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "+0000"
    when = (s.acquisition_utc.strftime("%Y%m%d%H%M%S") + "+0000") if s.acquisition_utc else ""
    lines = [
        "|".join(["MSH", "^~\\&", _e(own_app), "", _e(receiver), "", now, "", "ORU^R01^ORU_R01", control_id, "P",
                  "2.5.1", "", "", "", "", "", "UNICODE UTF-8"]),
        "|".join(["PID", "1", "", f"{_e(row['patient_id'])}^^^{_e(row['issuer'])}^MR", "",
                  _xpn(row["patient_name"]), "", _e(row["birth_date"]), _e(row["sex"])]),
    ]
    placer = _e(order["placer_order"]) if order and order["placer_order"] else ""
    filler = _e(row["accession_number"] or s.study_instance_uid)
    lines.append("|".join(["ORC", "RE", placer, filler, "", "CM"]))
    lines.append("|".join(["OBR", "1", placer, filler, "11524-6^EKG study^LN", "", "", when, "", "", "", "", "", "",
                           "", "", "", "", _e(row["accession_number"]), "", "", "", now, "", "", "F"]))
    obx: list[list[str]] = []
    for c in detail.measurements:
        code = f"{_e(c.code_value)}^{_e(c.code_meaning)}^{_e(c.coding_scheme)}"
        unit = f"{_e(c.units)}^{_e(c.units)}^UCUM" if c.units else ""
        obx.append(["NM", code, "cart", _num(c.value), unit])
    analysis = _analysis(catalog, sop_instance_uid)
    if analysis is not None:
        for fld, (loinc, name, unit) in NODE_MEASUREMENTS.items():
            value = analysis.measurements.get(fld)
            if isinstance(value, (int, float)):
                obx.append(["NM", f"{loinc}^{name}^LN", "node", _num(float(value)), f"{unit}^{unit}^UCUM"])
        for note in analysis.notes:
            obx.append(["TX", "STATEMENT^ECG statement^L", "node", _e(note), ""])
        for flag in analysis.flags:
            text = f"{flag.rule}: {flag.detail}" if flag.detail else flag.rule
            obx.append(["ST", "CHANGE^Serial ECG change^L", "node", _e(text), ""])
    if with_pdf:
        pdf = _pdf(data_dir / s.path, analysis)
        if pdf is not None:
            obx.append(["ED", "PDF^ECG printout^L", "", f"{_e(own_app)}^AP^PDF^Base64^"
                        + base64.b64encode(pdf).decode("ascii"), ""])
    for n, (vtype, code, sub_id, value, unit) in enumerate(obx, 1):
        lines.append("|".join(["OBX", str(n), vtype, code, sub_id, value, unit, "", "", "", "", "F", "", "", when]))
    return BuiltResult(control_id, "\r".join(lines) + "\r")


def _analysis(catalog: Catalog, sop_instance_uid: str) -> Any:
    """The node's own analysis of the ECG when the analysis tables exist and it has run, else ``None``."""
    if getattr(catalog.models, "EcgAnalysis", None) is None:
        return None
    try:
        from dicom_ecg_node.catalog.analysis import get_analysis
    except ImportError:
        return None
    try:
        row = get_analysis(catalog, sop_instance_uid)
    except EcgNodeError as exc:
        log.warning("analysis of %s not read for the ORU: %s", sop_instance_uid, exc)
        return None
    return row if row is not None and row.status in ("measured", "done") else None


def _pdf(path: Path, analysis: Any) -> bytes | None:
    """The standard printout as PDF, or ``None`` (logged) when it cannot be rendered."""
    try:
        import pydicom

        from dicom_ecg_node.render.layout import layout_ecg
        from dicom_ecg_node.render.pdf import to_pdf
        from dicom_ecg_node.waveform import decode

        recording = decode(pydicom.dcmread(path))
        measurements = analysis.measurements if analysis is not None else None
        node = _Measurements(measurements) if measurements else None
        return to_pdf(layout_ecg(recording, node_measurements=node))
    except (EcgNodeError, OSError, ValueError, ImportError) as exc:
        log.warning("no PDF in the ORU for %s: %s", path.name, exc)
        return None


class _Measurements:
    """Attribute access to an analysis' measurement dict, as layout_ecg reads it."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        return self._values.get(name)
