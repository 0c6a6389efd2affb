"""The query formatter on SQLite and PostgreSQL: every matching type of PS3.4 C.2.2.2, checked against hand-picked
answers and the in-memory ``matches()`` oracle; serial order; statement counts; identifier validation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydicom.dataset import Dataset
from querydata import ECG12, GENERAL_ECG, PDF, compare, identifier, make_record

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.query import PATIENT_ROOT_FIND as PR
from dicom_ecg_node.catalog.query import STUDY_ROOT_FIND as SR
from dicom_ecg_node.catalog.sql import like_pattern
from dicom_ecg_node.errors import QueryError
from dicom_ecg_node.services.query import PENDING, PENDING_WARNING, QueryService

NY = ZoneInfo("America/New_York")
M5 = timezone(timedelta(hours=-5))
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))

RECORDS = [
    make_record("1.1", patient_id="P1", name="Doe^Jane", study="1.2.1", accession="A%_1",
                when=datetime(2026, 3, 8, 1, 50, tzinfo=NY), description="Rest ECG", referring="Smith^Ann"),
    make_record("1.2", patient_id="P1", name="Doe^Jane", study="1.2.2", accession="AB_1",
                when=datetime(2026, 3, 8, 3, 10, tzinfo=NY), labels=("RHYTHM", "MEDIAN")),
    make_record("1.3", patient_id="P1", name="Doe^Jane", study="1.2.2", series="1.2.2.9", modality="DOC",
                sop_class=PDF, when=datetime(2026, 3, 8, 3, 12, tzinfo=NY), labels=()),
    make_record("2.1", patient_id="p1", name="DOE^JOHN", study="1.2.3", accession="A%X1",
                when=datetime(2026, 3, 8, 10, 0, tzinfo=IST), sex="M", birth="19800505"),
    make_record("3.1", patient_id="P3", name="Yamada^Tarou=山田^太郎=やまだ^たろう", study="1.2.4",
                when=datetime(2026, 3, 7, 21, 0, tzinfo=PST), sop_class=GENERAL_ECG, birth=None),
    make_record("4.1", patient_id="P%_4", name="Müller^Jürgen", study="1.2.5", accession=None, study_id=None,
                when=datetime(2025, 12, 31, 23, 30, tzinfo=M5), sex=None),
    make_record("5.1", patient_id="P5", name=None, study="1.2.6", when=None, study_date="20240229",
                study_time="1015", modality="ECG"),
]


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    cat = Catalog.open(catalog_url)
    for r in RECORDS:
        cat.add_instance(r)
    yield cat
    cat.close()


def check(catalog: Catalog, ds: Dataset, expected: set, model: str = SR, *, relational: bool = True) -> list:
    sql, oracle = compare(catalog, RECORDS, ds, model, relational=relational)
    assert len(sql) == len(set(sql)), "one answer per entity"
    assert set(sql) == oracle, "SQL and oracle disagree"
    assert set(sql) == expected
    return sql


# -- single value, universal, list of UID ----------------------------------------------------------------------

def test_single_value_is_case_sensitive_except_person_names(catalog: Catalog) -> None:
    check(catalog, identifier("STUDY", PatientID="P1"), {"1.2.1", "1.2.2"})
    check(catalog, identifier("STUDY", PatientID="p1"), {"1.2.3"})
    check(catalog, identifier("STUDY", PatientName="DOE^JANE"), {"1.2.1", "1.2.2"})
    check(catalog, identifier("STUDY", PatientName="doe^jane^^"), {"1.2.1", "1.2.2"})
    check(catalog, identifier("PATIENT", PatientName="müller^jürgen"), {("P%_4", "")}, PR)
    check(catalog, identifier("STUDY", StudyDescription="rest ecg"), set())
    check(catalog, identifier("STUDY", StudyDescription="Rest ECG"), {"1.2.1"})
    check(catalog, identifier("STUDY", ReferringPhysicianName="SMITH^ANN"), {"1.2.1"})


def test_universal_matching(catalog: Catalog) -> None:
    everything = {"1.2.1", "1.2.2", "1.2.3", "1.2.4", "1.2.5", "1.2.6"}
    check(catalog, identifier("STUDY", PatientName="", AccessionNumber="*", StudyDate=""), everything)
    check(catalog, identifier("STUDY", PatientName="*"), everything)
    # Only delimiters: a zero-length name (PS3.5 6.2.1), so 1.2.6, whose patient has no name, matches too.
    check(catalog, identifier("STUDY", PatientName="^"), everything)
    check(catalog, identifier("STUDY", PatientName="^=^"), everything)


def test_list_of_uids(catalog: Catalog) -> None:
    check(catalog, identifier("STUDY", StudyInstanceUID=["1.2.1", "1.2.4", "9.9"]), {"1.2.1", "1.2.4"})
    check(catalog, identifier("IMAGE", SOPClassUID=[PDF, GENERAL_ECG]), {"1.3", "3.1"})
    check(catalog, identifier("STUDY", ModalitiesInStudy=["DOC", "XX"]), {"1.2.2"})


# -- wildcards ---------------------------------------------------------------------------------------------------

def test_wildcards_never_let_percent_or_underscore_act_as_sql_wildcards(catalog: Catalog) -> None:
    assert like_pattern("A%_*?\\") == "A\\%\\_%_\\\\"
    check(catalog, identifier("STUDY", AccessionNumber="A%_*"), {"1.2.1"})
    check(catalog, identifier("STUDY", AccessionNumber="A_*"), set())  # "_" is literal: no "A_..." stored
    check(catalog, identifier("STUDY", AccessionNumber="A%?1"), {"1.2.1", "1.2.3"})
    check(catalog, identifier("STUDY", AccessionNumber="?%*"), {"1.2.1", "1.2.3"})
    check(catalog, identifier("STUDY", AccessionNumber="%*"), set())
    check(catalog, identifier("PATIENT", PatientID="P%_*"), {("P%_4", "")}, PR)
    check(catalog, identifier("PATIENT", PatientID="P__4"), set(), PR)


def test_wildcards_case(catalog: Catalog) -> None:
    check(catalog, identifier("STUDY", PatientName="DOE*"), {"1.2.1", "1.2.2", "1.2.3"})
    check(catalog, identifier("STUDY", PatientName="d?e^j*n"), {"1.2.3"})
    check(catalog, identifier("STUDY", StudyDescription="rest*"), set())  # LO is case-sensitive (GLOB on SQLite)
    check(catalog, identifier("STUDY", StudyDescription="R?st*"), {"1.2.1"})
    check(catalog, identifier("PATIENT", PatientName="MÜL*"), {("P%_4", "")}, PR)


def test_multi_component_person_names(catalog: Catalog) -> None:
    check(catalog, identifier("STUDY", PatientName="yamada^tarou"), {"1.2.4"})
    check(catalog, identifier("STUDY", PatientName="=山田^太郎"), {"1.2.4"})
    check(catalog, identifier("STUDY", PatientName="=山田*"), {"1.2.4"})
    check(catalog, identifier("STUDY", PatientName="==やまだ*"), {"1.2.4"})
    check(catalog, identifier("STUDY", PatientName="YAMADA*=山田*"), {"1.2.4"})
    check(catalog, identifier("STUDY", PatientName="YAMADA*=田中*"), set())
    check(catalog, identifier("STUDY", PatientName="山田*"), set())  # not the alphabetic group


# -- ranges ---------------------------------------------------------------------------------------------------------

def test_date_ranges(catalog: Catalog) -> None:
    check(catalog, identifier("STUDY", StudyDate="20260308"), {"1.2.1", "1.2.2", "1.2.3"})
    check(catalog, identifier("STUDY", StudyDate="20260307-20260308"), {"1.2.1", "1.2.2", "1.2.3", "1.2.4"})
    check(catalog, identifier("STUDY", StudyDate="-20251231"), {"1.2.5", "1.2.6"})
    check(catalog, identifier("STUDY", StudyDate="20260101-"), {"1.2.1", "1.2.2", "1.2.3", "1.2.4"})
    check(catalog, identifier("PATIENT", PatientBirthDate="19750101-"), {("p1", "")}, PR)


def test_time_ranges_are_inclusive_at_their_precision(catalog: Catalog) -> None:
    check(catalog, identifier("STUDY", StudyTime="0310"), {"1.2.2"})  # 031000 is within minute 03:10
    check(catalog, identifier("STUDY", StudyTime="-0150"), {"1.2.1"})  # 015000 included
    check(catalog, identifier("STUDY", StudyTime="1000-1015"), {"1.2.3", "1.2.6"})
    check(catalog, identifier("STUDY", StudyTime="2100-"), {"1.2.4", "1.2.5"})


def test_datetime_ranges_with_negative_offsets(catalog: Catalog) -> None:
    # 2026-03-08 03:10-0400 (EDT) is 07:10Z; 01:50-0500 (EST) is 06:50Z.
    check(catalog, identifier("IMAGE", AcquisitionDateTime="20260308020000-0500-"), {"1.2", "1.3"})
    check(catalog, identifier("IMAGE", AcquisitionDateTime="-20260308015500-0500"), {"1.1", "3.1", "4.1", "2.1"})
    check(catalog, identifier("IMAGE", AcquisitionDateTime="20251231-0500-20251231-0500"), {"4.1"})
    # No offset anywhere: the cart's wall clock as written.
    check(catalog, identifier("IMAGE", AcquisitionDateTime="2026030803-2026030803"), {"1.2", "1.3"})
    check(catalog, identifier("IMAGE", AcquisitionDateTime="202603"), {"1.1", "1.2", "1.3", "2.1", "3.1"})


def test_combined_study_date_and_time(catalog: Catalog) -> None:
    # PS3.4 C.2.2.2.5.1: 2026-03-07 20:00 to 2026-03-08 02:00, not "20:00-02:00 on each day".
    check(catalog, identifier("STUDY", StudyDate="20260307-20260308", StudyTime="2000-0200"), {"1.2.1", "1.2.4"})
    check(catalog, identifier("STUDY", StudyDate="20260308", StudyTime="0300-"), {"1.2.2", "1.2.3"})
    check(catalog, identifier("STUDY", StudyDate="-20260308", StudyTime="-0200"),
          {"1.2.1", "1.2.4", "1.2.5", "1.2.6"})


def test_timezone_offset_in_the_query_shifts_study_and_acquisition_times(catalog: Catalog) -> None:
    # 20260308 in +0000 is [2026-03-08T00:00Z, 2026-03-09T00:00Z): the New York ECGs (06:50Z, 07:10Z, 07:12Z) and
    # the +0530 one (04:30Z); the -0800 one was 2026-03-08T05:00Z: included too.
    check(catalog, identifier("STUDY", StudyDate="20260308", TimezoneOffsetFromUTC="+0000"),
          {"1.2.1", "1.2.2", "1.2.3", "1.2.4"})
    # In +0530 the same local day starts at 2026-03-07T18:30Z and ends at 2026-03-08T18:30Z.
    check(catalog, identifier("STUDY", StudyDate="20260308", StudyTime="0000-1000",
                              TimezoneOffsetFromUTC="+0530"), {"1.2.3"})
    check(catalog, identifier("IMAGE", AcquisitionDateTime="2026030801-2026030802",
                              TimezoneOffsetFromUTC="-0500"), {"1.1", "1.2", "1.3"})
    check(catalog, identifier("IMAGE", AcquisitionDateTime="2026030801-2026030802",
                              TimezoneOffsetFromUTC="-0400"), {"1.1", "3.1"})


# -- sequence, empty value ------------------------------------------------------------------------------------------

def test_sequence_matching(catalog: Catalog) -> None:
    item = Dataset()
    item.MultiplexGroupLabel = "MEDIAN"
    check(catalog, identifier("IMAGE", WaveformSequence=[item]), {"1.2"})
    item = Dataset()
    item.MultiplexGroupLabel = "RHY*"
    item.NumberOfWaveformChannels = 12
    check(catalog, identifier("IMAGE", WaveformSequence=[item]), {"1.1", "1.2", "2.1", "3.1", "4.1", "5.1"})
    item.NumberOfWaveformChannels = 8
    check(catalog, identifier("IMAGE", WaveformSequence=[item]), set())
    check(catalog, identifier("IMAGE", WaveformSequence=[]), {"1.1", "1.2", "1.3", "2.1", "3.1", "4.1", "5.1"})


def test_empty_value_matching(catalog: Catalog) -> None:
    check(catalog, identifier("STUDY", AccessionNumber='""'), {"1.2.4", "1.2.5", "1.2.6"})
    check(catalog, identifier("STUDY", StudyID='""'), {"1.2.5"})
    check(catalog, identifier("PATIENT", PatientName='""'), {("P5", "")}, PR)
    check(catalog, identifier("PATIENT", PatientSex='""'), {("P%_4", "")}, PR)
    check(catalog, identifier("STUDY", PatientBirthDate='""'), {"1.2.4"})
    with pytest.raises(QueryError, match="unique key"):
        QueryService(catalog, "X").parse(identifier("STUDY", StudyInstanceUID='""'), SR)


# -- levels, answers, order ---------------------------------------------------------------------------------------

def test_one_answer_per_entity_with_counts_and_derived_keys(catalog: Catalog) -> None:
    svc = QueryService(catalog, "ECGNODE")
    ds = identifier("STUDY", PatientID="P1", ModalitiesInStudy="", SOPClassesInStudy="",
                    NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="",
                    NumberOfPatientRelatedStudies="", NumberOfPatientRelatedInstances="", StudyDate="",
                    RetrieveAETitle="")
    answers = [a for _s, a in svc.find(ds, SR)]
    assert [a.StudyInstanceUID for a in answers] == ["1.2.1", "1.2.2"]
    two = answers[1]
    assert list(two.ModalitiesInStudy) == ["DOC", "ECG"]
    assert set(two.SOPClassesInStudy) == {ECG12, PDF}
    assert (two.NumberOfStudyRelatedSeries, two.NumberOfStudyRelatedInstances) == (2, 2)
    assert (two.NumberOfPatientRelatedStudies, two.NumberOfPatientRelatedInstances) == (2, 3)
    assert two.RetrieveAETitle == "ECGNODE" and two.QueryRetrieveLevel == "STUDY"

    ds = identifier("PATIENT", PatientID="P1", NumberOfPatientRelatedSeries="", PatientBirthDate="",
                    IssuerOfPatientID="")
    (status, a), = list(svc.find(ds, PR))
    assert status == PENDING and a.NumberOfPatientRelatedSeries == 3 and a.PatientBirthDate == "19700101"

    ds = identifier("SERIES", StudyInstanceUID="1.2.2", Modality="", NumberOfSeriesRelatedInstances="",
                    SeriesNumber="")
    got = {a.SeriesInstanceUID: (a.Modality, a.NumberOfSeriesRelatedInstances) for _s, a in svc.find(ds, SR)}
    assert got == {"1.2.2.1": ("ECG", 1), "1.2.2.9": ("DOC", 1)}

    ds = identifier("IMAGE", StudyInstanceUID="1.2.2", SeriesInstanceUID="1.2.2.1", SOPInstanceUID="",
                    SOPClassUID="", InstanceNumber="", AcquisitionDateTime="", ContentDate="", ContentTime="")
    (status, a), = list(svc.find(ds, SR))
    assert (a.SOPInstanceUID, a.SOPClassUID, a.InstanceNumber, a.AcquisitionDateTime, a.ContentDate,
            a.ContentTime) == ("1.2", ECG12, 1, "20260308031000-0400", "20260308", "031000")


def test_unsupported_optional_key_is_returned_empty_with_ff01(catalog: Catalog) -> None:
    ds = identifier("STUDY", PatientID="P3", PatientComments="anything", InstitutionName="")
    (status, a), = list(QueryService(catalog, "X").find(ds, SR))
    assert status == PENDING_WARNING
    assert a.PatientComments in (None, "") and a.InstitutionName in (None, "")


def test_serial_order_across_dst_and_zones(catalog_url: str) -> None:
    records = [
        # Fall back in New York on 2026-11-01: 01:30 EDT (05:30Z) comes before 01:10 EST (06:10Z).
        make_record("9.1", study="9.1", when=datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=NY)),
        make_record("9.2", study="9.2", when=datetime(2026, 11, 1, 1, 30, fold=0, tzinfo=NY)),
        # Spring forward on 2026-03-08: 01:59 EST (06:59Z) then 03:00 EDT (07:00Z).
        make_record("9.3", study="9.3", when=datetime(2026, 3, 8, 3, 0, tzinfo=NY)),
        make_record("9.4", study="9.4", when=datetime(2026, 3, 8, 1, 59, tzinfo=NY)),
        # Zones: 2026-03-07 21:00 -0800 is 05:00Z, after 2026-03-08 10:00 +0530 (04:30Z).
        make_record("9.5", study="9.5", when=datetime(2026, 3, 7, 21, 0, tzinfo=PST)),
        make_record("9.6", study="9.6", when=datetime(2026, 3, 8, 10, 0, tzinfo=IST)),
        make_record("9.7", study="9.7", when=None, study_date="20200101"),
    ]
    expected = ["9.6", "9.5", "9.4", "9.3", "9.2", "9.1", "9.7"]
    with Catalog.open(catalog_url) as cat:
        for r in reversed(records):
            cat.add_instance(r)
        svc = QueryService(cat, "X")
        images = [a.SOPInstanceUID for _s, a in svc.find(identifier("IMAGE", PatientID="P1"), SR, relational=True)]
        assert images == expected
        studies = [a.StudyInstanceUID for _s, a in svc.find(identifier("STUDY", PatientID="P1"), SR)]
        assert studies == expected
        assert [e.sop_instance_uid for e in svc.timeline("P1")] == expected


def _count_selects(catalog: Catalog, fn) -> int:
    seen: list[str] = []

    def hook(event) -> None:
        seen.append(event.sql)

    catalog.db.query_hooks.append(hook)
    try:
        fn()
    finally:
        catalog.db.query_hooks.remove(hook)
    return len([q for q in seen if q.lstrip().upper().startswith("SELECT")])


def test_study_level_answers_take_a_fixed_number_of_statements(catalog_url: str) -> None:
    ds = identifier("STUDY", PatientName="*", ModalitiesInStudy="", SOPClassesInStudy="",
                    NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="",
                    NumberOfPatientRelatedStudies="")
    with Catalog.open(catalog_url) as cat:
        svc = QueryService(cat, "X")
        cat.add_instance(make_record("7.0", study="7.0"))
        small = _count_selects(cat, lambda: list(svc.find(ds, SR)))
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(1, 60):
            cat.add_instance(make_record(f"7.{i}", patient_id=f"Q{i % 7}", study=f"7.{i // 2}",
                                         series=f"7.{i // 2}.{i % 2}", when=t0 + timedelta(hours=i),
                                         sop_class=PDF if i % 2 else ECG12))
        big = _count_selects(cat, lambda: list(svc.find(ds, SR)))
        assert len(list(svc.find(ds, SR))) == 30
    assert small == big == 4  # answers + modalities + SOP classes + patient counts


# -- identifier validation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "ds", "message"), [
    (SR, identifier("STUDY"), None),
    (SR, Dataset(), "QueryRetrieveLevel"),
    (SR, identifier("PATIENT"), "not a level of the Study Root"),
    (PR, identifier("FRAME"), "not a level"),
    ("1.2.3", identifier("STUDY"), "unknown query information model"),
    (SR, identifier("STUDY", StudyDate="2026-01-01"), "not a valid DA range"),
    (SR, identifier("STUDY", StudyDate="20260101-20250101"), "ends before"),
    (SR, identifier("STUDY", StudyDate="2026*"), "not a valid DA"),
    (SR, identifier("STUDY", StudyTime="25"), None),
    (SR, identifier("STUDY", StudyTime="1o00"), "not a valid TM"),
    (SR, identifier("IMAGE", StudyInstanceUID="1", SeriesInstanceUID="2", AcquisitionDateTime="2026-01-01-"),
     "not a valid DT"),
    (SR, identifier("STUDY", TimezoneOffsetFromUTC="0500"), "TimezoneOffsetFromUTC"),
    (SR, identifier("STUDY", StudyInstanceUID="1.2.*"), "wildcards are not allowed"),
    (SR, identifier("STUDY", SOPInstanceUID="1.2.3"), "IMAGE key"),
    (PR, identifier("STUDY", StudyDate="20260101"), "PatientID"),
    (PR, identifier("STUDY", PatientID="P1", PatientName="Doe*"), "non-unique PATIENT key"),
    (SR, identifier("SERIES", Modality="ECG"), "StudyInstanceUID"),
    (SR, identifier("IMAGE", StudyInstanceUID="1.2"), "SeriesInstanceUID"),
])
def test_invalid_identifiers_raise_query_error(tmp_path, model: str, ds: Dataset, message: str | None) -> None:
    with Catalog.open(f"sqlite:///{tmp_path / 'c.sqlite'}") as cat:
        svc = QueryService(cat, "X")
        if message is None:
            svc.parse(ds, model)  # valid
            return
        with pytest.raises(QueryError, match=message):
            svc.parse(ds, model, relational=False)


def test_relational_queries_lift_the_hierarchical_rules(catalog: Catalog) -> None:
    check(catalog, identifier("IMAGE", PatientID="P1"), {"1.1", "1.2", "1.3"}, PR, relational=True)
    check(catalog, identifier("STUDY", PatientID="P1", PatientName="doe*"), {"1.2.1", "1.2.2"}, PR,
          relational=True)
    with pytest.raises(QueryError):
        QueryService(catalog, "X").parse(identifier("IMAGE", PatientID="P1"), PR, relational=False)


# -- compiled shapes (catalog/sql.py run with the catalog's statement cache) -------------------------------------


def _query(catalog: Catalog, ds: Dataset):
    return QueryService(catalog, "ECGNODE").parse(ds, SR, relational=True).query


def test_a_shape_is_compiled_once_and_bound_to_each_querys_values(catalog: Catalog) -> None:
    from dicom_ecg_node.catalog.sql import query_shape

    keys = {"StudyInstanceUID": "", "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": ""}
    first, second = identifier("STUDY", PatientID="P1", **keys), identifier("STUDY", PatientID="P3", **keys)
    assert query_shape(_query(catalog, first)) == query_shape(_query(catalog, second))
    assert check(catalog, first, {"1.2.1", "1.2.2"})
    compiled = {k for k in catalog.statement_cache._statements if k.startswith("find:")}
    assert len(compiled) == 2  # the studies and their modalities
    assert check(catalog, second, {"1.2.4"})  # the same statements, this query's value
    assert {k for k in catalog.statement_cache._statements if k.startswith("find:")} == compiled
    # Values that need a conversion by their column (an instant range on the UTC column) are bound converted.
    check(catalog, identifier("IMAGE", AcquisitionDateTime="20260308-20260308", TimezoneOffsetFromUTC="+0000",
                              SOPInstanceUID=""), {"1.1", "1.2", "1.3", "2.1", "3.1"})
    check(catalog, identifier("IMAGE", AcquisitionDateTime="20260307-20260307", TimezoneOffsetFromUTC="+0000",
                              SOPInstanceUID=""), set())


def test_what_changes_the_sql_text_is_part_of_the_shape(catalog: Catalog) -> None:
    from dicom_ecg_node.catalog.sql import query_shape

    def shape(**keys: Any) -> str | None:
        return query_shape(_query(catalog, identifier("STUDY", **{"StudyInstanceUID": "", **keys})))

    assert shape(PatientID="P1") != shape(PatientID="P*")  # single value / wildcard
    assert shape(PatientName="Doe^Jane") != shape(PatientName="Doe^Jane=山田")  # person name groups given
    assert shape(PatientName="=山田^太郎") != shape(PatientName="Yamada^Tarou")
    assert shape(StudyDate="20260301-") != shape(StudyDate="20260301-20260331") != shape(StudyDate="-20260331")
    uids = [f"1.2.{i}" for i in range(9)]
    assert shape(StudyInstanceUID=uids[:2]) != shape(StudyInstanceUID=uids[:3])
    assert shape(StudyInstanceUID=uids) is None  # a long list is compiled on its own, never kept
    assert shape(AccessionNumber='""') != shape(AccessionNumber="A1")  # empty value matching
    # Hand-picked answers for each, through the cache (one run compiles, the second binds).
    for _ in range(2):
        check(catalog, identifier("STUDY", PatientName="=山田^太郎"), {"1.2.4"})
        check(catalog, identifier("STUDY", StudyInstanceUID=["1.2.1", "1.2.5", "1.2.9"]), {"1.2.1", "1.2.5"})
        check(catalog, identifier("STUDY", StudyInstanceUID=uids), {"1.2.1", "1.2.2", "1.2.3", "1.2.4", "1.2.5",
                                                                   "1.2.6"})


def test_the_statement_cache_is_bounded() -> None:
    import peewee as pw

    from dicom_ecg_node.catalog.prepared import PreparedCache

    db = pw.SqliteDatabase(":memory:")
    cache = PreparedCache(db, max_statements=2)
    made = [cache.get(f"k{i}", lambda p: pw.Select(columns=[pw.Value(1)])) for i in range(4)]
    assert len(cache._statements) == 2 and cache.get("k0", lambda p: None) is made[0]
    assert cache.get("k3", lambda p: pw.Select(columns=[pw.Value(1)])) is not made[3]  # compiled, not kept


def test_person_name_prefix_bounds_only_what_can_match() -> None:
    from dicom_ecg_node.catalog.query import SingleValue, Wildcard
    from dicom_ecg_node.catalog.sql import pn_prefix

    assert pn_prefix(Wildcard("kowalski^c*")) == "kowalski^c"
    assert pn_prefix(Wildcard("do?^jane")) == "do"
    assert pn_prefix(Wildcard("*ski")) == ""  # a leading wildcard: no prefix
    assert pn_prefix(Wildcard("=山田*")) == ""  # no alphabetic group
    assert pn_prefix(SingleValue("doe^jane=山田")) == "doe^jane"
    assert pn_prefix(SingleValue("doe\U0010ffff")) == ""  # no successor of the last character


def test_person_name_prefix_keeps_every_match(catalog: Catalog) -> None:
    # Each of these compares the SQL answers with the oracle's (check), with the prefix bound in place on SQLite.
    check(catalog, identifier("STUDY", PatientName="doe^*"), {"1.2.1", "1.2.2", "1.2.3"})
    check(catalog, identifier("STUDY", PatientName="DOE"), set())  # the family name alone is another name
    check(catalog, identifier("STUDY", PatientName="Doe^J?ne"), {"1.2.1", "1.2.2"})
    check(catalog, identifier("STUDY", PatientName="yamada^tarou"), {"1.2.4"})
    check(catalog, identifier("STUDY", PatientName="MÜLLER^*"), {"1.2.5"})
    check(catalog, identifier("STUDY", PatientName="m*"), {"1.2.5"})
