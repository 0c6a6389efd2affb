"""Lead identity for printing: map a channel to one of the twelve canonical lead names.

Carts label leads in many ways (``"Lead I (Einthoven)"``, ``"I"``, ``"MDC_ECG_LEAD_I"``...), so the Channel Source
code decides first (PS3.16 CID 3001 "ECG Leads": SCPECG ``5.6.3-9-n`` and MDC ``2:n`` codes), then the label.

Note for the lead: ``dicom_ecg_node.analysis`` has a similar normaliser written in parallel; the two should be
merged into one (probably in ``waveform/``) once both have landed.
"""

from __future__ import annotations

import re

from dicom_ecg_node.waveform.model import Channel, MultiplexGroup

#: The twelve standard leads in conventional order.
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# PS3.16 CID 3001: SCPECG code suffix / MDC term code -> lead. MDC codes also appear as the plain 32-bit number
# 2 * 65536 + n (131073 for lead I) and, for the lead's electric potential (MDC_ECG_ELEC_POTL_*), as n + 256
# (2:257, 131329 for lead I), as HL7 aECG writers use them.
_CODE_NUMBER_TO_LEAD: dict[int, str] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}
_SCPECG_RE = re.compile(r"^5\.6\.3-9-(\d+)$")
_MDC_RE = re.compile(r"^2:(\d+)$")
_MDC_PARTITION_2 = 2 * 65536

_BY_FOLDED_NAME: dict[str, str] = {name.casefold(): name for name in STANDARD_LEADS}
# Strip the usual decorations around a lead name: "Lead ", "MDC_ECG_LEAD_", a parenthesised remark.
_LABEL_PREFIX_RE = re.compile(r"^(?:mdc_ecg_lead_|ecg\s+lead\s+|lead\s*)", re.IGNORECASE)
_PAREN_RE = re.compile(r"\s*\(.*?\)\s*")


def lead_from_code(scheme: str, value: str) -> str | None:
    """The canonical lead for a Channel Source code, or ``None`` when the code is not one of the twelve.

    Parameters
    ----------
    scheme : str
        Coding Scheme Designator (``"SCPECG"`` or ``"MDC"``; others give ``None``).
    value : str
        Code Value (``"5.6.3-9-61"``, ``"2:61"`` or ``"131389"``).
    """
    scheme = scheme.strip().upper()
    value = value.strip()
    number: int | None = None
    if scheme == "SCPECG":
        m = _SCPECG_RE.match(value)
        number = int(m.group(1)) if m else None
    elif scheme == "MDC":
        m = _MDC_RE.match(value)
        if m:
            number = int(m.group(1))
        elif value.isdigit() and _MDC_PARTITION_2 < int(value) < _MDC_PARTITION_2 + 65536:
            number = int(value) - _MDC_PARTITION_2
        if number is not None and 256 < number < 512:
            number -= 256
    return None if number is None else _CODE_NUMBER_TO_LEAD.get(number)


def lead_from_label(label: str) -> str | None:
    """The canonical lead named by a free-text label (``"Lead I (Einthoven)"`` → ``"I"``), else ``None``."""
    text = _PAREN_RE.sub(" ", label).strip()
    text = _LABEL_PREFIX_RE.sub("", text).strip().replace(" ", "")
    return _BY_FOLDED_NAME.get(text.casefold())


def canonical_lead(channel: Channel) -> str | None:
    """The canonical lead name of ``channel`` (source code first, then label), or ``None``."""
    if channel.source is not None:
        lead = lead_from_code(channel.source.scheme, channel.source.value)
        if lead is not None:
            return lead
    lead = lead_from_label(channel.label)
    if lead is None and channel.source is not None:
        lead = lead_from_label(channel.source.meaning)
    return lead


def lead_index(group: MultiplexGroup) -> dict[str, int]:
    """Canonical lead name → channel index in ``group`` (the first channel wins when a lead repeats)."""
    found: dict[str, int] = {}
    for i, ch in enumerate(group.channels):
        lead = canonical_lead(ch)
        if lead is not None and lead not in found:
            found[lead] = i
    return found


__all__ = ["STANDARD_LEADS", "canonical_lead", "lead_from_code", "lead_from_label", "lead_index"]
