"""The C-FIND use case: an identifier :class:`~pydicom.dataset.Dataset` in, matching answers out (PS3.4 C.4.1).

Shared by the network C-FIND handler and ``ecg-node find``. :meth:`QueryService.find` validates the identifier
against the information model (PS3.4 C.6.1 / C.6.2) and the hierarchical search rules (C.4.1.3.1; relational
rules C.4.1.3.2 when the SCU negotiated them), turns it into the catalog's query model
(:mod:`dicom_ecg_node.catalog.query`), runs it (:mod:`dicom_ecg_node.catalog.sql`) and returns one answer
dataset per matching entity of the queried level, in serial order (earliest UTC acquisition first).

Answers
    Every requested key the node knows is filled in; the unique keys of the queried level and the levels above
    are always included. Optional keys the node does not know are returned empty and every pending status is
    then 0xFF01 instead of 0xFF00 (PS3.4 C.4.1.1.4). Their values are not used for matching.
Character set
    pydicom decodes the identifier with its Specific Character Set. Answers that are plain ASCII repeat the
    query's Specific Character Set (if any); otherwise they use the query's when it is a single character set
    without code extensions (PS3.3 C.12.1.1.2) that can encode every value, else ``ISO_IR 192`` (UTF-8).
Encoding
    An answer's text values are encoded here, once, as pydicom's own reader leaves them: raw data elements
    (PS3.5 6.2: even length, UIDs padded with NUL, other text with a space; multiple values joined by a
    backslash) in a :class:`~pydicom.dataset.Dataset`, which converts one when it is read. The network encoder
    (net/fastfind.py) copies the bytes; building each answer through pydicom's ``DataElement`` (value checks and
    conversions per element) cost ~140 us an answer, most of a query with a handful of answers. Answers in a
    single-byte character set other than Latin-1 are built through pydicom.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.query import (
    KEYS,
    PATIENT_ROOT_FIND,
    SPECIAL_KEYS,
    STUDY_ROOT_FIND,
    UNIQUE_KEY,
    WAVEFORM_ITEM_KEYS,
    Condition,
    Empty,
    Key,
    Level,
    Query,
    Range,
    SequenceMatch,
    SingleValue,
    Universal,
    combine_date_time,
    key_level,
    matches,
    model_levels,
    parse_constraint,
    parse_offset_value,
    to_instant_range,
)
from dicom_ecg_node.catalog.sql import Answer, TimelineEntry, fetch_timeline, run_query
from dicom_ecg_node.errors import QueryError

log = logging.getLogger("dicom_ecg_node.query")

#: C-FIND pending statuses (PS3.4 C.4.1.1.4).
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
UTF8 = "ISO_IR 192"
#: Text VRs in the Default Character Repertoire only, and those that use the Specific Character Set (PS3.5 6.1.2.3).
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
CHARSET_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
_TEXT_VRS = ASCII_VRS | CHARSET_VRS
#: Answer character sets whose text this module encodes itself (see the module notes: Encoding).
_RAW_CODECS = {UTF8: "utf_8", "ISO_IR 100": "latin_1"}
_SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)

#: Return-only count keys → answer field.
_COUNTS = {
    "NumberOfPatientRelatedStudies": "n_patient_studies",
    "NumberOfPatientRelatedSeries": "n_patient_series",
    "NumberOfPatientRelatedInstances": "n_patient_instances",
    "NumberOfStudyRelatedSeries": "n_study_series",
    "NumberOfStudyRelatedInstances": "n_study_instances",
    "NumberOfSeriesRelatedInstances": "n_series_instances",
}


@dataclass(frozen=True, slots=True)
class FindRequest:
    """A validated identifier: the catalog query plus what the answers must look like.

    Attributes
    ----------
    query : Query
    charset : list of str
        The identifier's Specific Character Set values (empty when absent).
    timezone_text : str or None
        Timezone Offset From UTC as sent (echoed when requested).
    item_keys : dict
        For a requested sequence key, the item keywords to return.
    unsupported : list of DataElement
        Unknown optional keys, returned empty.
    """

    query: Query
    charset: list[str] = field(default_factory=list)
    timezone_text: str | None = None
    item_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unsupported: tuple[DataElement, ...] = ()


def _text(elem: DataElement) -> str:
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, (list, MultiValue)):
        return "\\".join("" if v is None else str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def _is_universal(c: Any) -> bool:
    return isinstance(c, Universal)


class QueryService:
    """Answer C-FIND identifiers from the catalog.

    Parameters
    ----------
    catalog : Catalog
        An open catalog.
    aet : str
        The node's AE title, returned as Retrieve AE Title.
    """

    def __init__(self, catalog: Catalog, aet: str) -> None:
        self.catalog = catalog
        self.aet = aet
        self._elements: dict[str, tuple[int, str]] = {}  # keyword -> (tag, VR), filled as answers need them

    def _element(self, keyword: str) -> tuple[BaseTag, str]:
        """(tag, VR) of a keyword, looked up once."""
        spec = self._elements.get(keyword)
        if spec is None:
            tag = tag_for_keyword(keyword)
            if tag is None:
                raise KeyError(keyword)
            spec = self._elements[keyword] = (BaseTag(tag), dictionary_VR(tag))
        return spec

    # -- parsing -----------------------------------------------------------------------------------------------

    def parse(self, identifier: Dataset, model: str, *, relational: bool = False) -> FindRequest:
        """Validate ``identifier`` for information model ``model`` and build the catalog query.

        Parameters
        ----------
        identifier : Dataset
            The C-FIND request identifier.
        model : str
            The C-FIND SOP Class UID (Patient Root or Study Root).
        relational : bool
            Relational queries were negotiated (PS3.4 C.4.1.3.2): keys of higher levels may take any matching
            and their unique keys may be omitted.

        Returns
        -------
        FindRequest

        Raises
        ------
        QueryError
            Unknown model, missing or invalid Query/Retrieve Level, a key of a lower level with a value, a
            non-unique key of a higher level with a value (hierarchical), a missing unique key of a higher level
            (hierarchical), or a value the key's VR does not allow.
        """
        levels = model_levels(str(model))
        try:
            raw_level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        except Exception as exc:  # a malformed value pydicom could not convert
            raise QueryError(f"QueryRetrieveLevel: unreadable: {exc}") from exc
        if not raw_level:
            raise QueryError("QueryRetrieveLevel (0008,0052) is missing")
        if raw_level not in Level.__members__ or Level[raw_level] not in levels:
            raise QueryError(f"QueryRetrieveLevel {raw_level!r} is not a level of the {_model_name(model)} model")
        level = Level[raw_level]
        charset: list[str] = []
        tz: timezone | None = None
        tz_text: str | None = None
        constraints: dict[str, Any] = {}
        return_keys: list[str] = []
        unsupported: list[DataElement] = []
        item_keys: dict[str, tuple[str, ...]] = {}
        try:
            elements = list(identifier)
        except Exception as exc:
            raise QueryError(f"identifier cannot be read: {exc}") from exc
        for elem in elements:
            tag = elem.tag
            if tag.is_private or tag.element == 0:
                continue
            kw = elem.keyword
            try:
                text = "" if elem.VR == "SQ" else _text(elem)
            except Exception as exc:
                raise QueryError(f"{kw or tag}: value cannot be decoded: {exc}") from exc
            if kw == "SpecificCharacterSet":
                charset = [v for v in text.split("\\") if v] if text else []
                continue
            if kw == "TimezoneOffsetFromUTC":
                if text.strip():
                    tz, tz_text = parse_offset_value(text), text.strip()
                return_keys.append(kw)
                continue
            if kw in SPECIAL_KEYS:
                if kw != "QueryRetrieveLevel":
                    return_keys.append(kw)
                continue
            key = KEYS.get(kw)
            if key is None:
                unsupported.append(elem)
                continue
            klevel = key_level(key, model)
            if key.vr == "SQ":
                constraint, items = self._parse_sequence(elem, unsupported)
                item_keys[kw] = items
            else:
                # In Study Root the patient keys are STUDY-level keys: Patient ID is not unique there (C.6.2.1).
                unique = key.usage == "U" and klevel == key.level
                constraint = parse_constraint(key, text, unique=unique) if key.matchable else Universal()
            if klevel > level:
                # PS3.4 C.4.1.3.1: keys below the query level are not allowed; an empty one is ignored.
                if not _is_universal(constraint):
                    raise QueryError(f"{kw} is a {klevel.name} key and cannot be matched in a {level.name} query")
                continue
            if klevel < level and key.usage != "U" and not _is_universal(constraint) and not relational:
                raise QueryError(f"{kw} is a non-unique {klevel.name} key: only its unique key may be matched in "
                                 f"a hierarchical {level.name} query (PS3.4 C.4.1.3.1)")
            constraints[kw] = constraint
            return_keys.append(kw)
        # PS3.4 C.4.1.3.1.1: hierarchical queries carry a single value for the unique key of each level above.
        for upper in levels:
            if upper >= level:
                break
            ukw = UNIQUE_KEY[upper]
            got = constraints.get(ukw)
            if not relational and not isinstance(got, SingleValue):
                raise QueryError(f"{ukw}: a single value is required for the unique key of the {upper.name} level "
                                 f"in a hierarchical {level.name} query (PS3.4 C.4.1.3.1)")
        for upper in levels:  # the unique keys of the queried level and above are always answered
            if upper <= level and UNIQUE_KEY[upper] not in return_keys:
                return_keys.append(UNIQUE_KEY[upper])
        conditions = self._conditions(constraints, tz)
        needs = self._needs(level, return_keys)
        query = Query(model, level, tuple(conditions), tuple(return_keys),
                      tuple(int(e.tag) for e in unsupported), tz, frozenset(needs))
        return FindRequest(query, charset, tz_text, item_keys, tuple(unsupported))

    @staticmethod
    def _parse_sequence(elem: DataElement, unsupported: list[DataElement]) -> tuple[Any, tuple[str, ...]]:
        """Sequence matching (PS3.4 C.2.2.2.6) of Waveform Sequence: one item of item keys, or none."""
        items = list(elem.value or [])
        if len(items) > 1:
            raise QueryError(f"{elem.keyword}: sequence matching takes at most one item (PS3.4 C.2.2.2.6)")
        if not items:
            return Universal(), ()
        conds: list[Condition] = []
        keys: list[str] = []
        for sub in items[0]:
            sub_kw = sub.keyword
            if sub_kw not in WAVEFORM_ITEM_KEYS:
                if not sub.tag.is_private and sub.tag.element != 0:
                    unsupported.append(sub)
                continue
            fld, vr = WAVEFORM_ITEM_KEYS[sub_kw]
            c = parse_constraint(Key(sub_kw, Level.IMAGE, vr, fld, "O"), _text(sub))
            keys.append(sub_kw)
            if not _is_universal(c):
                conds.append(Condition(fld, c))
        return (SequenceMatch(tuple(conds)) if conds else Universal()), tuple(keys)

    @staticmethod
    def _conditions(constraints: dict[str, Any], tz: timezone | None) -> list[Condition]:
        """Key constraints → field conditions, with combined date-time and time zone rules (PS3.4 C.2.2.2.5)."""
        out: list[Condition] = []
        date, tm = constraints.get("StudyDate"), constraints.get("StudyTime")
        date_range = isinstance(date, Range)
        if date_range and isinstance(tm, Range):
            combined = combine_date_time(date, tm)  # PS3.4 C.2.2.2.5.1 combined date and time range matching
            if tz is not None:
                out.append(Condition("study_utc", to_instant_range("StudyDate", combined, tz, force=True)))
            else:
                out.append(Condition("study_date", date))  # implied by the combined range; lets the index work
                out.append(Condition("study_datetime", combined))
        else:
            if date_range and tz is not None:
                out.append(Condition("study_utc", to_instant_range("StudyDate", date, tz, force=True)))
            elif date is not None and not _is_universal(date):
                out.append(Condition("study_date", date))
            if tm is not None and not _is_universal(tm):
                out.append(Condition("study_time", tm))  # a time of day alone is never shifted
        for kw, c in constraints.items():
            if kw in ("StudyDate", "StudyTime") or _is_universal(c):
                continue
            key = KEYS[kw]
            if kw == "AcquisitionDateTime" and isinstance(c, Range):
                instant = to_instant_range(kw, c, tz, force=False)
                out.append(Condition("acquisition_utc", instant) if instant else Condition(key.field or kw, c))
                continue
            if key.field is None:
                continue
            if isinstance(c, Empty) and key.field in ("modalities", "sop_classes"):
                raise QueryError(f"{kw}: empty value matching is not supported for this key")
            out.append(Condition(key.field, c))
        return out

    @staticmethod
    def _needs(level: Level, return_keys: list[str]) -> set[str]:
        needs: set[str] = set()
        keys = set(return_keys)
        if "ModalitiesInStudy" in keys:
            needs.add("modalities")
        if "SOPClassesInStudy" in keys:
            needs.add("sop_classes")
        if level > Level.PATIENT and keys & {"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                                             "NumberOfPatientRelatedInstances"}:
            needs.add("patient_counts")
        if level > Level.STUDY and keys & {"NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"}:
            needs.add("study_counts")
        if level > Level.SERIES and "NumberOfSeriesRelatedInstances" in keys:
            needs.add("series_counts")
        if "WaveformSequence" in keys:
            needs.add("waveform_groups")
        return needs

    # -- running -----------------------------------------------------------------------------------------------

    def find(self, identifier: Dataset, model: str, *, relational: bool = False) -> Iterator[tuple[int, Dataset]]:
        """Validate, run the query, and return an iterator of ``(pending status, answer)`` in serial order.

        The identifier is validated and the SQL run before this returns, so errors surface here and not in
        the middle of the answers.

        Parameters
        ----------
        identifier : Dataset
            The C-FIND request identifier.
        model : str
            C-FIND SOP Class UID of the information model.
        relational : bool
            Relational queries negotiated (see :meth:`parse`).

        Returns
        -------
        iterator of (int, Dataset)
            0xFF00, or 0xFF01 when optional keys were not supported, with each answer.

        Raises
        ------
        QueryError
            Invalid identifier.
        CatalogError
            The database failed.
        """
        started = time.perf_counter()
        request = self.parse(identifier, model, relational=relational)
        answers = run_query(self.catalog, request.query)
        log.info("C-FIND %s %s: %d answers in %.1f ms", _model_name(model), request.query.level.name,
                 len(answers), (time.perf_counter() - started) * 1e3)
        status = PENDING_WARNING if request.unsupported else PENDING
        return ((status, self.answer(request, a)) for a in answers)

    def find_answers(self, identifier: Dataset, model: str, *, relational: bool = False) -> list[Answer]:
        """The raw answers (field name → value) of an identifier, for the CLI and tests."""
        return run_query(self.catalog, self.parse(identifier, model, relational=relational).query)

    def answer(self, request: FindRequest, answer: Answer) -> Dataset:
        """The response identifier of one answer (PS3.4 C.4.1.2.2.2)."""
        q, v = request.query, answer.values
        values: list[tuple[str, Any]] = [("QueryRetrieveLevel", q.level.name)]
        sequences: list[tuple[str, list[Dataset]]] = []
        for kw in q.return_keys:
            if kw in _COUNTS:
                value = v.get(_COUNTS[kw])
                values.append((kw, None if value is None else int(value)))
            elif kw == "ModalitiesInStudy":
                values.append((kw, list(v.get("modalities", ())) or None))
            elif kw == "SOPClassesInStudy":
                values.append((kw, list(v.get("sop_classes", ())) or None))
            elif kw == "WaveformSequence":
                # PS3.4 C.2.2.2.6: the items that matched the sequence's item keys (all when none were given).
                seq = next((c.constraint for c in q.conditions if c.field == "waveform_groups"), None)
                items = [g for g in v.get("waveform_groups", ())
                         if not isinstance(seq, SequenceMatch) or matches(seq.items, g)]
                sequences.append((kw, [self._group_item(g, request.item_keys.get(kw, ())) for g in items]))
            elif kw == "RetrieveAETitle":
                values.append((kw, self.aet))
            elif kw == "InstanceAvailability":
                values.append((kw, "ONLINE"))
            elif kw == "TimezoneOffsetFromUTC":
                values.append((kw, request.timezone_text))
            elif kw in KEYS:
                fld = KEYS[kw].field
                value = v.get(fld) if fld else None
                values.append((kw, None if value is None or value == "" else value))
            else:
                values.append((kw, None))
        # Every text value takes part (a non-ASCII code string from a careless cart then makes the answer UTF-8
        # rather than unencodable).
        texts = [value_text(value) for kw, value in values
                 if value is not None and self._element(kw)[1] in _TEXT_VRS]
        texts += [str(e.value) for _, items in sequences for item in items for e in item.iterall()
                  if e.VR in _TEXT_VRS and e.value is not None]
        charset, codec = self._charset(texts, request.charset)
        elements: dict[BaseTag, Any] = {}
        if codec is not None:
            for kw, value in values:
                tag, vr = self._element(kw)
                if vr in _TEXT_VRS or value is None:
                    data = b"" if value is None else encode_text(vr, value, codec)
                    elements[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)
                else:
                    elements[tag] = DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE)
            if charset:
                data = encode_text("CS", charset, "ascii")
                elements[_SPECIFIC_CHARACTER_SET] = RawDataElement(_SPECIFIC_CHARACTER_SET, "CS", len(data), data, 0,
                                                                   False, True)
            ds = Dataset(elements)
        else:  # a character set pydicom encodes (see the module notes)
            ds = Dataset()
            for kw, value in values:
                tag, vr = self._element(kw)
                ds[tag] = DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE)
            if charset:
                ds.SpecificCharacterSet = charset
        for kw, items in sequences:
            setattr(ds, kw, items)
        for elem in request.unsupported:
            if elem.tag not in ds:
                ds.add_new(elem.tag, elem.VR, [] if elem.VR == "SQ" else None)
        return ds

    @staticmethod
    def _group_item(group: dict[str, Any], keys: tuple[str, ...]) -> Dataset:
        item = Dataset()
        for kw in keys:
            value = group.get(WAVEFORM_ITEM_KEYS[kw][0])
            setattr(item, kw, value)
        return item

    @staticmethod
    def _charset(texts: list[str], charset: list[str]) -> tuple[str | list[str] | None, str | None]:
        """An answer's Specific Character Set (see the module notes) and the codec its text is encoded with here.

        The codec is ``None`` when pydicom encodes the answer (a single-byte set other than Latin-1).
        """
        if all(t.isascii() for t in texts):
            return (charset if len(charset) > 1 else charset[0]) if charset else None, "ascii"
        if charset and len(charset) == 1 and not charset[0].startswith("ISO 2022"):
            try:
                codec = convert_encodings(charset)[0]
                for t in texts:
                    t.encode(codec)
            except (LookupError, UnicodeEncodeError, ValueError):
                pass
            else:
                return charset[0], _RAW_CODECS.get(charset[0])
        return UTF8, "utf_8"

    # -- timeline ----------------------------------------------------------------------------------------------

    def timeline(self, patient_id: str, issuer: str | None = None) -> list[TimelineEntry]:
        """A patient's ECGs in true time order, with cart measurements (see :func:`fetch_timeline`)."""
        return fetch_timeline(self.catalog, patient_id, issuer)


def local_time(entry: TimelineEntry) -> datetime | None:
    """The acquisition time in the cart's own offset (aware), from the UTC time and stored offset."""
    if entry.acquisition_utc is None:
        return None
    offset = timedelta(minutes=entry.utc_offset_minutes or 0)
    return entry.acquisition_utc.astimezone(timezone(offset)) if entry.utc_offset_minutes is not None \
        else entry.acquisition_utc.astimezone(UTC)


def value_text(value: Any) -> str:
    """The text of a value as PS3.5 6.2 writes it (numbers as digits; multiple values joined by a backslash)."""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join("" if v is None else str(v) for v in value)
    return str(value)


def encode_text(vr: str, value: Any, codec: str) -> bytes:
    """A text value field (PS3.5 6.2): encoded with ``codec``, padded to even length with NUL (UI) or a space.

    Raises
    ------
    UnicodeEncodeError
        ``codec`` cannot encode the value.
    """
    data = value_text(value).encode(codec)
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return data


def _model_name(model: str) -> str:
    return {PATIENT_ROOT_FIND: "Patient Root", STUDY_ROOT_FIND: "Study Root"}.get(str(model), str(model))
