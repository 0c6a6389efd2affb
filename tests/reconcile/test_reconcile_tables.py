"""Reconciliation and the schema version 7 tables on SQLite and PostgreSQL (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import make_config

from dicom_ecg_node.catalog import Catalog, InstanceRecord, PatientData, SeriesData, StudyData
from dicom_ecg_node.services.reconcile import ReconcileService

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def catalog(catalog_url):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


def add(catalog, uid, patient_id, name, received, *, birth="19700101", sex="F"):
    catalog.add_instance(InstanceRecord(
        patient=PatientData(patient_id, "", name, birth, sex), study=StudyData(f"{uid}.1"),
        series=SeriesData(f"{uid}.2", "ECG"), sop_instance_uid=uid, sop_class_uid="1.2.840.10008.5.1.4.1.1.9.1.1",
        path=f"x/{uid}.dcm", size=1, sha256="0" * 64, received_at=received, sender_ae="CART1"))


def test_schema_seven_tables_exist(catalog):
    assert catalog.schema_version() >= 7
    m = catalog.models
    for model in (m.ClockObservation, m.DeviceClock, m.MppsInstance, m.MppsStep, m.MppsSeries, m.ReconcileItem,
                  m.InstanceLink):
        assert model.table_exists()


def test_known_patient_with_other_demographics_is_queued(catalog, tmp_path):
    service = ReconcileService(catalog, make_config(tmp_path))
    add(catalog, "1.2.3.1", "P1", "DOE^JANE", datetime.now(UTC) - timedelta(days=1))
    assert service.assess("1.2.3.1").reasons == ("unknown-patient-id",)  # first ever ECG of P1
    add(catalog, "1.2.3.2", "P1", "DOE^JANE", datetime.now(UTC) + timedelta(seconds=5))
    ok = service.assess("1.2.3.2")
    assert ok.reasons == () and ok.score == 30 + 25 + 20 + 5  # no orders on this node: no order points
    add(catalog, "1.2.3.3", "P1", "DOE^JOAN", datetime.now(UTC) + timedelta(seconds=5), birth="19700102")
    odd = service.assess("1.2.3.3")
    assert set(odd.reasons) == {"name-mismatch", "birth-date-mismatch"} and odd.score == 30 + 5
    # A new ID for a person the node knows by name and birth date: the known ID is suggested.
    add(catalog, "1.2.3.4", "P1B", "DOE^JANE", datetime.now(UTC) - timedelta(minutes=1))
    new = service.assess("1.2.3.4")
    assert new.candidate_patient_id == "P1"
    queued = service.items()
    assert [i.sop_instance_uid for i in queued] == ["1.2.3.1", "1.2.3.4", "1.2.3.3"]  # lowest score first
    assert service.items(None)[0].evidence["patient_id"] == "unknown"
