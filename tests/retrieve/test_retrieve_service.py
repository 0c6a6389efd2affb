"""RetrieveService without the network: identifier rules, serial order across zones, paging, syntaxes, checksums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.registry import UnknownAEError
from dicom_ecg_node.errors import ArchiveError, QueryError
from dicom_ecg_node.services import retrieve as retrieve_mod
from dicom_ecg_node.services.ingest import IngestService
from dicom_ecg_node.services.retrieve import (
    RetrieveKeys,
    RetrieveService,
    candidate_syntaxes,
    parse_identifier,
)
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg


def ident(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def test_parse_identifier_unique_keys_and_lists() -> None:
    keys = parse_identifier(ident("STUDY", StudyInstanceUID=["1.2.3", "1.2.4"], PatientID="P1"), "PATIENT")
    assert keys == RetrieveKeys("PATIENT", "STUDY", "P1", ("1.2.3", "1.2.4"))
    # Study Root: Patient ID is not a unique key there and is ignored (PS3.4 C.6.2.1).
    keys = parse_identifier(ident("SERIES", StudyInstanceUID="1.2.3", SeriesInstanceUID=["1.5", "1.6"],
                                  PatientID="P1"), "STUDY")
    assert keys == RetrieveKeys("STUDY", "SERIES", None, ("1.2.3",), ("1.5", "1.6"))
    keys = parse_identifier(ident("IMAGE", SOPInstanceUID="1.9", StudyInstanceUID=""), "STUDY")
    assert keys.sop_uids == ("1.9",) and keys.study_uids == ()


@pytest.mark.parametrize(("root", "identifier", "message"), [
    ("PATIENT", ident("PATIENT"), "PatientID"),
    ("PATIENT", Dataset(), "QueryRetrieveLevel"),
    ("STUDY", ident("PATIENT", PatientID="P1"), "not a level"),
    ("PATIENT", ident("FRAME", PatientID="P1"), "not a level"),
    ("STUDY", ident("STUDY", StudyInstanceUID="1.2.03"), "not a valid UID"),
    ("STUDY", ident("STUDY", StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2"), "below the STUDY level"),
    ("STUDY", ident("SERIES", StudyInstanceUID=["1.2", "1.3"], SeriesInstanceUID="1.4"), "only at the level"),
    ("PATIENT", ident("PATIENT", PatientID=["A", "B"]), "single value"),
])
def test_parse_identifier_refusals(root: str, identifier: Dataset, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_identifier(identifier, root)  # type: ignore[arg-type]


def test_candidate_syntaxes_stored_first_and_big_endian_alone() -> None:
    assert candidate_syntaxes(ImplicitVRLittleEndian) == (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
    assert candidate_syntaxes(DeflatedExplicitVRLittleEndian)[0] == DeflatedExplicitVRLittleEndian
    assert ExplicitVRLittleEndian in candidate_syntaxes(DeflatedExplicitVRLittleEndian)
    assert candidate_syntaxes(ExplicitVRBigEndian) == (ExplicitVRBigEndian,)


@pytest.fixture
def service(tmp_path, catalog_url):
    from helpers import make_config

    config = make_config(tmp_path, db_url=catalog_url)
    ingest = IngestService.open(config)
    yield ingest, RetrieveService(ingest.catalog, ingest.archive)
    ingest.close()


def store(ingest, when: datetime, *, patient_id: str = "P1", zone_style: str = "offset-in-dt", **kw) -> str:
    ds = synthesize_ecg(patient_id=patient_id, acquisition_datetime=when, seed=1, zone_style=zone_style, **kw)
    return ingest.store(ecg_to_bytes(ds), sender_ae="CART", sender_address="x").sop_instance_uid


def test_serial_order_is_utc_across_zones_and_dst(service) -> None:
    ingest, svc = service
    paris = timezone(timedelta(hours=2))  # summer time
    ny = timezone(timedelta(hours=-5))
    # Local wall-clock strings sort the other way round from the true UTC order.
    b = store(ingest, datetime(2024, 3, 31, 3, 30, tzinfo=paris))  # 01:30 UTC, after the DST change
    a = store(ingest, datetime(2024, 3, 30, 21, 0, tzinfo=ny))  # 02:00 UTC... of 31 March
    c = store(ingest, datetime(2024, 3, 31, 2, 15, tzinfo=UTC))
    undated = store(ingest, datetime(2024, 1, 1, tzinfo=UTC), zone_style="none", **{})
    ingest.catalog.db.execute_sql("UPDATE instance SET acquisition_utc = NULL WHERE sop_instance_uid = %s"
                                  if not ingest.catalog.sqlite else
                                  "UPDATE instance SET acquisition_utc = NULL WHERE sop_instance_uid = ?", (undated,))
    plan = svc.plan_identifier(ident("PATIENT", PatientID="P1"), "PATIENT")
    assert plan.count == 4
    assert [i.sop_instance_uid for i in plan] == [b, a, c, undated]


def test_keyset_pages_and_snapshot(service, monkeypatch) -> None:
    ingest, svc = service
    monkeypatch.setattr(retrieve_mod, "PAGE_SIZE", 2)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    same = [store(ingest, t0) for _ in range(3)]  # equal times: insertion order breaks the tie
    later = [store(ingest, t0 + timedelta(hours=i + 1)) for i in range(2)]
    plan = svc.plan_identifier(ident("PATIENT", PatientID="P1"), "PATIENT")
    store(ingest, t0 + timedelta(hours=5))  # arrives after the plan: not part of it
    assert [i.sop_instance_uid for i in plan] == same + later
    assert plan.presentations == (("1.2.840.10008.5.1.4.1.1.9.1.1", ExplicitVRLittleEndian),)


def test_read_bytes_checks_the_checksum_and_unknown_destination(service) -> None:
    ingest, svc = service
    store(ingest, datetime(2024, 1, 1, tzinfo=UTC))
    [item] = list(svc.plan_identifier(ident("PATIENT", PatientID="P1"), "PATIENT"))
    assert svc.load(item).SOPInstanceUID == item.sop_instance_uid
    path = ingest.archive.resolve(item.path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="checksum"):
        svc.load(item)
    with pytest.raises(UnknownAEError):
        svc.destination("NOBODY")


def test_catalog_migrates_to_v2_with_the_registry(catalog_url) -> None:
    with Catalog.open(catalog_url) as cat:
        assert cat.schema_version() >= 2
        assert cat.models.RemoteAE.table_exists()
