"""DICOM DA / TM / DT parsing with time zones (PS3.5 6.2, PS3.3 C.12.1.1.8).

Kept apart from the decoder so that the catalog and tests can use the same rules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# PS3.5 6.2 DT: YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]][&ZZXX]; components may be omitted from the right.
_DT_RE = re.compile(
    r"^(?P<Y>\d{4})(?P<m>\d{2})?(?P<d>\d{2})?(?P<H>\d{2})?(?P<M>\d{2})?(?P<S>\d{2})?(?:\.(?P<F>\d{1,6}))?"
    r"(?P<z>[+-]\d{4})?$"
)
# PS3.5 6.2 TM: HH[MM[SS[.F{1-6}]]]; the retired ACR-NEMA form HH:MM:SS is still met in old files.
_TM_RE = re.compile(r"^(?P<H>\d{2})(?::?(?P<M>\d{2}))?(?::?(?P<S>\d{2}))?(?:\.(?P<F>\d{1,6}))?$")
_DA_RE = re.compile(r"^(?P<Y>\d{4})\.?(?P<m>\d{2})\.?(?P<d>\d{2})$")
_OFFSET_RE = re.compile(r"^(?P<sign>[+-])(?P<hh>\d{2})(?P<mm>\d{2})$")


def parse_offset(text: str) -> timezone:
    """Parse a ``&ZZXX`` UTC offset (DT suffix or Timezone Offset From UTC (0008,0201)).

    Raises
    ------
    ValueError
        Not of the form ``+HHMM`` / ``-HHMM`` or outside -12:00 .. +14:00 (PS3.5 6.2).
    """
    m = _OFFSET_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid UTC offset {text!r}")
    hh, mm = int(m["hh"]), int(m["mm"])
    if mm >= 60:
        raise ValueError(f"invalid UTC offset {text!r}")
    delta = timedelta(hours=hh, minutes=mm)
    if m["sign"] == "-":
        delta = -delta
    if not timedelta(hours=-12) <= delta <= timedelta(hours=14):
        raise ValueError(f"UTC offset {text!r} outside -1200..+1400")
    return timezone(delta)


def _fraction_us(text: str | None) -> int:
    return int((text or "0").ljust(6, "0"))


def parse_dt(text: str) -> tuple[datetime, timezone | None, str]:
    """Parse a DT value.

    Returns
    -------
    (datetime, timezone or None, precision)
        The naive local datetime (missing components take their lowest value), the UTC offset when the value
        carries one, and the finest component present (``"year"`` ... ``"second"``, ``"fraction"``).

    Raises
    ------
    ValueError
        Malformed value.
    """
    m = _DT_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid DT {text!r}")
    precision = "year"
    for key, name in (("m", "month"), ("d", "day"), ("H", "hour"), ("M", "minute"), ("S", "second"),
                      ("F", "fraction")):
        if m[key] is not None:
            precision = name
    value = datetime(int(m["Y"]), int(m["m"] or 1), int(m["d"] or 1), int(m["H"] or 0), int(m["M"] or 0),
                     int(m["S"] or 0), _fraction_us(m["F"]))
    zone = parse_offset(m["z"]) if m["z"] else None
    return value, zone, precision


def parse_da_tm(date: str, time: str) -> datetime:
    """Combine a DA and a TM value into a naive datetime.

    Raises
    ------
    ValueError
        Malformed value.
    """
    d = _DA_RE.match(date.strip())
    t = _TM_RE.match(time.strip())
    if not d:
        raise ValueError(f"invalid DA {date!r}")
    if not t:
        raise ValueError(f"invalid TM {time!r}")
    second = int(t["S"] or 0)
    # PS3.5 6.2: TM seconds may be 60 (leap second); datetime cannot hold it, so keep the last valid second.
    return datetime(int(d["Y"]), int(d["m"]), int(d["d"]), int(t["H"]), int(t["M"] or 0), min(second, 59),
                    _fraction_us(t["F"]))


def resolve_zone(zone: tzinfo | str | None) -> tzinfo:
    """Turn a ``default_zone`` argument (tzinfo, IANA name or ``None`` for UTC) into a tzinfo.

    Raises
    ------
    ValueError
        Unknown IANA zone name.
    """
    if zone is None:
        return UTC
    if isinstance(zone, tzinfo):
        return zone
    try:
        return ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {zone!r}") from exc


def localize(naive: datetime, zone: tzinfo) -> tuple[datetime, str | None]:
    """Attach ``zone`` to a naive local time, saying when the wall-clock time is ambiguous or skipped.

    A time repeated when clocks go back takes its first occurrence (``fold=0``, PEP 495); a time skipped when
    clocks go forward is kept with the offset in force before the change. Either way a note is returned.
    """
    aware = naive.replace(tzinfo=zone, fold=0)
    other = naive.replace(tzinfo=zone, fold=1)
    if aware.utcoffset() == other.utcoffset():
        return aware, None
    # Skipped times round-trip to a different wall clock; repeated ones do not.
    roundtrip = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if roundtrip != naive:
        return aware, f"local time {naive.isoformat()} does not exist in {zone} (clocks moved forward)"
    return aware, f"local time {naive.isoformat()} occurs twice in {zone}; the first occurrence was taken"
