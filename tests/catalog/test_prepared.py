"""catalog/prepared.py: statements compiled once give what peewee gives, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.prepared import Prepared, PreparedCache
from dicom_ecg_node.errors import CatalogError


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with Catalog.open(catalog_url) as c:
        yield c


def test_insert_select_update_match_peewee(catalog: Catalog) -> None:
    D = catalog.models.DeviceClock  # noqa: N806
    seen = datetime(2026, 3, 29, 0, 59, 58, 123456)  # naive UTC, as the catalog stores times
    insert = Prepared(catalog.db, lambda p: D.insert(
        ae_title=p("ae"), device_serial=p("serial"), first_seen=p("seen", D.first_seen),
        last_seen=p("seen", D.last_seen), total=1, trusted=p("trusted", D.trusted),
        offset_s=p("offset")).on_conflict_ignore().as_rowcount())
    select = Prepared(catalog.db, lambda p: D.select(D.ae_title, D.total, D.trusted, D.last_seen, D.offset_s)
                      .where((D.ae_title == p("ae")) & (D.device_serial == p("serial"))).limit(1))
    update = Prepared(catalog.db, lambda p: D.update(total=D.total + 1, offset_s=p("offset"))
                      .where(D.ae_title == p("ae")))
    with catalog._write():
        assert insert.execute(ae="CART1", serial="SN1", seen=seen, trusted=True, offset=-3.5).rowcount == 1
        assert insert.execute(ae="CART2", serial="", seen=seen, trusted=False, offset=None).rowcount == 1
        # The unique (ae_title, device_serial) index: a second insert is ignored, as peewee's on_conflict_ignore.
        assert insert.execute(ae="CART1", serial="SN1", seen=seen, trusted=False, offset=0.0).rowcount == 0
        assert update.execute(ae="CART1", offset=12.25).rowcount == 1
    with catalog._connection():
        got = select.one(ae="CART1", serial="SN1")
        assert select.one(ae="CART1", serial="nope") is None
        assert select.rows(ae="CART2", serial="") == [("CART2", 1, False, seen, None)]
        expected = (D.select(D.ae_title, D.total, D.trusted, D.last_seen, D.offset_s)
                    .where(D.ae_title == "CART1").tuples().first())
    # Converted as peewee converts (bool, datetime with microseconds, float), and equal to peewee's own read.
    assert got == ("CART1", 2, True, seen, 12.25) == expected
    assert type(got[2]) is bool and type(got[3]) is datetime
    named = Prepared(catalog.db, lambda p: D.select(D.ae_title, D.total.alias("n")).where(D.ae_title == p("ae")))
    with catalog._connection():
        assert named.one_dict(ae="CART1") == {"ae_title": "CART1", "n": 2}
        assert named.one_dict(ae="nobody") is None


def test_cache_compiles_once_and_missing_values_are_errors(catalog: Catalog) -> None:
    I = catalog.models.Instance  # noqa: N806, E741
    cache = PreparedCache(catalog.db)
    builds = []

    def build(p):
        builds.append(1)
        return I.select(I.id).where(I.sop_instance_uid == p("uid"))

    first = cache.get("instance", build)
    assert cache.get("instance", build) is first and len(builds) == 1
    assert "?" in first.sql or "%s" in first.sql  # a bound parameter, never the value in the text
    with catalog._connection():
        assert first.rows(uid="1.2.3") == []
        with pytest.raises(CatalogError, match="no value for slot 'uid'"):
            first.rows()
