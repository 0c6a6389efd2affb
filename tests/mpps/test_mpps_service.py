"""The MPPS use case and its tables on SQLite and PostgreSQL (no network)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from test_mpps_scp import final_mods, n_create_attrs

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.services.mpps import (
    MppsAttributeError,
    MppsDuplicateError,
    MppsFinalError,
    MppsNotFoundError,
    MppsService,
)


@pytest.fixture
def catalog(catalog_url):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


def test_life_cycle_reports_every_step_to_the_worklist(catalog):
    calls = []
    mpps = MppsService(catalog, step_status=lambda status, step: calls.append((status, step.accession_number)) or 1)
    uid = mpps.create("1.2.3.4", n_create_attrs(accession="A9"), calling_ae="CART9")
    progress = Dataset()
    progress.PerformedProcedureStepDescription = "half way"
    mpps.set(uid, progress)
    assert calls == [("IN PROGRESS", "A9")]  # a set without status tells the worklist nothing
    mpps.set(uid, final_mods("COMPLETED", "1.2.3.5", "1.2.3.6"))
    assert calls == [("IN PROGRESS", "A9"), ("COMPLETED", "A9")]
    attrs = mpps.attributes(uid)
    assert attrs.PerformedProcedureStepDescription == "half way" and attrs.PerformedProcedureStepStatus == "COMPLETED"
    with pytest.raises(MppsFinalError):
        mpps.set(uid, final_mods("DISCONTINUED", "1.2.3.7", "1.2.3.8"))
    assert mpps.open_steps_for(accession_number="A9") == ["COMPLETED"]


def test_errors(catalog):
    mpps = MppsService(catalog, step_status=lambda status, step: 0)
    with pytest.raises(MppsAttributeError):
        mpps.create(None, n_create_attrs(status="DISCONTINUED"))
    uid = mpps.create(None, n_create_attrs())
    with pytest.raises(MppsDuplicateError):
        mpps.create(uid, n_create_attrs())
    with pytest.raises(MppsNotFoundError):
        mpps.set("1.2.999", Dataset())


def test_a_failing_worklist_does_not_undo_the_mpps(catalog):
    def broken(status, step):
        raise RuntimeError("worklist down")

    mpps = MppsService(catalog, step_status=broken)
    uid = mpps.create(None, n_create_attrs())
    mpps.set(uid, final_mods("COMPLETED", "1.2.3.5", "1.2.3.6"))
    assert mpps.get(uid).status == "COMPLETED"


def test_sequence_is_replaced_as_a_whole(catalog):
    mpps = MppsService(catalog, step_status=lambda status, step: 1)
    uid = mpps.create(None, n_create_attrs(accession="OLD"))
    mods = Dataset()
    step = Dataset()
    step.AccessionNumber = "NEW"
    step.StudyInstanceUID = "1.2.3"
    mods.ScheduledStepAttributesSequence = Sequence([step])
    mpps.set(uid, mods)
    assert [s.accession_number for s in mpps.get(uid).steps] == ["NEW"]
