"""The registry look-up cache (catalog/lookupcache.py): edits through the catalog are seen at once, edits from
another process within ``ttl_s``, unknown titles are never cached; on SQLite and PostgreSQL and on a running node."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest
from securitysupport import associate, rejection

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.lookupcache import LookupCache
from dicom_ecg_node.catalog.registry import AERegistry
from dicom_ecg_node.errors import UnknownAEError


@pytest.fixture
def catalog(catalog_url):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


def _set_port_behind_the_cache(catalog: Catalog, title: str, port: int) -> None:
    """What ``ecg-node ae update`` in another process does: a write the cache of this process is not told of."""
    model = catalog.models.RemoteAE
    with catalog._write():
        assert model.update(port=port).where(model.ae_title == title).execute() == 1


def test_edits_through_the_catalog_are_seen_at_once(catalog):
    reader, admin = AERegistry(catalog), AERegistry(catalog)  # the access policy's and the CLI's, one catalog
    admin.add("CART1", "127.0.0.1", 104, permissions="echo")
    assert reader.get("CART1").permissions == frozenset({"echo"})
    admin.update("CART1", permissions="echo,store")
    assert reader.get("CART1").permissions == frozenset({"echo", "store"})
    admin.remove("CART1")
    with pytest.raises(UnknownAEError):
        reader.get("CART1")


def test_edits_of_another_process_are_seen_after_the_ttl(catalog):
    catalog.registry_cache.ttl_s = 0.3
    registry = AERegistry(catalog)
    registry.add("PACS", "127.0.0.1", 104)
    assert registry.get("PACS").port == 104
    _set_port_behind_the_cache(catalog, "PACS", 11112)
    assert registry.get("PACS").port == 104  # served from the cache: the write did not go through it
    time.sleep(0.35)
    assert registry.get("PACS").port == 11112


def test_unknown_titles_are_not_cached(catalog):
    registry = AERegistry(catalog)
    with pytest.raises(UnknownAEError):
        registry.get("NEWCART")
    model = catalog.models.RemoteAE
    with catalog._write():  # registered by another process
        model.insert(ae_title="NEWCART", host="127.0.0.1", port=104, description="", permissions="echo",
                     networks="", move_destinations="", created_at=datetime(2026, 12, 6)).execute()
    assert registry.get("NEWCART").ae_title == "NEWCART"


def test_a_read_older_than_an_edit_is_not_kept():
    cache = LookupCache(ttl_s=60)
    generation = cache.generation  # a look-up starts ...
    cache.clear()  # ... an edit commits and clears the cache ...
    cache.put("CART1", "old row", generation)  # ... the look-up's (older) row must not be served afterwards
    assert cache.get("CART1") is None
    cache.put("CART1", "new row", cache.generation)
    assert cache.get("CART1") == "new row"


def test_a_disabled_cache_keeps_nothing():
    cache = LookupCache(ttl_s=0)
    cache.put("CART1", "row", cache.generation)
    assert cache.get("CART1") is None


def test_the_cache_is_bounded():
    from dicom_ecg_node.catalog.lookupcache import MAX_ENTRIES

    cache = LookupCache(ttl_s=60)
    for i in range(MAX_ENTRIES + 10):
        cache.put(i, i, cache.generation)
    assert len(cache._items) <= MAX_ENTRIES
    assert cache.get(MAX_ENTRIES + 9) == MAX_ENTRIES + 9


def test_concurrent_lookups_and_edits_end_on_the_last_edit(catalog):
    registry = AERegistry(catalog)
    registry.add("CART1", "127.0.0.1", 1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def look() -> None:
        while not stop.is_set():
            try:
                registry.get("CART1")
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=look) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for port in range(2, 40):
            AERegistry(catalog).update("CART1", port=port)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors
    assert registry.get("CART1").port == 39


def test_running_node_refuses_a_removed_ae_at_once_and_a_cli_removal_within_a_second(secure_node, tmp_path):
    node = secure_node()
    registry = AERegistry(node.ingest.catalog)
    registry.add("CART1", "127.0.0.1", 104, permissions="echo")
    registry.add("CART2", "127.0.0.1", 104, permissions="echo")
    for title in ("CART1", "CART2"):  # both are in the node's cache now
        assoc = associate(node, title)
        assert assoc.is_established
        assoc.release()
    registry.remove("CART1")  # through the node's catalog: at once
    refused = associate(node, "CART1")
    assert refused.is_rejected and rejection(refused) == (1, 1, 3)
    # The admin's CLI in its own process: the node sees it once its cached entry is a second old.
    removed = subprocess.run([sys.executable, "-m", "dicom_ecg_node", "ae", "remove", "CART2", "--data-dir",
                              str(node.config.data_dir)], capture_output=True, text=True, timeout=120)
    assert removed.returncode == 0, removed.stderr
    done = time.monotonic()
    while True:
        assoc = associate(node, "CART2")
        if assoc.is_rejected:
            break
        assoc.release()
        assert time.monotonic() - done < 1.0 + 2.0, "CART2 still admitted 3 s after ecg-node ae remove"
        time.sleep(0.05)
    assert rejection(assoc) == (1, 1, 3)
