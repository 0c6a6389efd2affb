"""Property: for random catalogs and random identifiers, the SQL answer set equals the ``matches()`` oracle's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from querydata import ECG12, GENERAL_ECG, PDF, compare, make_record

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.query import STUDY_ROOT_FIND

ALPHABET = "aAbB%_*?^ éÉü山田=-."
NAME_ALPHABET = "aAbBéÉü山%_ "
OFFSETS = [-8 * 60, -5 * 60, -4 * 60, 0, 5 * 60 + 30, 14 * 60]


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


def _name() -> st.SearchStrategy[str | None]:
    comp = st.text(NAME_ALPHABET, min_size=1, max_size=4)
    group = st.lists(comp, min_size=1, max_size=3).map("^".join)
    return st.one_of(st.none(), st.lists(group, min_size=1, max_size=3).map("=".join))


@st.composite
def records(draw: st.DrawFn) -> list:
    n_patients = draw(st.integers(1, 4))
    patients = [(draw(st.text("PQ%_a", min_size=1, max_size=3)) + str(i), draw(_name()),
                 draw(st.sampled_from([None, "19700101", "19991231"])), draw(st.sampled_from([None, "F", "M"])))
                for i in range(n_patients)]
    out = []
    for i in range(draw(st.integers(1, 10))):
        pid, name, birth, sex = draw(st.sampled_from(patients))
        study = f"1.2.{draw(st.integers(0, 5))}"
        timed = draw(st.booleans())
        when = None
        if timed:
            base = datetime(2026, 3, 7, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
            when = base.astimezone(timezone(timedelta(minutes=draw(st.sampled_from(OFFSETS)))))
        out.append(make_record(
            f"{study}.{i}", patient_id=pid, name=name, birth=birth, sex=sex, study=study,
            series=f"{study}.{draw(st.integers(0, 1))}", when=when,
            study_date=None if timed else draw(st.sampled_from([None, "20260306", "20260308"])),
            study_time=None if timed else draw(st.sampled_from([None, "0930", "235959.5"])),
            accession=draw(st.one_of(st.none(), st.text(ALPHABET, min_size=1, max_size=4))),
            modality=draw(st.sampled_from(["ECG", "HD", "DOC"])),
            sop_class=draw(st.sampled_from([ECG12, GENERAL_ECG, PDF])),
            labels=draw(st.sampled_from([(), ("RHYTHM",), ("RHYTHM", "MEDIAN")])),
            series_number=draw(st.sampled_from([None, 1, 2]))))
    return out


def _wildcardify(draw: st.DrawFn, value: str) -> str:
    chars = list(value)
    for i in range(len(chars)):
        if draw(st.integers(0, 3)) == 0:
            chars[i] = draw(st.sampled_from(["*", "?"]))
    return "".join(chars)


def _text_value(draw: st.DrawFn, existing: list[str | None]) -> str:
    kind = draw(st.sampled_from(["universal", "single", "wild", "empty", "random"]))
    seen = [e for e in existing if e]
    if kind == "universal" or (kind in ("single", "wild") and not seen):
        return draw(st.sampled_from(["", "*"]))
    if kind == "empty":
        return '""'
    if kind == "random":
        return draw(st.text(ALPHABET.replace("=", ""), min_size=1, max_size=4))
    value = draw(st.sampled_from(seen))
    if kind == "wild":
        value = _wildcardify(draw, value)
    if draw(st.booleans()):
        value = value.swapcase()
    return value


def _date_range(draw: st.DrawFn, values: list[str]) -> str:
    days = ["20260306", "20260307", "20260308", "20260309", "20260310"]
    lo, hi = sorted([draw(st.sampled_from(days)), draw(st.sampled_from(days))])
    return draw(st.sampled_from([lo, f"{lo}-{hi}", f"-{hi}", f"{lo}-"]))


def _time_range(draw: st.DrawFn) -> str:
    times = ["0000", "0930", "12", "235959", "1015", "0200"]
    lo, hi = draw(st.sampled_from(times)), draw(st.sampled_from(times))
    return draw(st.sampled_from([lo, f"{lo}-{hi}", f"-{hi}", f"{lo}-"]))


def _dt_range(draw: st.DrawFn) -> str:
    base = ["2026030701", "20260308", "202603081230", "20260309235959.5"]
    offs = ["", "-0500", "+0530", "-0800", "+0000"]
    lo = draw(st.sampled_from(base)) + draw(st.sampled_from(offs))
    hi = draw(st.sampled_from(base)) + draw(st.sampled_from(offs))
    return draw(st.sampled_from([lo, f"{lo}-{hi}", f"-{hi}", f"{lo}-"]))


@st.composite
def identifiers(draw: st.DrawFn, recs: list) -> Dataset:
    level = draw(st.sampled_from(["STUDY", "SERIES", "IMAGE"]))
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    if draw(st.booleans()):
        ds.PatientID = _text_value(draw, [r.patient.patient_id for r in recs])
    if draw(st.booleans()):
        ds.PatientName = _text_value(draw, [r.patient.name for r in recs])
    if draw(st.booleans()):
        ds.AccessionNumber = _text_value(draw, [r.study.accession_number for r in recs])
    if draw(st.booleans()):
        ds.StudyDate = _date_range(draw, [])
    if draw(st.booleans()):
        ds.StudyTime = _time_range(draw)
    if draw(st.booleans()):
        ds.TimezoneOffsetFromUTC = draw(st.sampled_from(["-0500", "+0530", "+0000"]))
    if draw(st.booleans()):
        ds.PatientBirthDate = draw(st.sampled_from(['""', "19700101", "-19800101", "19800101-"]))
    if draw(st.booleans()):
        uids = sorted({r.study.study_instance_uid for r in recs})
        ds.StudyInstanceUID = draw(st.lists(st.sampled_from([*uids, "9.9"]), min_size=1, max_size=3))
    if draw(st.booleans()):
        ds.ModalitiesInStudy = draw(st.sampled_from(["ECG", "DOC", ["HD", "DOC"], "E?G", "*"]))
    if draw(st.booleans()):
        ds.SOPClassesInStudy = draw(st.sampled_from([PDF, [ECG12, GENERAL_ECG]]))
    if level in ("SERIES", "IMAGE") and draw(st.booleans()):
        ds.Modality = draw(st.sampled_from(["ECG", "D*", '""', ["HD", "ECG"]]))
    if level in ("SERIES", "IMAGE") and draw(st.booleans()):
        ds.SeriesNumber = draw(st.sampled_from(["1", "2"]))
    if level == "IMAGE":
        if draw(st.booleans()):
            ds.AcquisitionDateTime = _dt_range(draw)
        if draw(st.booleans()):
            item = Dataset()
            item.MultiplexGroupLabel = draw(st.sampled_from(["MEDIAN", "RHY*", "", "?EDIAN"]))
            if draw(st.booleans()):
                item.NumberOfWaveformChannels = draw(st.sampled_from([8, 12]))
            ds.WaveformSequence = [item]
        if draw(st.booleans()):
            ds.SOPClassUID = draw(st.sampled_from([PDF, ECG12]))
    return ds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_sql_answer_set_equals_the_oracle(catalog: Catalog, data: st.DataObject) -> None:
    recs = data.draw(records())
    catalog.clear()
    for r in recs:
        catalog.add_instance(r)
    for _ in range(4):
        ds = data.draw(identifiers(recs))
        sql, oracle = compare(catalog, recs, ds, STUDY_ROOT_FIND, relational=True)
        assert len(sql) == len(set(sql))
        assert set(sql) == oracle, (ds, recs)
