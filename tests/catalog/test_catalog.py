"""Catalog: schema, one-transaction writes, duplicate/conflict/replace, listings without N+1, concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import peewee as pw
import pytest

from dicom_ecg_node.catalog import (
    SCHEMA_VERSION,
    Catalog,
    GroupData,
    InstanceRecord,
    MeasurementData,
    PatientData,
    SeriesData,
    StudyData,
    normalize_person_name,
)
from dicom_ecg_node.errors import CatalogError


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


def record(n: int, *, study: int | None = None, patient: str = "P1", name: str = "Doe^Jane", sha: str | None = None,
           birth: str = "19700101", when: datetime | None = None) -> InstanceRecord:
    st = n if study is None else study
    return InstanceRecord(
        patient=PatientData(patient, "", name, birth, "F"),
        study=StudyData(f"1.2.3.{st}", study_date=f"2024{(st % 12) + 1:02d}01", study_time="101500",
                        accession_number=f"ACC{st}"),
        series=SeriesData(f"1.2.3.{st}.1", modality="ECG", series_number=1),
        sop_instance_uid=f"1.2.3.{st}.1.{n}", sop_class_uid="1.2.840.10008.5.1.4.1.1.9.1.1",
        path=f"archive/00/00/{n}.dcm", size=1000 + n, sha256=sha or f"{n:064x}",
        received_at=datetime.now(UTC),
        acquisition_datetime="20240101101500+0100",
        acquisition_utc=when or datetime(2024, 1, 1, 9, 15, tzinfo=UTC), utc_offset_minutes=60,
        sender_ae="CART1", sender_address="127.0.0.1",
        groups=(GroupData(0, "RHYTHM", 500.0, 5000, 12, ("I", "II"), 10.0, "SS", 16),),
        measurements=(MeasurementData("8867-4", "LN", "Heart rate", 72.0, "/min"),),
    )


def test_migrate_creates_version_and_is_idempotent(catalog: Catalog, catalog_url: str) -> None:
    assert catalog.schema_version() == SCHEMA_VERSION
    assert catalog.migrate() == SCHEMA_VERSION
    # A second catalog on the same database in the same process: models are per catalog, nothing global.
    with Catalog.open(catalog_url) as other:
        catalog.add_instance(record(1))
        assert [i.sop_instance_uid for i in other.list_instances()] == ["1.2.3.1.1.1"]


def test_newer_schema_is_refused(catalog: Catalog, catalog_url: str) -> None:
    with catalog._write():
        catalog.models.SchemaVersion.insert(version=SCHEMA_VERSION + 1, applied_at=datetime(2030, 1, 1)).execute()
    with pytest.raises(CatalogError, match="newer than this software"):
        Catalog.open(catalog_url)


def test_v9_drops_the_index_on_patient_id_alone_and_lookups_use_the_unique_one(catalog: Catalog,
                                                                               catalog_url: str) -> None:
    db = catalog.db

    def patient_indexes() -> set[str]:
        with db.connection_context():
            return {i.name for i in db.get_indexes("patient")}

    assert "patient_patient_id" not in patient_indexes()  # a new catalog never had it
    with db.connection_context():  # the worklist's own Patient ID index stays: it has no (ID, issuer) one
        assert "worklist_entry_patient_id" in {i.name for i in db.get_indexes("worklist_entry")}
    # A catalog made by version 8 had it.
    with catalog._write():
        db.execute_sql('CREATE INDEX "patient_patient_id" ON "patient" ("patient_id")')
        catalog.models.SchemaVersion.delete().where(catalog.models.SchemaVersion.version == 9).execute()
    assert catalog.schema_version() == 8
    assert "patient_patient_id" in patient_indexes()
    assert catalog.migrate() == 9
    assert patient_indexes() >= {"patient_patient_id_issuer"}
    assert "patient_patient_id" not in patient_indexes()
    catalog.add_instance(record(1, patient="P7"))
    assert [p.patient_id for p in catalog.list_patients()] == ["P7"]
    if catalog.sqlite:  # PostgreSQL's plan for a tiny table is a sequential scan whatever the indexes
        with db.connection_context():
            plan = " ".join(str(row[-1]) for row in db.execute_sql(
                'EXPLAIN QUERY PLAN SELECT "id" FROM "patient" WHERE "patient_id" = ?', ("P7",)))
        assert "patient_patient_id_issuer" in plan


def test_two_catalogs_in_one_process_are_independent(tmp_path) -> None:
    a = Catalog.open(f"sqlite:///{tmp_path / 'a.sqlite'}")
    b = Catalog.open(f"sqlite:///{tmp_path / 'b.sqlite'}")
    try:
        a.add_instance(record(1))
        assert a.stats().instances == 1
        assert b.stats().instances == 0
    finally:
        a.close()
        b.close()


def test_add_get_and_utc_roundtrip(catalog: Catalog) -> None:
    when = datetime(2024, 3, 31, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert catalog.add_instance(record(7, when=when)).status == "stored"
    detail = catalog.get_instance("1.2.3.7.1.7")
    assert detail is not None
    s = detail.summary
    assert s.acquisition_utc == datetime(2024, 3, 30, 23, 30, tzinfo=UTC)
    assert s.acquisition_utc.tzinfo is not None
    assert s.received_at.tzinfo is not None
    assert (s.study_instance_uid, s.modality, s.patient_id, s.size) == ("1.2.3.7", "ECG", "P1", 1007)
    assert detail.groups[0].leads == ("I", "II")
    assert detail.measurements[0].code_meaning == "Heart rate"
    assert detail.patient_name == "Doe^Jane"
    assert catalog.get_instance("9.9.9") is None


def test_duplicate_conflict_and_replace(catalog: Catalog) -> None:
    assert catalog.add_instance(record(1)).status == "stored"
    dup = catalog.add_instance(record(1))
    assert (dup.status, dup.path) == ("duplicate", "archive/00/00/1.dcm")
    other = record(1, sha="f" * 64)
    assert catalog.add_instance(other).status == "conflict"
    assert catalog.find_instance_file("1.2.3.1.1.1").sha256 == f"{1:064x}"
    import dataclasses
    moved = dataclasses.replace(other, path="archive/00/00/1b.dcm")
    res = catalog.add_instance(moved, replace=True)
    assert (res.status, res.previous_path) == ("replaced", "archive/00/00/1.dcm")
    f = catalog.find_instance_file("1.2.3.1.1.1")
    assert (f.sha256, f.path) == ("f" * 64, "archive/00/00/1b.dcm")
    st = catalog.stats()
    assert st.instances == 1
    # children were replaced, not duplicated
    assert catalog.models.WaveformGroup.select().count() == 1


def test_demographic_conflict_recorded(catalog: Catalog) -> None:
    catalog.add_instance(record(1, study=1))
    res = catalog.add_instance(record(2, study=2, name="DOE^JANE^^"))  # same name, other case and padding
    assert res.conflicts == ()
    res = catalog.add_instance(record(3, study=3, name="Smith^Jane", birth="19700202"))
    assert set(res.conflicts) == {"PatientName", "PatientBirthDate"}
    rows = catalog.list_conflicts()
    assert {(r.attribute, r.stored_value, r.received_value) for r in rows} == {
        ("PatientName", "Doe^Jane", "Smith^Jane"), ("PatientBirthDate", "19700101", "19700202")}
    assert all(r.sop_instance_uid == "1.2.3.3.1.3" for r in rows)
    # the instance keeps what it sent; the patient keeps the first values
    assert catalog.get_instance("1.2.3.3.1.3").patient_name == "Smith^Jane"
    assert catalog.list_patients()[0].patient_name == "Doe^Jane"
    assert catalog.stats().conflicts == 2


def test_listings_and_counts(catalog: Catalog) -> None:
    for n in range(1, 4):
        catalog.add_instance(record(n, study=1))
    catalog.add_instance(record(4, study=2, patient="P2"))
    pats = {p.patient_id: p for p in catalog.list_patients()}
    assert (pats["P1"].studies, pats["P1"].instances) == (1, 3)
    assert (pats["P2"].studies, pats["P2"].instances) == (1, 1)
    studies = catalog.list_studies()
    assert [(s.study_instance_uid, s.instances, s.series) for s in studies] == [("1.2.3.1", 3, 1), ("1.2.3.2", 1, 1)]
    assert studies[0].first_acquisition_utc == datetime(2024, 1, 1, 9, 15, tzinfo=UTC)
    assert [s.study_instance_uid for s in catalog.list_studies("P2")] == ["1.2.3.2"]
    assert len(catalog.list_instances("1.2.3.1")) == 3
    st = catalog.stats()
    assert (st.patients, st.studies, st.series, st.instances) == (2, 2, 2, 4)
    assert st.total_bytes == sum(1000 + n for n in range(1, 5))
    assert [(s.sender_ae, s.instances) for s in st.senders] == [("CART1", 4)]
    assert [f.sop_instance_uid for f in catalog.iter_instance_files(batch=2)] == [
        "1.2.3.1.1.1", "1.2.3.1.1.2", "1.2.3.1.1.3", "1.2.3.2.1.4"]


def test_remove_instance_prunes_empty_parents(catalog: Catalog) -> None:
    catalog.add_instance(record(1))
    assert catalog.remove_instance("1.2.3.1.1.1") == "archive/00/00/1.dcm"
    st = catalog.stats()
    assert (st.patients, st.studies, st.series, st.instances) == (0, 0, 0, 0)
    assert catalog.models.WaveformGroup.select().count() == 0


def _count_queries(catalog: Catalog, fn) -> int:
    seen: list[str] = []

    def hook(event) -> None:
        seen.append(event.sql)

    catalog.db.query_hooks.append(hook)
    try:
        fn()
    finally:
        catalog.db.query_hooks.remove(hook)
    return len([q for q in seen if q.lstrip().upper().startswith("SELECT")])


def test_listings_issue_a_constant_number_of_queries(catalog: Catalog) -> None:
    catalog.add_instance(record(1))
    counts_small = [_count_queries(catalog, f) for f in (catalog.list_studies, catalog.list_patients,
                                                          catalog.list_instances, catalog.list_conflicts)]
    for n in range(2, 41):
        catalog.add_instance(record(n, patient=f"P{n % 5}", name=f"N{n % 5}"))
    counts_big = [_count_queries(catalog, f) for f in (catalog.list_studies, catalog.list_patients,
                                                        catalog.list_instances, catalog.list_conflicts)]
    assert counts_small == counts_big == [1, 1, 1, 1]
    assert len(catalog.list_studies()) == 40
    assert _count_queries(catalog, catalog.stats) == 7


def test_concurrent_writers(catalog: Catalog) -> None:
    """16 threads: distinct instances on shared patients/studies, plus every thread racing on one UID."""
    errors: list[BaseException] = []
    statuses: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                n = 1000 + t * 10 + i
                catalog.add_instance(record(n, study=i, patient=f"P{i % 3}"))
            res = catalog.add_instance(record(99999, study=77))
            with lock:
                statuses.append(res.status)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    assert sorted(statuses) == ["duplicate"] * 15 + ["stored"]
    st = catalog.stats()
    assert st.instances == 161
    assert st.studies == 11  # studies 0..9 plus 77
    assert catalog.models.Instance.select().where(
        catalog.models.Instance.sop_instance_uid == "1.2.3.77.1.99999").count() == 1


def test_failing_write_rolls_back_everything(catalog: Catalog) -> None:
    """A real database failure inside the transaction (the instance table is gone) leaves no partial rows."""
    catalog.add_instance(record(1))
    with catalog._write():
        catalog.db.execute_sql('ALTER TABLE "instance" RENAME TO "instance_away"')
    with pytest.raises(CatalogError):
        catalog.add_instance(record(2, study=2, patient="P9"))
    with catalog._write():
        catalog.db.execute_sql('ALTER TABLE "instance_away" RENAME TO "instance"')
    st = catalog.stats()
    assert (st.patients, st.studies, st.instances) == (1, 1, 1)


def test_normalize_person_name() -> None:
    assert normalize_person_name("Smith^John^^^") == "smith^john"
    assert normalize_person_name("SMITH^JOHN") == "smith^john"
    assert normalize_person_name("Yamada^Tarou=山田^太郎=やまだ^たろう") == "yamada^tarou=山田^太郎=やまだ^たろう"
    assert normalize_person_name("Doe^Jane==") == "doe^jane"
    assert normalize_person_name(None) is None


def test_bad_urls() -> None:
    with pytest.raises(CatalogError):
        Catalog("mysql://x/y")
    with pytest.raises(CatalogError):
        Catalog("sqlite:///:memory:")
    assert isinstance(Catalog("postgresql://u:p@h:5433/db?host=/tmp/x").db, pw.PostgresqlDatabase)


def _sync_setting(catalog: Catalog) -> str:
    sql = "PRAGMA synchronous" if catalog.sqlite else "SHOW synchronous_commit"
    return str(catalog.db.execute_sql(sql).fetchone()[0])


def test_relaxed_writes_skip_the_disk_wait_only_inside_their_transaction(catalog: Catalog) -> None:
    # SQLite: always 1 = NORMAL (a durable write syncs the log after its commit, tested below); PostgreSQL: on / off
    # (SET LOCAL ends with the transaction).
    durable, relaxed = ("1", "1") if catalog.sqlite else ("on", "off")
    with catalog._write():
        assert _sync_setting(catalog) == durable
    with catalog._write(durable=False):
        assert _sync_setting(catalog) == relaxed
        catalog.models.RemoteAE.insert(ae_title="RELAXED", host="127.0.0.1", port=104,
                                       created_at=datetime(2026, 1, 1)).execute()
    with catalog._write():  # the pooled connection is handed on with the durable setting again
        assert _sync_setting(catalog) == durable
        assert catalog.models.RemoteAE.select().where(catalog.models.RemoteAE.ae_title == "RELAXED").count() == 1
    with pytest.raises(RuntimeError), catalog._write(durable=False):
        raise RuntimeError("rolled back")
    with catalog._write():
        assert _sync_setting(catalog) == durable


def _study_find_plan(url: str, name: str) -> list[str]:
    """SQLite's plan (EXPLAIN QUERY PLAN details) for the STUDY-level C-FIND of a Patient Name, on new connections."""
    from pydicom.dataset import Dataset

    from dicom_ecg_node.services.query import QueryService

    identifier = Dataset()
    identifier.QueryRetrieveLevel, identifier.PatientName, identifier.StudyInstanceUID = "STUDY", name, ""
    with Catalog.open(url) as fresh:
        statements: list[tuple[str, tuple]] = []
        run = fresh.db.execute_sql

        def spy(sql: str, params: tuple = (), *args: object, **kwargs: object):
            statements.append((sql, params))
            return run(sql, params, *args, **kwargs)

        fresh.db.execute_sql = spy  # type: ignore[method-assign]
        answers = list(QueryService(fresh, "ECGNODE").find(identifier, "1.2.840.10008.5.1.4.1.2.2.1"))
        fresh.db.execute_sql = run  # type: ignore[method-assign]
        sql, params = next((q, p) for q, p in statements if "GROUP BY" in q)  # the answers' statement
        with fresh._connection():
            plan = [str(row[3]) for row in fresh.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
    assert len(answers) == 4  # the patient's four studies
    return plan


def test_planner_statistics_are_refreshed_as_the_catalog_grows(catalog: Catalog, catalog_url: str) -> None:
    if not catalog.sqlite:
        catalog.add_instance(record(1))
        assert catalog.refresh_statistics(force=True) is False  # PostgreSQL's autovacuum analyses by itself
        return
    for n in range(1000):  # 250 patients with 4 studies each
        catalog.add_instance(record(n, patient=f"P{n % 250:03d}", name=f"NAME{n % 250:03d}^X"))
    assert catalog.refresh_statistics(min_instances=1001) is False  # too small yet

    def read_stat() -> tuple | None:
        with catalog._connection():
            if not catalog.db.execute_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
                return None
            return catalog.db.execute_sql("SELECT stat FROM sqlite_stat1 WHERE tbl = 'instance'").fetchone()

    # The node's derived work looks every STATISTICS_EVERY stored instances (services/derived.py).
    from dicom_ecg_node.services.derived import StatisticsRefresher

    refresher = StatisticsRefresher(catalog, every=100)
    for _ in range(99):
        refresher(None)  # type: ignore[arg-type]  # the outcome itself is not read
    assert read_stat() is None
    refresher(None)  # type: ignore[arg-type]
    stat = read_stat()
    assert stat is not None and 0 < int(stat[0].split()[0]) <= 1000  # rows then, estimated from a sample
    assert catalog.refresh_statistics() is False  # not grown since
    # With statistics, the Patient Name wildcard starts from the patient name index instead of scanning studies.
    plan = _study_find_plan(catalog_url, "NAME042^*")
    assert any("patient_patient_name_norm" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan
    for n in range(1000, 2000):
        catalog.add_instance(record(n, patient=f"P{n % 250:03d}", name=f"NAME{n % 250:03d}^X"))
    assert catalog.refresh_statistics() is True  # doubled


def _race(first: Catalog, second: Catalog, held: InstanceRecord, waiting: InstanceRecord,
          **kw: Any) -> tuple[list[Any], list[str]]:
    """``first`` adds ``held`` and keeps its transaction open while ``second`` adds ``waiting`` (with ``kw``).

    Returns both results (or exceptions) and the SELECTs ``second`` ran.
    """
    inside, go = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        assert go.wait(30)

    results: dict[str, Any] = {}

    def add(name: str, cat: Catalog, rec: InstanceRecord, **kw: Any) -> None:
        try:
            results[name] = cat.add_instance(rec, **kw)
        except BaseException as exc:  # reported by the caller's assertions
            results[name] = exc

    a = threading.Thread(target=add, args=("a", first, held), kwargs={"before_commit": hold})
    a.start()
    assert inside.wait(30)  # the rows of ``held`` are inserted, not committed
    selects: list[str] = []
    real_one = second._one

    def one(sql: str, params: tuple[Any, ...]) -> Any:
        selects.append(sql)
        return real_one(sql, params)

    second._one = one  # type: ignore[method-assign]
    b = threading.Thread(target=add, args=("b", second, waiting), kwargs=kw)
    b.start()
    time.sleep(0.3)  # the second writer is waiting (on the unique key, or on the writer lock)
    go.set()
    a.join(30)
    b.join(30)
    return [results["a"], results["b"]], selects


def test_a_study_inserted_by_a_concurrent_transaction_is_read_back(catalog_url: str) -> None:
    """Two catalogs (two processes' worth of connections) add instances of one new study at the same time.

    PostgreSQL: the second insert of the study waits for the first transaction, then does nothing, returns no id and
    the study is read back. SQLite serialises the writers, so the second one finds the study.
    """
    first, second = Catalog.open(catalog_url), Catalog.open(catalog_url)
    try:
        first.add_instance(record(1, study=1))  # the patient exists and is committed
        results, selects = _race(first, second, record(2, study=5), record(3, study=5))
        assert [getattr(r, "status", r) for r in results] == ["stored", "stored"]
        m = first.models
        study_ids = {row.series.study_id for row in m.Instance.select().where(
            m.Instance.sop_instance_uid.in_(["1.2.3.5.1.2", "1.2.3.5.1.3"]))}
        assert len(study_ids) == 1
        assert first.stats().studies == 2
        # PostgreSQL: looked for, inserted (nothing: the other's was there by then), read back. SQLite: found.
        study_selects = [sql for sql in selects if sql == second._sql().select_study]
        assert len(study_selects) == (1 if second.sqlite else 2)
    finally:
        first.close()
        second.close()


def test_a_patient_inserted_by_a_concurrent_transaction_is_read_back_and_compared(catalog_url: str) -> None:
    """A new patient's id comes from its insert; one a concurrent transaction inserted first is read back, and its
    demographics are compared with the record's (a different name is a conflict, as for any known patient)."""
    first, second = Catalog.open(catalog_url), Catalog.open(catalog_url)
    try:
        results, selects = _race(first, second, record(2, study=5, patient="PNEW", name="Doe^Jane"),
                                 record(3, study=6, patient="PNEW", name="Roe^Rita"))
        assert [getattr(r, "status", r) for r in results] == ["stored", "stored"]
        assert results[0].conflicts == () and results[1].conflicts == ("PatientName",)
        m = first.models
        assert m.Patient.select().where(m.Patient.patient_id == "PNEW").count() == 1
        patient_ids = {row.series.study.patient_id for row in m.Instance.select()}
        assert len(patient_ids) == 1
        # PostgreSQL: looked for, inserted (nothing), read back. SQLite: found.
        patient_selects = [sql for sql in selects if sql == second._sql().select_patient]
        assert len(patient_selects) == (1 if second.sqlite else 2)
        # And a patient this catalog inserts itself is not read back: looked for once.
        selects.clear()
        assert second.add_instance(record(4, study=7, patient="PTHIRD")).status == "stored"
        assert [sql for sql in selects if sql == second._sql().select_patient] == [second._sql().select_patient]
    finally:
        first.close()
        second.close()


def test_an_instance_said_absent_but_added_meanwhile_is_found_on_the_retry(catalog_url: str) -> None:
    """``absent=True`` skips the transaction's look-up; a concurrent writer's row makes the insert fail its unique
    key, and the retry looks: the same content is a duplicate, other content a conflict, and nothing is doubled."""
    first, second = Catalog.open(catalog_url), Catalog.open(catalog_url)
    try:
        results, selects = _race(first, second, record(2, study=5), replace(record(2, study=5), path="archive/x"),
                                 absent=True)
        assert [getattr(r, "status", r) for r in results] == ["stored", "duplicate"]
        assert results[1].path == "archive/00/00/2.dcm"  # the committed row's file, not the second writer's
        assert selects.count(second._sql().select_instance) == 1  # on the retry only
        results, _ = _race(first, second, record(3, study=5), record(3, study=5, sha="f" * 64), absent=True)
        assert [getattr(r, "status", r) for r in results] == ["stored", "conflict"]
        m = first.models
        assert m.Instance.select().count() == 2
        assert m.Patient.select().count() == 1 and m.Study.select().count() == 1
        selects.clear()
        assert second.add_instance(record(4, study=5), absent=True).status == "stored"
        assert second._sql().select_instance not in selects  # no concurrent writer: not looked up at all
    finally:
        first.close()
        second.close()


def test_a_durable_sqlite_write_syncs_the_log_after_its_commit_and_outside_the_writer_lock(
        catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Module notes, "Durability": the real ``fdatasync`` of the WAL file, once the row is committed (another
    connection sees it) and the writer lock is free (another descriptor takes the ``flock`` at once); none for a
    relaxed write."""
    if not catalog.sqlite:
        pytest.skip("PostgreSQL commits synchronously by itself")
    import os

    from helpers import sqlite_writer_state

    database = catalog.db.database
    real = os.fdatasync
    seen: list[tuple[bool, int, bool]] = []  # (the WAL file?, instances another connection sees, lock free?)

    def fdatasync(fd: int) -> None:
        st = os.fstat(fd)
        wal = os.path.exists(f"{database}-wal") and os.path.samestat(st, os.stat(f"{database}-wal"))
        free, visible = sqlite_writer_state(database)
        seen.append((wal, visible, free))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    assert catalog.add_instance(record(1)).status == "stored"
    assert seen == [(True, 1, True)]
    with catalog._write(durable=False):
        catalog.models.RemoteAE.insert(ae_title="RELAXED", host="127.0.0.1", port=104,
                                       created_at=datetime(2026, 1, 1)).execute()
    assert len(seen) == 1
    with pytest.raises(RuntimeError), catalog._write():
        raise RuntimeError("rolled back: nothing committed, nothing to sync")
    assert len(seen) == 1
    assert catalog.add_instance(record(2)).status == "stored"
    assert seen[1:] == [(True, 2, True)]


def test_a_failing_log_sync_raises_commit_not_durable(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from the WAL's ``fdatasync`` (injected where its answer comes: a disk error cannot be made on demand):
    ``CommitNotDurableError``, a ``CatalogError``; the committed row stays visible."""
    if not catalog.sqlite:
        pytest.skip("PostgreSQL commits synchronously by itself")
    import errno
    import os

    from dicom_ecg_node.errors import CommitNotDurableError

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error (injected)")

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with pytest.raises(CommitNotDurableError, match="catalog log not synced to disk: Input/output error"):
        catalog.add_instance(record(1))
    assert issubclass(CommitNotDurableError, CatalogError)
    assert catalog.stats().instances == 1
