r"""The C-FIND query model: constraints that know nothing of SQL, the key tables, and the in-memory oracle.

A query is a tuple of :class:`Condition` objects, each one logical *field* of the catalog (``"patient_id"``,
``"study_date"``, ``"modalities"``...) with one :class:`Constraint`. :mod:`dicom_ecg_node.catalog.sql` turns it
into SQL with bound parameters; :func:`matches` evaluates the same model on a plain record (a mapping of field
name to value) and is the test oracle the SQL is checked against.

Matching rules (PS3.4 C.2.2.2), as implemented here
    * Single value (C.2.2.2.1): exact and case-sensitive, except person names (PN), which are matched
      case-insensitively on their normalised form (:func:`~dicom_ecg_node.catalog.models.normalize_person_name`:
      NFKC, case-folded, trailing empty components removed); C.2.2.2.1 allows this and the node documents it.
    * List of UID (C.2.2.2.2): ``\``-separated values, any may match. The same multiple-value form is accepted
      for the CS keys Modality and ModalitiesInStudy (PS3.4 C.2.2.2.8 multiple value matching).
    * Universal (C.2.2.2.3): an empty value, a value of only ``*``, or a person name of only delimiters (``^``:
      a zero-length name, PS3.5 6.2.1); the key is returned, never filtered on.
    * Wildcard (C.2.2.2.4): ``*`` any run of characters, ``?`` exactly one; every other character is literal
      (a ``%`` or ``_`` in a value never acts as a SQL wildcard).
    * Range (C.2.2.2.5): DA, TM and DT as ``a-b``, ``-b``, ``a-``; a single DA/TM/DT value is the degenerate
      range ``a-a``. Bounds are inclusive at their own precision: ``-1016`` includes ``101659.9``. DT bounds may
      carry a UTC offset (``20260308-0500-``). Study Date and Study Time given together are matched as one
      combined date-time range (C.2.2.2.5.1): ``StudyDate=20260301-20260302, StudyTime=1800-0800`` is
      2026-03-01 18:00 to 2026-03-02 08:00.
    * Sequence (C.2.2.2.6): an item of the key sequence with item keys; a stored sequence matches when one of its
      items matches every item key. Supported: Waveform Sequence (IMAGE level) with Multiplex Group Label,
      Number of Waveform Channels, Number of Waveform Samples, Sampling Frequency.
    * Empty value (C.2.2.2.1.1 / C.2.2.2.3 as revised): the value ``""`` matches entities where the attribute is
      absent or empty; not allowed for unique keys.
    * Person names with several component groups (alphabetic=ideographic=phonetic, PS3.5 6.2.1): each
      non-empty group of the query value must match the stored group at the same position.

Time zones
    Dates and times are matched as the sender wrote them (its local wall clock) unless the identifier carries
    Timezone Offset From UTC (0008,0201), or a DT bound carries its own offset. Then, and only for
    **Study Date / Study Time** (as a date-time range: a study matches when one of its instances was acquired in
    it) and **Acquisition DateTime**, the query's local values are converted to UTC instants and compared with
    the catalog's UTC acquisition time. Patient Birth Date, Content Date and Content Time are never shifted
    (a birth date has no zone; content times are kept as the device wrote them).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from dicom_ecg_node.catalog.models import normalize_person_name
from dicom_ecg_node.errors import QueryError

# --------------------------------------------------------------------------------------------------------------
# Constraint kinds


@dataclass(frozen=True, slots=True)
class Universal:
    """Universal matching (PS3.4 C.2.2.2.3): matches every entity, the key is only returned."""


@dataclass(frozen=True, slots=True)
class SingleValue:
    """Single value matching (PS3.4 C.2.2.2.1); ``value`` is already normalised for PN and int for IS."""

    value: str | int | float


@dataclass(frozen=True, slots=True)
class ValueList:
    """List of UID matching (PS3.4 C.2.2.2.2) and multiple value matching of CS keys: any value matches."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Wildcard:
    """Wildcard matching (PS3.4 C.2.2.2.4): ``*`` any run of characters, ``?`` one character."""

    pattern: str


@dataclass(frozen=True, slots=True)
class Range:
    """Range matching on DICOM strings (PS3.4 C.2.2.2.5): ``low <= value`` and ``value`` not after ``high``.

    ``high`` is inclusive at its own precision: a value matches when it is below the prefix successor of
    ``high`` (:func:`prefix_successor`), so ``high="1016"`` includes ``"101659"``. Either bound may be ``None``.
    """

    low: str | None
    high: str | None


@dataclass(frozen=True, slots=True)
class InstantRange:
    """A half-open range ``[low, high)`` of UTC instants (naive UTC), from values shifted by a UTC offset."""

    low: datetime | None
    high: datetime | None


@dataclass(frozen=True, slots=True)
class Empty:
    """Empty value matching (``""``): the attribute is absent or zero-length."""


@dataclass(frozen=True, slots=True)
class SequenceMatch:
    """Sequence matching (PS3.4 C.2.2.2.6): some item satisfies every item condition (none: any sequence)."""

    items: tuple[Condition, ...]


Constraint = Universal | SingleValue | ValueList | Wildcard | Range | InstantRange | Empty | SequenceMatch


class Kind(enum.Enum):
    """How a field's values compare (the formatter and the oracle both dispatch on it)."""

    TEXT = "text"  # case-sensitive string
    PN = "pn"  # normalised person name, group-wise
    INT = "int"
    DA = "da"  # YYYYMMDD strings
    TM = "tm"  # TM / DT / combined date-time strings
    INSTANT = "instant"  # naive UTC datetimes
    FLOAT = "float"
    SEQUENCE = "sequence"


@dataclass(frozen=True, slots=True)
class Condition:
    """One constraint on one logical field of the catalog.

    Attributes
    ----------
    field : str
        A name in :data:`FIELDS` (or :data:`ITEM_FIELDS` inside a sequence).
    constraint : Constraint
    """

    field: str
    constraint: Constraint


#: Logical fields and their kinds. ``multi`` fields hold several values per entity (any may match).
FIELDS: dict[str, Kind] = {
    "patient_id": Kind.TEXT, "issuer": Kind.TEXT, "patient_name": Kind.PN, "birth_date": Kind.DA,
    "sex": Kind.TEXT,
    "study_uid": Kind.TEXT, "study_date": Kind.DA, "study_time": Kind.TM, "study_datetime": Kind.TM,
    "accession_number": Kind.TEXT, "study_id": Kind.TEXT, "study_description": Kind.TEXT,
    "referring_physician": Kind.PN, "modalities": Kind.TEXT, "sop_classes": Kind.TEXT, "study_utc": Kind.INSTANT,
    "series_uid": Kind.TEXT, "modality": Kind.TEXT, "series_number": Kind.INT, "series_description": Kind.TEXT,
    "sop_uid": Kind.TEXT, "sop_class": Kind.TEXT, "instance_number": Kind.INT,
    "acquisition_datetime": Kind.TM, "acquisition_utc": Kind.INSTANT, "content_date": Kind.DA,
    "content_time": Kind.TM, "waveform_groups": Kind.SEQUENCE,
}
#: Fields holding a tuple of values per entity (child rows): matched when any value matches.
MULTI_FIELDS = frozenset({"modalities", "sop_classes", "study_utc", "waveform_groups"})
#: Item fields of the Waveform Sequence (one item per stored multiplex group).
ITEM_FIELDS: dict[str, Kind] = {"label": Kind.TEXT, "n_channels": Kind.INT, "n_samples": Kind.INT,
                                "sampling_frequency": Kind.FLOAT}


# --------------------------------------------------------------------------------------------------------------
# Levels, information models and keys (PS3.4 C.6.1, C.6.2)


class Level(enum.IntEnum):
    """Query/Retrieve levels, top to bottom."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


#: The two information models, by their C-FIND SOP Class UID (PS3.4 C.6.1.2, C.6.2.2).
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MODEL_NAMES: dict[str, str] = {PATIENT_ROOT_FIND: "Patient Root", STUDY_ROOT_FIND: "Study Root"}


@dataclass(frozen=True, slots=True)
class Key:
    """A C-FIND key the node knows.

    Attributes
    ----------
    keyword : str
        DICOM keyword.
    level : Level
        Level of the key in the Patient Root model; Study Root moves PATIENT keys to STUDY (PS3.4 C.6.2.1).
    vr : str
        Value representation, which decides the allowed matching types.
    field : str or None
        Logical field matched and returned; ``None`` for return-only derived values (counts).
    usage : {"U", "R", "O"}
        Unique, required or optional key.
    matchable : bool
        Whether a value is used for matching (counts are return-only: PS3.4 C.6.1.1 tables, matching "-").
    """

    keyword: str
    level: Level
    vr: str
    field: str | None
    usage: Literal["U", "R", "O"]
    matchable: bool = True


_P, _S, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE
#: Every key the node supports, by keyword.
KEYS: dict[str, Key] = {k.keyword: k for k in (
    Key("PatientID", _P, "LO", "patient_id", "U"),
    Key("PatientName", _P, "PN", "patient_name", "R"),
    Key("IssuerOfPatientID", _P, "LO", "issuer", "O"),
    Key("PatientBirthDate", _P, "DA", "birth_date", "O"),
    Key("PatientSex", _P, "CS", "sex", "O"),
    Key("NumberOfPatientRelatedStudies", _P, "IS", None, "O", False),
    Key("NumberOfPatientRelatedSeries", _P, "IS", None, "O", False),
    Key("NumberOfPatientRelatedInstances", _P, "IS", None, "O", False),
    Key("StudyInstanceUID", _S, "UI", "study_uid", "U"),
    Key("StudyDate", _S, "DA", "study_date", "R"),
    Key("StudyTime", _S, "TM", "study_time", "R"),
    Key("AccessionNumber", _S, "SH", "accession_number", "R"),
    Key("StudyID", _S, "SH", "study_id", "R"),
    Key("StudyDescription", _S, "LO", "study_description", "O"),
    Key("ReferringPhysicianName", _S, "PN", "referring_physician", "O"),
    Key("ModalitiesInStudy", _S, "CS", "modalities", "O"),
    Key("SOPClassesInStudy", _S, "UI", "sop_classes", "O"),
    Key("NumberOfStudyRelatedSeries", _S, "IS", None, "O", False),
    Key("NumberOfStudyRelatedInstances", _S, "IS", None, "O", False),
    Key("SeriesInstanceUID", _SE, "UI", "series_uid", "U"),
    Key("Modality", _SE, "CS", "modality", "R"),
    Key("SeriesNumber", _SE, "IS", "series_number", "R"),
    Key("SeriesDescription", _SE, "LO", "series_description", "O"),
    Key("NumberOfSeriesRelatedInstances", _SE, "IS", None, "O", False),
    Key("SOPInstanceUID", _I, "UI", "sop_uid", "U"),
    Key("InstanceNumber", _I, "IS", "instance_number", "R"),
    Key("SOPClassUID", _I, "UI", "sop_class", "O"),
    Key("AcquisitionDateTime", _I, "DT", "acquisition_datetime", "O"),
    Key("ContentDate", _I, "DA", "content_date", "O"),
    Key("ContentTime", _I, "TM", "content_time", "O"),
    Key("WaveformSequence", _I, "SQ", "waveform_groups", "O"),
)}
#: Item keys of Waveform Sequence → (item field, VR).
WAVEFORM_ITEM_KEYS: dict[str, tuple[str, str]] = {
    "MultiplexGroupLabel": ("label", "LO"),
    "NumberOfWaveformChannels": ("n_channels", "US"),
    "NumberOfWaveformSamples": ("n_samples", "UL"),
    "SamplingFrequency": ("sampling_frequency", "DS"),
}
#: Keys valid at any level that qualify the query or describe the answer rather than an entity.
SPECIAL_KEYS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC", "RetrieveAETitle",
                          "InstanceAvailability", "QueryRetrieveView"})
UNIQUE_KEY: dict[Level, str] = {_P: "PatientID", _S: "StudyInstanceUID", _SE: "SeriesInstanceUID",
                                _I: "SOPInstanceUID"}


def key_level(key: Key, model: str) -> Level:
    """The level of ``key`` in information model ``model`` (Study Root has no PATIENT level: C.6.2.1)."""
    if model == STUDY_ROOT_FIND and key.level == Level.PATIENT:
        return Level.STUDY
    return key.level


def model_levels(model: str) -> tuple[Level, ...]:
    """The levels of an information model (PS3.4 C.6.1.1, C.6.2.1)."""
    if model == PATIENT_ROOT_FIND:
        return (_P, _S, _SE, _I)
    if model == STUDY_ROOT_FIND:
        return (_S, _SE, _I)
    raise QueryError(f"unknown query information model {model!r} (Patient Root and Study Root are supported)")


# --------------------------------------------------------------------------------------------------------------
# Turning one key value into a constraint

_DA_RE = re.compile(r"^\d{8}$")
_TM_RE = re.compile(r"^\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?$")
_DT_BODY = r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?"
_DT_RE = re.compile(rf"^(?P<v>{_DT_BODY})(?P<z>[+-]\d{{4}})?$")
_DT_RANGE_RE = re.compile(rf"^(?P<lo>{_DT_BODY}(?:[+-]\d{{4}})?)?-(?P<hi>{_DT_BODY}(?:[+-]\d{{4}})?)?$")
_OFFSET_RE = re.compile(r"^[+-]\d{4}$")
EMPTY_VALUE = '""'


def prefix_successor(text: str) -> str:
    """The smallest string above every string that starts with ``text`` (code-point order).

    Used for inclusive upper bounds at the bound's own precision: ``value < prefix_successor("1016")`` holds for
    ``"1016"`` and ``"101659.9"`` but not ``"1017"``.
    """
    return text[:-1] + chr(ord(text[-1]) + 1)


def parse_offset_value(text: str) -> timezone:
    """A ``+HHMM``/``-HHMM`` offset (Timezone Offset From UTC, DT suffix) as a timezone.

    Raises
    ------
    QueryError
        Malformed, or outside -1200..+1400 (PS3.5 6.2).
    """
    t = text.strip()
    if not _OFFSET_RE.match(t) or int(t[3:5]) >= 60:
        raise QueryError(f"TimezoneOffsetFromUTC: {text!r} is not +HHMM or -HHMM")
    delta = timedelta(hours=int(t[1:3]), minutes=int(t[3:5]))
    delta = -delta if t[0] == "-" else delta
    if not timedelta(hours=-12) <= delta <= timedelta(hours=14):
        raise QueryError(f"TimezoneOffsetFromUTC: {text!r} is outside -1200..+1400")
    return timezone(delta)


def _range_parts(keyword: str, text: str, vr: str) -> tuple[str | None, str | None]:
    """Split a DA/TM value into range bounds, validating each (PS3.4 C.2.2.2.5)."""
    pattern = _DA_RE if vr == "DA" else _TM_RE
    if "-" in text:
        if text.count("-") != 1 or text == "-":
            raise QueryError(f"{keyword}: {text!r} is not a valid {vr} range (a-b, -b or a-; PS3.4 C.2.2.2.5)")
        lo, hi = (p or None for p in text.split("-"))
    else:
        lo = hi = text
    for bound in (lo, hi):
        if bound is not None and not pattern.match(bound):
            raise QueryError(f"{keyword}: {bound!r} is not a valid {vr} value (PS3.5 6.2)")
    # A TM range may wrap midnight when combined with a date range (C.2.2.2.5.1), so only DA is checked.
    if vr == "DA" and lo is not None and hi is not None and lo > hi:
        raise QueryError(f"{keyword}: range {text!r} ends before it starts")
    return lo, hi


def _dt_parts(keyword: str, text: str) -> tuple[str | None, str | None]:
    """Split a DT value or range; a value that is a valid DT with offset (``20260308-0500``) is not a range."""
    if _DT_RE.match(text):
        return text, text
    m = _DT_RANGE_RE.match(text)
    if not m or (m["lo"] is None and m["hi"] is None):
        raise QueryError(f"{keyword}: {text!r} is not a valid DT value or range (PS3.4 C.2.2.2.5)")
    return m["lo"], m["hi"]


_STEP = {4: "year", 6: "month", 8: "day", 10: "hour", 12: "minute", 14: "second"}


def dt_bounds(value: str, zone: timezone | None) -> tuple[datetime, datetime, bool]:
    """A DT value (with optional own offset) as the half-open UTC interval it denotes at its precision.

    Returns
    -------
    (start, end, had_offset)
        Naive UTC instants; ``had_offset`` is whether the value carried its own offset. Without an own offset
        the value is read in ``zone`` (UTC when ``None``).
    """
    m = _DT_RE.match(value)
    if not m:
        raise QueryError(f"{value!r} is not a valid DT value (PS3.5 6.2)")
    body, own = m["v"], m["z"]
    digits, _, frac = body.partition(".")
    padded = digits + "0101000000"[len(digits) - 4:] if len(digits) < 14 else digits
    try:
        start = datetime.strptime(padded[:14], "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise QueryError(f"{value!r} is not a valid DT value: {exc}") from exc
    if frac:
        start = start.replace(microsecond=int(frac.ljust(6, "0")))
        end = start + timedelta(microseconds=10 ** (6 - len(frac)))
    else:
        step = _STEP[len(digits)]
        if step == "year":
            end = start.replace(year=start.year + 1)
        elif step == "month":
            end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        else:
            end = start + {"day": timedelta(days=1), "hour": timedelta(hours=1), "minute": timedelta(minutes=1),
                           "second": timedelta(seconds=1)}[step]
    tz = parse_offset_value(own) if own else (zone or UTC)
    to_utc = tz.utcoffset(None) or timedelta(0)
    return start - to_utc, end - to_utc, own is not None


def _split_values(text: str) -> list[str]:
    return [v.strip() for v in text.split("\\")]


def has_wildcard(text: str) -> bool:
    """Whether ``text`` contains a C-FIND wildcard character (PS3.4 C.2.2.2.4)."""
    return "*" in text or "?" in text


def parse_constraint(key: Key, text: str, *, unique: bool | None = None) -> Constraint:
    r"""The constraint a key value asks for (PS3.4 C.2.2.2), from its DICOM string (multi-values ``\``-joined).

    DA/TM/DT values always become :class:`Range` here; :func:`to_instant_range` shifts them when a UTC offset
    applies.

    Raises
    ------
    QueryError
        A value not allowed for the key's VR (wildcards in UI, DA, TM, DT or IS; a malformed date or range;
        ``""`` for a unique key; several values for a PN, LO or SH key).
    """
    kw, vr = key.keyword, key.vr
    text = text.strip()
    if text == "" or (vr not in ("UI", "IS", "DA", "TM", "DT") and text.strip("*") == "" and "*" in text):
        return Universal()  # PS3.4 C.2.2.2.3: empty, or only "*" (C.2.2.2.4)
    if text == "*":
        return Universal()
    if text == EMPTY_VALUE:
        if (key.usage == "U" if unique is None else unique):
            raise QueryError(f"{kw}: empty value matching is not allowed for a unique key")
        return Empty()
    if vr == "UI":
        values = tuple(v for v in _split_values(text) if v)
        if any(has_wildcard(v) for v in values):
            raise QueryError(f"{kw}: wildcards are not allowed in UID keys (PS3.4 C.2.2.2.4)")
        return SingleValue(values[0]) if len(values) == 1 else ValueList(values)
    if vr in ("IS", "US", "UL"):
        try:
            return SingleValue(int(text))
        except ValueError:
            raise QueryError(f"{kw}: {text!r} is not an integer (only single value matching for {vr})") from None
    if vr == "DS":
        try:
            return SingleValue(float(text))  # type: ignore[arg-type]
        except ValueError:
            raise QueryError(f"{kw}: {text!r} is not a decimal number") from None
    if vr in ("DA", "TM"):
        return Range(*_range_parts(kw, text, vr))
    if vr == "DT":
        return Range(*_dt_parts(kw, text))
    if vr == "PN":
        if "\\" in text:
            raise QueryError(f"{kw}: several values are not supported for a person name key")
        norm = normalize_person_name(text) or ""
        if norm.replace("=", "").strip("*") == "":
            # Only "*" (C.2.2.2.4), or only delimiters ("^", "=", "^=^"): a name whose components are all empty is
            # a zero-length name (PS3.5 6.2.1, empty trailing components may be left out), so universal matching
            # (C.2.2.2.3) applies: every entity, with or without a name, as the SQL formatter matches it.
            return Universal()
        return Wildcard(norm) if has_wildcard(norm) else SingleValue(norm)
    values = [v for v in _split_values(text) if v]
    if len(values) > 1:
        if vr != "CS":
            raise QueryError(f"{kw}: several values are only accepted for UI and CS keys")
        if any(has_wildcard(v) for v in values):
            raise QueryError(f"{kw}: wildcards cannot be combined with several values")
        return ValueList(tuple(values))
    text = values[0] if values else ""
    return Wildcard(text) if has_wildcard(text) else SingleValue(text)


def to_instant_range(keyword: str, rng: Range, zone: timezone | None, *, force: bool) -> InstantRange | None:
    """Shift a DT (or DA+TM combined) string range to UTC instants, or ``None`` when no offset applies.

    Each bound is read in its own offset, else ``zone`` (the identifier's Timezone Offset From UTC), else the
    other bound's own offset. ``force`` converts even when no offset is known (never used without one).
    """
    offsets = [_DT_RE.match(b)["z"] if b and _DT_RE.match(b) else None for b in (rng.low, rng.high)]
    own = next((o for o in offsets if o), None)
    if zone is None and own is None and not force:
        return None
    fallback = zone if zone is not None else (parse_offset_value(own) if own else None)
    try:
        low = dt_bounds(rng.low, fallback)[0] if rng.low else None
        high = dt_bounds(rng.high, fallback)[1] if rng.high else None
    except QueryError as exc:
        raise QueryError(f"{keyword}: {exc}") from exc
    return InstantRange(low, high)


def combine_date_time(date: Range, time: Range) -> Range:
    """Combined date-time range of Study Date and Study Time (PS3.4 C.2.2.2.5.1).

    ``date=a-b, time=c-d`` is from date ``a`` time ``c`` to date ``b`` time ``d``; an open date end leaves the time
    of that end unused.
    """
    low = None if date.low is None else date.low + (time.low or "")
    high = None if date.high is None else date.high + (time.high or "")
    return Range(low, high)


# --------------------------------------------------------------------------------------------------------------
# The in-memory oracle


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regular expression equivalent to a C-FIND wildcard pattern (whole-value match)."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def pn_groups(value: str) -> list[str]:
    """The ``=``-separated component groups of a (normalised) PN value, padded to three."""
    groups = value.split("=")
    return [*groups, "", "", ""][:max(3, len(groups))]


def match_scalar(kind: Kind, constraint: Constraint, value: Any) -> bool:
    """Whether one stored ``value`` of ``kind`` meets ``constraint`` (PS3.4 C.2.2.2), in memory.

    The rule set the :func:`matches` oracle applies to every scalar; the worklist's oracle uses it too.
    """
    if isinstance(constraint, Universal):
        return True
    if kind is Kind.PN:
        value = normalize_person_name(value)
    if isinstance(constraint, Empty):
        return value is None or value == ""
    if value is None or value == "":
        return False
    if kind is Kind.PN:
        stored = pn_groups(value)
        query = str(constraint.value if isinstance(constraint, SingleValue) else constraint.pattern)  # type: ignore[union-attr]
        for i, q in enumerate(query.split("=")):
            if q == "":
                continue
            s = stored[i] if i < len(stored) else ""
            if isinstance(constraint, Wildcard):
                if not wildcard_regex(q).fullmatch(s):
                    return False
            elif s != q:
                return False
        return True
    if isinstance(constraint, SingleValue):
        if kind in (Kind.INT, Kind.FLOAT):
            return value == constraint.value
        return str(value) == constraint.value
    if isinstance(constraint, ValueList):
        return str(value) in constraint.values
    if isinstance(constraint, Wildcard):
        return wildcard_regex(constraint.pattern).fullmatch(str(value)) is not None
    if isinstance(constraint, Range):
        text = str(value)
        if constraint.low is not None and text < constraint.low:
            return False
        return constraint.high is None or text < prefix_successor(constraint.high)
    if isinstance(constraint, InstantRange):
        if constraint.low is not None and value < constraint.low:
            return False
        return constraint.high is None or value < constraint.high
    raise TypeError(f"constraint {constraint!r} does not apply to a scalar")


def matches(conditions: Sequence[Condition], record: Mapping[str, Any]) -> bool:
    """Whether ``record`` satisfies every condition: the reference semantics the SQL formatter must reproduce.

    Parameters
    ----------
    conditions : sequence of Condition
        The query's conditions (all must hold).
    record : mapping
        Field name → value: ``None``/``""`` when absent, a tuple for :data:`MULTI_FIELDS` (for
        ``waveform_groups`` a tuple of item mappings), naive UTC datetimes for instants.

    Returns
    -------
    bool
    """
    for cond in conditions:
        c = cond.constraint
        if isinstance(c, Universal):
            continue
        value = record.get(cond.field)
        if cond.field in MULTI_FIELDS:
            items = tuple(value or ())
            if isinstance(c, SequenceMatch):
                if not any(matches(c.items, item) for item in items):
                    return False
                continue
            if not any(match_scalar(FIELDS[cond.field], c, v) for v in items):
                return False
            continue
        kind = FIELDS.get(cond.field) or ITEM_FIELDS[cond.field]
        if cond.field == "study_datetime":
            # Combined Study Date + Study Time: only studies that have a date (the formatter concatenates).
            date = record.get("study_date")
            value = None if not date else date + (record.get("study_time") or "")
        if not match_scalar(kind, c, value):
            return False
    return True


# --------------------------------------------------------------------------------------------------------------
# A parsed query


@dataclass(frozen=True, slots=True)
class Query:
    """A validated C-FIND request, ready for the formatter.

    Attributes
    ----------
    model : str
        C-FIND SOP Class UID of the information model.
    level : Level
    conditions : tuple of Condition
        Matching conditions (universal ones left out).
    return_keys : tuple of str
        Keywords to fill in each answer, in identifier order.
    unsupported : tuple of int
        Tags of optional keys the node does not support (returned empty, pending status 0xFF01).
    timezone : timezone or None
        The identifier's Timezone Offset From UTC.
    needs : frozenset of str
        Derived values the answers need (``"modalities"``, ``"sop_classes"``, ``"patient_counts"``,
        ``"waveform_groups"``), so the formatter fetches only those.
    """

    model: str
    level: Level
    conditions: tuple[Condition, ...]
    return_keys: tuple[str, ...] = ()
    unsupported: tuple[int, ...] = ()
    timezone: timezone | None = None
    needs: frozenset[str] = field(default_factory=frozenset)
