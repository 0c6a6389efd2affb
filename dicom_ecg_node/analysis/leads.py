"""Lead identity: canonical names from Channel Source codes or free-text labels, and lead contiguity.

Canonical names are ``I, II, III, aVR, aVL, aVF, V1 ... V6`` (:data:`STANDARD_LEADS`). Codes follow PS3.16 CID 3001
"ECG Leads": SCPECG ``5.6.3-9-N`` and ISO/IEEE 11073 MDC ``2:N`` (also sent as the decimal 2 * 65536 + N, or as the
reference id ``MDC_ECG_LEAD_...``), with N = 1 I, 2 II, 3-8 V1-V6, 61 III, 62 aVR, 63 aVL, 64 aVF.
"""

from __future__ import annotations

import re

from dicom_ecg_node.waveform.model import Channel

#: The twelve standard leads, in the conventional display order.
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# PS3.16 CID 3001: the lead number N shared by SCPECG 5.6.3-9-N and MDC 2:N.
_LEAD_NUMBER: dict[int, str] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}
_MDC_BASE = 2 * 65536  # MDC partition 2 (SCADA), code = partition << 16 | term
_BY_TEXT: dict[str, str] = {name.casefold(): name for name in STANDARD_LEADS}
_SCPECG = re.compile(r"^5\.6\.3-9-(\d+)$")
_MDC = re.compile(r"^2:(\d+)$")
# "Lead I (Einthoven)", "LEAD_II", "MDC_ECG_LEAD_AVF", "V1 lead" → the bare name.
_TEXT_NOISE = re.compile(r"\(.*?\)|mdc_ecg_lead_|lead|[_\s:]+", re.IGNORECASE)

#: Limb leads in Cabrera order (Thygesen et al. 2018, Fourth Universal Definition of MI, Figure 4 / "contiguous
#: leads"); ``-aVR`` is aVR inverted. Neighbours in this tuple are anatomically contiguous.
CABRERA_ORDER: tuple[str, ...] = ("aVL", "I", "-aVR", "II", "aVF", "III")
#: Precordial leads; neighbours are contiguous.
PRECORDIAL_ORDER: tuple[str, ...] = ("V1", "V2", "V3", "V4", "V5", "V6")
#: The two contiguity sequences.
CONTIGUITY_SEQUENCES: tuple[tuple[str, ...], ...] = (CABRERA_ORDER, PRECORDIAL_ORDER)


def lead_from_code(value: str, scheme: str | None = None) -> str | None:
    """Canonical lead name of a Channel Source code, or ``None`` when it is not one of the twelve.

    Parameters
    ----------
    value : str
        Code Value (``"5.6.3-9-1"``, ``"2:1"``, ``"131073"``, ``"MDC_ECG_LEAD_I"``).
    scheme : str, optional
        Coding Scheme Designator (``"SCPECG"``, ``"MDC"``); used to read a bare decimal MDC code.
    """
    text = value.strip()
    m = _SCPECG.match(text) or _MDC.match(text)
    if m:
        return _LEAD_NUMBER.get(int(m.group(1)))
    if text.isdigit() and (scheme or "").upper() == "MDC":
        number = int(text)
        return _LEAD_NUMBER.get(number - _MDC_BASE) if number > _MDC_BASE else None
    if text.upper().startswith("MDC_ECG_LEAD_"):
        return lead_from_label(text)
    return None


def lead_from_label(label: str) -> str | None:
    """Canonical lead name of a free-text Channel Label (``"Lead I (Einthoven)"``, ``"avf"``, ``"MDC_ECG_LEAD_V2"``).

    Returns ``None`` for anything else, including inverted leads such as ``"-aVR"``.
    """
    text = _TEXT_NOISE.sub("", label).strip().casefold()
    return _BY_TEXT.get(text)


def canonical_lead(channel: Channel) -> str | None:
    """Canonical lead name of a channel: its Channel Source code first, else its label.

    Parameters
    ----------
    channel : Channel
        A decoded channel.

    Returns
    -------
    str or None
        One of :data:`STANDARD_LEADS`, or ``None`` when the channel is not a standard ECG lead.
    """
    if channel.source is not None:
        name = lead_from_code(channel.source.value, channel.source.scheme)
        if name is not None:
            return name
    return lead_from_label(channel.label)


def contiguous_runs(positive: set[str]) -> list[tuple[str, ...]]:
    """Runs of two or more neighbouring leads, in each contiguity sequence, that are all in ``positive``.

    Parameters
    ----------
    positive : set of str
        Lead names meeting a criterion; ``"-aVR"`` stands for inverted aVR.

    Returns
    -------
    list of tuple of str
        Each run in sequence order; empty when no two contiguous leads meet the criterion.
    """
    runs: list[tuple[str, ...]] = []
    for order in CONTIGUITY_SEQUENCES:
        run: list[str] = []
        for lead in (*order, None):
            if lead is not None and lead in positive:
                run.append(lead)
                continue
            if len(run) >= 2:
                runs.append(tuple(run))
            run = []
    return runs
