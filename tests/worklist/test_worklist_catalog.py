"""Schema version 6 on SQLite and PostgreSQL: worklist SQL against its in-memory oracle, merges and undo, the HL7
message log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hl7support import message
from pydicom.dataset import Dataset

from dicom_ecg_node.catalog import Catalog, InstanceRecord, PatientData, SeriesData, StudyData
from dicom_ecg_node.hl7.intake import Hl7Intake
from dicom_ecg_node.services.patients import MergeError, PatientService, PatientUpdate
from dicom_ecg_node.services.worklist import (
    OrderData,
    WorklistService,
    entry_matches,
    parse_worklist_identifier,
)


@pytest.fixture
def catalog(catalog_url: str):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


ORDERS = [
    OrderData("NW", "O1", patient_id="P1", patient_name="Doe^Jane", accession_number="A1", modality="ECG",
              station_ae="CART1", start_date="20260301", start_time="0915", location="CARDIO", sps_id="S1",
              requested_procedure_id="R1", admission_id="V1"),
    OrderData("NW", "O2", patient_id="P2", patient_name="Müller^Jürgen", accession_number="A_2", modality="ECG",
              station_ae="CART2", start_date="20260302", start_time="2330", location="ER"),
    OrderData("NW", "O3", patient_id="P3", patient_name="Roe^Rick", accession_number="A%3", modality="US",
              station_ae="CART1", start_date="20260303"),
    OrderData("NW", "O4", patient_id="P4", patient_name="Doe^John", modality="ECG", station_ae="CART1"),
]


def _identifier(top: dict[str, str], sps: dict[str, str]) -> Dataset:
    ds = Dataset()
    for k, v in top.items():
        setattr(ds, k, v)
    item = Dataset()
    for k, v in sps.items():
        setattr(item, k, v)
    ds.ScheduledProcedureStepSequence = [item]
    return ds


CASES = [
    ({}, {}),
    ({"PatientName": "doe*"}, {}),
    ({"PatientName": "MÜLLER^JÜRGEN"}, {}),
    ({"AccessionNumber": "A_2"}, {}),
    ({"AccessionNumber": "A%*"}, {}),
    ({"AccessionNumber": "A?2"}, {}),
    ({"PatientID": "P1", "RequestedProcedureID": "R1", "AdmissionID": "V1"}, {}),
    ({}, {"Modality": "ECG", "ScheduledStationAETitle": "CART1"}),
    ({}, {"ScheduledProcedureStepStartDate": "20260302-"}),
    ({}, {"ScheduledProcedureStepStartDate": "-20260302", "ScheduledProcedureStepStartTime": "0900-2359"}),
    ({}, {"ScheduledProcedureStepStartDate": "20260301-20260302", "ScheduledProcedureStepStartTime": "2300-0930"}),
    ({}, {"ScheduledProcedureStepStartDate": '""'}),
    ({}, {"ScheduledProcedureStepLocation": "C*", "ScheduledProcedureStepID": "S1"}),
]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
@pytest.mark.parametrize(("top", "sps"), CASES)
def test_sql_agrees_with_the_oracle(catalog: Catalog, top: dict[str, str], sps: dict[str, str]) -> None:
    service = WorklistService(catalog)
    for order in ORDERS:
        service.apply_order(order)
    query = parse_worklist_identifier(_identifier(top, sps))
    got = [r["order_key"] for r in service.run(query)]
    every = service.run(parse_worklist_identifier(_identifier({}, {})))
    expected = [r["order_key"] for r in every if entry_matches(query.conditions, r)]
    assert got == expected
    if top or sps:
        assert len(got) < len(ORDERS)


def _record(patient_id: str, study_uid: str, n: int) -> InstanceRecord:
    return InstanceRecord(PatientData(patient_id, "", f"Name^{patient_id}"), StudyData(study_uid),
                          SeriesData(study_uid + ".1", "ECG"), f"{study_uid}.1.1", "1.2.840.10008.5.1.4.1.1.9.1.1",
                          f"x/{n}.dcm", 10, f"{n:064d}", datetime.now(UTC))


def test_merge_and_undo(catalog: Catalog) -> None:
    catalog.add_instance(_record("OLD", "1.2.3.1", 1))
    catalog.add_instance(_record("OLD", "1.2.3.2", 2))
    catalog.add_instance(_record("NEW", "1.2.3.3", 3))
    WorklistService(catalog).apply_order(OrderData("NW", "O9", patient_id="OLD", accession_number="A9"))
    patients = PatientService(catalog)
    record = patients.merge("OLD", "", PatientUpdate("NEW", "", "Surviving^Sam"), control_id="M1")
    assert record.moved_studies == ("1.2.3.1", "1.2.3.2") and record.moved_orders == ("O9",)
    assert {p.patient_id: p.studies for p in catalog.list_patients()} == {"NEW": 3}
    assert WorklistService(catalog).get("O9")["patient_id"] == "NEW"
    with pytest.raises(MergeError, match="circular"):
        patients.merge("NEW", "", PatientUpdate("OLD", ""))
    patients.undo_merge(record.id)
    assert {p.patient_id: p.studies for p in catalog.list_patients()} == {"NEW": 1, "OLD": 2}
    assert [p.patient_name for p in catalog.list_patients() if p.patient_id == "OLD"] == ["Name^OLD"]
    assert WorklistService(catalog).get("O9")["patient_id"] == "OLD"
    with pytest.raises(MergeError, match="already undone"):
        patients.undo_merge(record.id)


def test_message_log_makes_redelivery_idempotent(catalog: Catalog) -> None:
    intake = Hl7Intake(catalog)
    raw = message("ADT^A01", "X1", "PID|1||Q1^^^HOSP^MR||Log^Lena").encode()
    first = intake.process(raw, "127.0.0.1")
    assert b"MSA|AA|X1" in first
    assert intake.process(raw, "127.0.0.1") == first
    bad = message("ADT^A08", "X2", "PID|1||Q1^^^HOSP^MR||Log^Lena||garbage").encode()
    ack = intake.process(bad, "127.0.0.1")
    assert b"MSA|AE|X2" in ack and intake.process(bad, "127.0.0.1") == ack
    log = catalog.models.Hl7Message
    with catalog._connection():
        assert sorted(r.ack_code for r in log.select()) == ["AA", "AE"]
    assert [p.patient_name for p in catalog.list_patients()] == ["Log^Lena"]
