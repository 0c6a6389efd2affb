"""The AE registry in the catalog (SQLite and PostgreSQL) and its ``ecg-node ae`` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.registry import AERegistry, DuplicateAEError, UnknownAEError
from dicom_ecg_node.cli import main
from dicom_ecg_node.errors import ConfigError, NotFoundError


@pytest.fixture
def registry(catalog_url):
    cat = Catalog.open(catalog_url)
    yield AERegistry(cat)
    cat.close()


def test_add_get_list_remove(registry) -> None:
    entry = registry.add(" PACS ", "pacs.example", 104, "main archive")
    assert (entry.ae_title, entry.host, entry.port) == ("PACS", "pacs.example", 104)
    registry.add("VIEWER", "127.0.0.1", 11113)
    got = registry.get("PACS   ")  # padding is not significant (PS3.5 6.2 AE)
    assert (got.ae_title, got.description, got.created_at.tzinfo is not None) == ("PACS", "main archive", True)
    assert [e.ae_title for e in registry.list()] == ["PACS", "VIEWER"]
    with pytest.raises(DuplicateAEError, match="already registered"):
        registry.add("PACS", "elsewhere", 105)
    with pytest.raises(UnknownAEError):
        registry.get("pacs")  # AE titles are case-sensitive
    registry.remove("PACS")
    with pytest.raises(NotFoundError):
        registry.remove("PACS")
    assert [e.ae_title for e in registry.list()] == ["VIEWER"]


@pytest.mark.parametrize(("title", "host", "port"), [
    ("", "h", 104), ("A" * 17, "h", 104), ("BACK\\SLASH", "h", 104), ("OK", "", 104), ("OK", "a b", 104),
    ("OK", "h", 0), ("OK", "h", 70000),
])
def test_invalid_entries_are_refused(registry, title, host, port) -> None:
    with pytest.raises(ConfigError):
        registry.add(title, host, port)


def test_reindex_clear_keeps_the_registry(registry) -> None:
    registry.add("PACS", "h", 104)
    registry.catalog.clear()
    assert [e.ae_title for e in registry.list()] == ["PACS"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_ae_add_list_remove(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert run("ae", "add", "PACS", "--host", "127.0.0.1", "--port", "104", "--description", "main", *data) == (
        0, "registered PACS at 127.0.0.1:104\n")
    code, out = run("ae", "add", "PACS", "--host", "127.0.0.1", "--port", "105", *data)
    assert code == 2 and "already registered" in out
    code, out = run("ae", "add", "BAD\\AE", "--host", "h", "--port", "104", *data)
    assert code == 2 and "PS3.5" in out
    code, out = run("ae", "list", "--json", *data)
    [row] = json.loads(out)
    assert (code, row["ae_title"], row["host"], row["port"], row["description"]) == (0, "PACS", "127.0.0.1", 104,
                                                                                    "main")
    code, out = run("ae", "list", *data)
    assert code == 0 and "AE_TITLE" in out and "PACS" in out
    code, out = run("ae", "remove", "NOPE", *data)
    assert code == 2 and "not registered" in out
    assert run("ae", "remove", "PACS", *data) == (0, "removed PACS\n")
    assert run("ae", "list", *data) == (0, "(none)\n")
