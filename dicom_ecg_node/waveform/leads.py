"""Lead identity: one canonical name per standard ECG lead, from Channel Source codes or free-text labels.

Canonical names are ``I, II, III, aVR, aVL, aVF, V1 ... V6`` (:data:`STANDARD_LEADS`). Carts label leads in many
ways (``"Lead I (Einthoven)"``, ``"I"``, ``"MDC_ECG_LEAD_I"``...), so the Channel Source code decides first:
PS3.16 CID 3001 "ECG Leads", SCPECG ``5.6.3-9-N`` and ISO/IEEE 11073 MDC ``2:N`` (also sent as the decimal
2 * 65536 + N, as N + 256 for the lead's electric potential MDC_ECG_ELEC_POTL_*, or as the reference id
``MDC_ECG_LEAD_...``), with N = 1 I, 2 II, 3-8 V1-V6, 61 III, 62 aVR, 63 aVL, 64 aVF. Then the label, then the
code's meaning. Shared by the analysis and the printouts.
"""

from __future__ import annotations

import re

from dicom_ecg_node.waveform.model import Channel, MultiplexGroup

#: The twelve standard leads, in the conventional display order.
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# PS3.16 CID 3001: the lead number N shared by SCPECG 5.6.3-9-N and MDC 2:N.
_LEAD_NUMBER: dict[int, str] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}
_MDC_BASE = 2 * 65536  # MDC partition 2 (SCADA): code = partition << 16 | term
_BY_TEXT: dict[str, str] = {name.casefold(): name for name in STANDARD_LEADS}
_SCPECG = re.compile(r"^5\.6\.3-9-(\d+)$")
_MDC = re.compile(r"^2:(\d+)$")
# "Lead I (Einthoven)", "LEAD_II", "MDC_ECG_LEAD_AVF", "V1 lead" → the bare name.
_TEXT_NOISE = re.compile(r"\(.*?\)|mdc_ecg_lead_|lead|[_\s:]+", re.IGNORECASE)


def _mdc_term(number: int) -> str | None:
    if 256 < number < 512:  # MDC_ECG_ELEC_POTL_* = lead term + 256
        number -= 256
    return _LEAD_NUMBER.get(number)


def lead_from_code(value: str, scheme: str | None = None) -> str | None:
    """Canonical lead name of a Channel Source code, or ``None`` when it is not one of the twelve.

    Parameters
    ----------
    value : str
        Code Value (``"5.6.3-9-1"``, ``"2:1"``, ``"131073"``, ``"MDC_ECG_LEAD_I"``).
    scheme : str, optional
        Coding Scheme Designator (``"SCPECG"``, ``"MDC"``); needed to read a bare decimal MDC code.
    """
    text = value.strip()
    m = _SCPECG.match(text)
    if m:
        return _LEAD_NUMBER.get(int(m.group(1)))
    m = _MDC.match(text)
    if m:
        return _mdc_term(int(m.group(1)))
    if text.isdigit() and (scheme or "").strip().upper() == "MDC":
        number = int(text)
        return _mdc_term(number - _MDC_BASE) if _MDC_BASE < number < _MDC_BASE + 65536 else None
    if text.upper().startswith("MDC_ECG_LEAD_"):
        return lead_from_label(text)
    return None


def lead_from_label(label: str) -> str | None:
    """Canonical lead name of a free-text label (``"Lead I (Einthoven)"``, ``"avf"``, ``"MDC_ECG_LEAD_V2"``).

    Returns ``None`` for anything else, including inverted leads such as ``"-aVR"``.
    """
    return _BY_TEXT.get(_TEXT_NOISE.sub("", label).strip().casefold())


def canonical_lead(channel: Channel) -> str | None:
    """Canonical lead name of a channel: its Channel Source code, else its label, else the code's meaning.

    Returns
    -------
    str or None
        One of :data:`STANDARD_LEADS`, or ``None`` when the channel is not a standard ECG lead.
    """
    if channel.source is not None:
        name = lead_from_code(channel.source.value, channel.source.scheme)
        if name is not None:
            return name
    name = lead_from_label(channel.label)
    if name is None and channel.source is not None:
        name = lead_from_label(channel.source.meaning)
    return name


def lead_index(group: MultiplexGroup) -> dict[str, int]:
    """Canonical lead name → channel index in ``group`` (the first channel wins when a lead repeats)."""
    found: dict[str, int] = {}
    for i, ch in enumerate(group.channels):
        lead = canonical_lead(ch)
        if lead is not None and lead not in found:
            found[lead] = i
    return found


__all__ = ["STANDARD_LEADS", "canonical_lead", "lead_from_code", "lead_from_label", "lead_index"]
