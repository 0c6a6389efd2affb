"""C-FIND over real associations: pynetdicom SCU for status details, DCMTK findscu (-P, -S) for each matching type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pydicom
import pytest
from helpers import RunningNode, run_dcmtk
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PRFIND  # noqa: N814
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as SRFIND  # noqa: N814

from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

NY = ZoneInfo("America/New_York")
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))


def store(node: RunningNode, **kwargs) -> None:
    kwargs.setdefault("seed", 1)
    node.ingest.store(ecg_to_bytes(synthesize_ecg(**kwargs)), sender_ae="TEST", sender_address="local")


@pytest.fixture
def filled(node: RunningNode) -> RunningNode:
    store(node, patient_id="P1", patient_name="Doe^Jane", study_instance_uid="1.2.826.1.1", accession_number="A%_1",
          acquisition_datetime=datetime(2026, 3, 8, 1, 50, tzinfo=NY), zone_style="offset-in-dt")
    store(node, patient_id="P1", patient_name="Doe^Jane", study_instance_uid="1.2.826.1.2", accession_number="AB_1",
          acquisition_datetime=datetime(2026, 3, 8, 3, 10, tzinfo=NY), zone_style="timezone-offset",
          include_median=True)
    store(node, patient_id="P2", patient_name="Müller^Jürgen=ミュラー", study_instance_uid="1.2.826.1.3",
          accession_number="A%X1", acquisition_datetime=datetime(2026, 3, 8, 10, 0, tzinfo=IST))
    store(node, patient_id="P3", patient_name="Roe^Rick", study_instance_uid="1.2.826.1.4",
          acquisition_datetime=datetime(2026, 3, 7, 21, 0, tzinfo=PST))
    return node


def _assoc(node: RunningNode, *, relational: bool = False):
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(PRFIND)
    ae.add_requested_context(SRFIND)
    ext = []
    if relational:
        for uid in (PRFIND, SRFIND):
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = uid
            item.service_class_application_information = b"\x01"
            ext.append(item)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, ext_neg=ext or None)
    assert assoc.is_established
    return assoc


def _find(assoc, ds: Dataset, model=SRFIND) -> list[tuple[int, Dataset | None]]:
    return [(int(st.Status), ident) for st, ident in assoc.send_c_find(ds, model)]


def _ds(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def test_pending_answers_in_serial_order_then_success(filled: RunningNode) -> None:
    assoc = _assoc(filled)
    try:
        rsp = _find(assoc, _ds("STUDY", StudyDate="20260307-20260308", PatientName="", StudyInstanceUID="",
                               NumberOfStudyRelatedInstances="", ModalitiesInStudy=""))
    finally:
        assoc.release()
    assert [s for s, _ in rsp] == [0xFF00] * 4 + [0x0000]
    # UTC: +0530 10:00 = 04:30Z, -0800 21:00 (the 7th) = 05:00Z, NY 01:50 EST = 06:50Z, 03:10 EDT = 07:10Z.
    assert [i.StudyInstanceUID for _, i in rsp[:-1]] == ["1.2.826.1.3", "1.2.826.1.4", "1.2.826.1.1",
                                                         "1.2.826.1.2"]
    assert all(i.NumberOfStudyRelatedInstances == 1 and i.ModalitiesInStudy == "ECG" for _, i in rsp[:-1])
    muller = rsp[0][1]
    assert muller.SpecificCharacterSet == "ISO_IR 192" and str(muller.PatientName) == "Müller^Jürgen=ミュラー"


def test_unsupported_optional_key_gives_ff01(filled: RunningNode) -> None:
    assoc = _assoc(filled)
    try:
        rsp = _find(assoc, _ds("STUDY", PatientID="P1", InstitutionName="", StudyInstanceUID=""))
    finally:
        assoc.release()
    assert [s for s, _ in rsp] == [0xFF01, 0xFF01, 0x0000]
    assert all(i.InstitutionName in (None, "") for _, i in rsp[:-1])


@pytest.mark.parametrize(("model", "ds", "status", "comment"), [
    (SRFIND, _ds("PATIENT"), 0xA900, "not a level"),
    (SRFIND, _ds("", PatientID="P1"), 0xA900, "QueryRetrieveLevel"),
    (SRFIND, _ds("STUDY", StudyDate="2026-03-08"), 0xA900, "DA range"),
    (SRFIND, _ds("STUDY", SOPInstanceUID="1.2"), 0xA900, "IMAGE key"),
    (PRFIND, _ds("STUDY", PatientName="Doe*", PatientID="P1"), 0xA900, "non-unique"),
    (PRFIND, _ds("STUDY"), 0xA900, "PatientID"),
])
def test_invalid_identifiers_fail_with_an_error_comment(filled: RunningNode, model, ds, status, comment) -> None:
    assoc = _assoc(filled)
    try:
        rsp = assoc.send_c_find(ds, model)
        (st, ident), = list(rsp)
    finally:
        assoc.release()
    assert int(st.Status) == status and ident is None
    assert comment in str(st.ErrorComment)


def test_relational_negotiation_allows_a_patients_image_list(filled: RunningNode) -> None:
    assoc = _assoc(filled, relational=True)
    try:
        rsp = _find(assoc, _ds("IMAGE", PatientID="P1", SOPInstanceUID="", AcquisitionDateTime=""), PRFIND)
    finally:
        assoc.release()
    assert [s for s, _ in rsp] == [0xFF00, 0xFF00, 0x0000]
    assert [i.AcquisitionDateTime for _, i in rsp[:-1]] == ["20260308015000-0500", "20260308031000"]


@pytest.mark.dcmtk
def test_cancel_stops_a_running_query(node: RunningNode, tmp_path: Path) -> None:
    from querydata import make_record

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(2000):  # catalog rows only: enough answers that the cancel arrives while they are sent
        node.ingest.catalog.add_instance(make_record(f"1.2.826.9.{i}.1", patient_id="PC", study=f"1.2.826.9.{i}",
                                                     when=t0 + timedelta(hours=i)))
    out = tmp_path / "answers"
    out.mkdir()
    # DCMTK's findscu sends a C-CANCEL-RQ as soon as it has two answers (a pynetdicom requestor's own threads
    # decode the incoming answers ahead of the one that would send the cancel, so its timing is not the node's).
    result = run_dcmtk("findscu", "-S", "-v", "--cancel", "2", "-X", "-od", str(out), "-aec", node.aet,
                       "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=PC", "-k", "StudyInstanceUID",
                       node.host, str(node.port))
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    # PS3.4 C.4.1.2.3: matching stops and the last response is Cancel (0xFE00). The answers already sent when the
    # cancel is read were sent; the rest are not.
    assert "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)" in text, text[-2000:]
    assert 2 <= len(list(out.iterdir())) < 200  # read between answers: honoured within a few dozen of 2,000


# -- DCMTK findscu ---------------------------------------------------------------------------------------------------

def _findscu(node: RunningNode, tmp_path: Path, root: str, *keys: str) -> list[Dataset]:
    out = tmp_path / f"rsp{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    args = [root, "-X", "-od", str(out), "-aec", node.aet, node.host, str(node.port)]
    for k in keys:
        args += ["-k", k]
    result = run_dcmtk("findscu", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return [pydicom.dcmread(f) for f in sorted(out.iterdir())]


@pytest.mark.dcmtk
def test_findscu_every_matching_type(filled: RunningNode, tmp_path: Path) -> None:
    def uids(root: str, *keys: str) -> list[str]:
        return [str(d.StudyInstanceUID) for d in _findscu(filled, tmp_path, root, "QueryRetrieveLevel=STUDY",
                                                          "StudyInstanceUID", *keys)]

    every = ["1.2.826.1.3", "1.2.826.1.4", "1.2.826.1.1", "1.2.826.1.2"]
    assert uids("-S", "PatientID=P1") == ["1.2.826.1.1", "1.2.826.1.2"]  # single value, serial order
    assert uids("-S", "PatientName=DOE^JANE") == ["1.2.826.1.1", "1.2.826.1.2"]  # PN case-insensitive
    assert uids("-S", "PatientID=p1") == []  # LO case-sensitive
    assert uids("-S", "PatientName=") == every  # universal
    assert uids("-S", "StudyInstanceUID=1.2.826.1.4\\1.2.826.1.1\\9") == ["1.2.826.1.4", "1.2.826.1.1"]  # UIDs
    assert uids("-S", "AccessionNumber=A%_*") == ["1.2.826.1.1"]  # wildcard, literal % and _
    assert uids("-S", "AccessionNumber=A%?1") == ["1.2.826.1.3", "1.2.826.1.1"]
    assert uids("-S", "StudyDate=20260308") == ["1.2.826.1.3", "1.2.826.1.1", "1.2.826.1.2"]  # date
    assert uids("-S", "StudyDate=-20260307") == ["1.2.826.1.4"]  # open range
    assert uids("-S", "StudyDate=20260307-20260308", "StudyTime=2000-0200") == [
        "1.2.826.1.4", "1.2.826.1.1"]  # combined date-time
    assert uids("-S", "StudyDate=20260308", "TimezoneOffsetFromUTC=+0000") == every  # shifted to UTC
    assert uids("-S", "AccessionNumber=\"\"") == ["1.2.826.1.4"]  # empty value
    # ideographic group, UTF-8 both ways
    assert uids("-S", "SpecificCharacterSet=ISO_IR 192", "PatientName==ミュラー") == ["1.2.826.1.3"]
    # DT range with a negative offset, IMAGE level (hierarchical: study and series UIDs given).
    series = _findscu(filled, tmp_path, "-S", "QueryRetrieveLevel=SERIES", "StudyInstanceUID=1.2.826.1.2",
                      "SeriesInstanceUID")[0].SeriesInstanceUID
    images = _findscu(filled, tmp_path, "-S", "QueryRetrieveLevel=IMAGE", "StudyInstanceUID=1.2.826.1.2",
                      f"SeriesInstanceUID={series}", "SOPInstanceUID", "AcquisitionDateTime=20260308020000-0500-",
                      "WaveformSequence[0].MultiplexGroupLabel=MEDIAN*")
    assert len(images) == 1 and images[0].WaveformSequence[0].MultiplexGroupLabel.startswith("MEDIAN")


@pytest.mark.dcmtk
def test_findscu_patient_root(filled: RunningNode, tmp_path: Path) -> None:
    pats = _findscu(filled, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName=M*",
                    "NumberOfPatientRelatedStudies")
    assert [(p.PatientID, p.NumberOfPatientRelatedStudies) for p in pats] == [("P2", 1)]
    studies = _findscu(filled, tmp_path, "-P", "QueryRetrieveLevel=STUDY", "PatientID=P1", "StudyInstanceUID",
                       "NumberOfStudyRelatedInstances")
    assert [s.StudyInstanceUID for s in studies] == ["1.2.826.1.1", "1.2.826.1.2"]
    result = run_dcmtk("findscu", "-v", "-P", "-aec", filled.aet, filled.host, str(filled.port), "-k",
                       "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
    assert "DataSetDoesNotMatchSOPClass" in result.stdout + result.stderr  # DCMTK's name for 0xA900

