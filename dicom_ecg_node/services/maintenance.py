"""Maintenance use cases: verify the archive against the catalog, rebuild the catalog, statistics, listings.

``verify``
    Re-hashes every archived file and compares it with its catalog row. Problems: *missing* (row without file),
    *corrupt* (checksum differs), *unreadable*, *orphan* (file without row: a crash between the file's rename
    and the row's commit, or a superseded file whose removal failed), *temp* (an interrupted write's leftover).
``reindex``
    Makes the catalog describe the archive again. Rows whose file is missing are deleted. A corrupt file is
    moved to the quarantine and its row deleted, so that the sender can re-send it (a corrupt file is never
    silently re-catalogued under its new checksum). Orphans are validated and indexed like a received object
    (sender ``REINDEX``, received time = file time); an orphan that is a byte-identical copy of an indexed
    instance is removed, one that conflicts with it or fails validation is moved to the quarantine.
    ``full=True`` first deletes every row (a lost or damaged database): every file is then indexed afresh and
    corruption cannot be detected, since the reference checksums are gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dicom_ecg_node.archive import Archive, Quarantine, QuarantineEntry
from dicom_ecg_node.catalog import Catalog, CatalogStats, ConflictRow
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import ArchiveError, EcgNodeError, NotFoundError
from dicom_ecg_node.services.ingest import IngestService

logger = logging.getLogger("dicom_ecg_node.maintenance")


@contextlib.contextmanager
def open_catalog(config: NodeConfig) -> Iterator[Catalog]:
    """Open (and migrate) the node's catalog for the duration of a ``with`` block."""
    catalog = Catalog.open(config.catalog_url)
    try:
        yield catalog
    finally:
        catalog.close()


@dataclass(frozen=True, slots=True)
class VerifyProblem:
    """One inconsistency between archive and catalog.

    Attributes
    ----------
    kind : {"missing", "corrupt", "unreadable", "orphan", "temp"}
    path : str
        Path relative to the data directory.
    sop_instance_uid : str or None
        The catalog's UID for this path (``None`` for orphans and temporary files).
    detail : str
    """

    kind: Literal["missing", "corrupt", "unreadable", "orphan", "temp"]
    path: str
    sop_instance_uid: str | None
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """Result of :func:`verify`: instances checked, how many were intact, and every problem found."""

    checked: int = 0
    intact: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def of_kind(self, kind: str) -> list[VerifyProblem]:
        """Problems of one kind."""
        return [p for p in self.problems if p.kind == kind]


def verify(config: NodeConfig) -> VerifyReport:
    """Re-hash every archived file against the catalog and look for files the catalog does not know.

    Parameters
    ----------
    config : NodeConfig
        The node's settings (data directory and catalog URL).

    Returns
    -------
    VerifyReport

    Raises
    ------
    CatalogError
        The catalog cannot be read.
    """
    archive = Archive(config.data_dir)
    report = VerifyReport()
    known: set[str] = set()
    with open_catalog(config) as catalog:
        for entry in catalog.iter_instance_files():
            report.checked += 1
            known.add(entry.path)
            try:
                path = archive.resolve(entry.path)
            except ArchiveError as exc:
                report.problems.append(VerifyProblem("unreadable", entry.path, entry.sop_instance_uid, str(exc)))
                continue
            if not path.exists():
                report.problems.append(VerifyProblem("missing", entry.path, entry.sop_instance_uid,
                                                     "catalogued file is absent"))
                continue
            try:
                size, sha = archive.checksum(entry.path)
            except ArchiveError as exc:
                report.problems.append(VerifyProblem("unreadable", entry.path, entry.sop_instance_uid, str(exc)))
                continue
            if sha != entry.sha256 or size != entry.size:
                report.problems.append(VerifyProblem(
                    "corrupt", entry.path, entry.sop_instance_uid,
                    f"sha256 {sha[:12]}… size {size}, catalogued {entry.sha256[:12]}… size {entry.size}"))
            else:
                report.intact += 1
    for rel in archive.iter_files():
        if rel not in known:
            report.problems.append(VerifyProblem("orphan", rel, None, "file has no catalog row"))
    for tmp in archive.leftover_files():  # not a running node's empty spare staged files
        report.problems.append(VerifyProblem("temp", archive.relative(tmp), None, "leftover of an interrupted write"))
    return report


@dataclass(slots=True)
class ReindexReport:
    """Result of :func:`reindex` (lists of relative paths)."""

    indexed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed_rows: list[str] = field(default_factory=list)
    removed_copies: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)


def _to_quarantine(service: IngestService, rel: str, reason: str, error: str, uid: str | None) -> None:
    """Move an archived file to the quarantine (copy durably, then remove)."""
    data = service.archive.read(rel)
    service.quarantine.put(data, {"sender_ae": "REINDEX", "sender_address": "local", "status": "refused",
                                  "error": error, "comment": reason, "archive_path": rel,
                                  "sop_instance_uid": uid, "size": len(data)})
    service.archive.remove(rel)


def reindex(config: NodeConfig, *, full: bool = False) -> ReindexReport:
    """Rebuild the catalog from the archive (see the module notes for what happens to each kind of file).

    Parameters
    ----------
    config : NodeConfig
        The node's settings (data directory and catalog URL).
    full : bool
        Delete every catalog row first and index every file afresh.

    Returns
    -------
    ReindexReport

    Raises
    ------
    CatalogError, ArchiveError
    """
    report = ReindexReport()
    with IngestService.open(config) as service:
        catalog, archive = service.catalog, service.archive
        if full:
            catalog.clear()
        known: set[str] = set()
        for entry in list(catalog.iter_instance_files()):
            path = archive.resolve(entry.path)
            if not path.exists():
                catalog.remove_instance(entry.sop_instance_uid)
                report.removed_rows.append(entry.path)
                continue
            _size, sha = archive.checksum(entry.path)
            if sha != entry.sha256:
                catalog.remove_instance(entry.sop_instance_uid)
                _to_quarantine(service, entry.path, f"checksum mismatch: catalogued {entry.sha256}, found {sha}",
                               "ChecksumMismatch", entry.sop_instance_uid)
                report.quarantined.append((entry.path, "checksum mismatch"))
                continue
            known.add(entry.path)
            report.unchanged += 1
        _index_orphans(service, known, report)
        for tmp in archive.clean_temp():  # the default age spares a running node's in-flight writes
            logger.info("removed temporary file %s", tmp)
    return report


@dataclass(frozen=True, slots=True)
class NodeStats:
    """Catalog statistics plus the number of quarantined objects."""

    catalog: CatalogStats
    quarantined: int


def stats(config: NodeConfig) -> NodeStats:
    """Counts, bytes stored, per-sender totals and quarantine size."""
    with open_catalog(config) as catalog:
        catalog_stats = catalog.stats()
    return NodeStats(catalog_stats, len(Quarantine(config.data_dir).entries()))


def list_quarantine(config: NodeConfig) -> list[QuarantineEntry]:
    """Every quarantined object with its reason, oldest first."""
    return Quarantine(config.data_dir).entries()


def list_conflicts(config: NodeConfig) -> list[ConflictRow]:
    """Every recorded demographic conflict, oldest first."""
    with open_catalog(config) as catalog:
        return catalog.list_conflicts()


__all__ = [
    "NodeStats",
    "ReindexReport",
    "VerifyProblem",
    "VerifyReport",
    "list_conflicts",
    "list_quarantine",
    "open_catalog",
    "reindex",
    "stats",
    "verify",
]


def _index_orphans(service: IngestService, known: set[str], report: ReindexReport) -> None:
    """Index every archived file whose path is not in ``known`` (see the module notes for the outcomes)."""
    archive = service.archive
    for rel in list(archive.iter_files()):
        if rel in known:
            continue
        try:
            status = service.index_file(rel)
        except (ArchiveError, EcgNodeError) as exc:
            _to_quarantine(service, rel, str(exc), type(exc).__name__, None)
            report.quarantined.append((rel, str(exc)))
            continue
        if status == "stored":
            report.indexed.append(rel)
        elif status == "duplicate":
            archive.remove(rel)
            report.removed_copies.append(rel)
        else:
            _to_quarantine(service, rel, "another file is catalogued under this SOP Instance UID",
                           "InstanceConflictError", None)
            report.quarantined.append((rel, "conflicts with the catalogued instance"))


def recover(config: NodeConfig) -> ReindexReport:
    """Bring the catalog and archive together again after the node stopped without closing (crash, kill -9).

    A crash can leave two things (never a row without its file, since the row is committed after the file is
    durable): a temporary file of an interrupted write, and a file renamed into place whose row was not yet
    committed (the sender was never told "stored"). Temporary files are removed; such orphans are indexed like a
    received object, so nothing that reached the disk is lost and the sender's re-send is a duplicate. Unlike
    :func:`reindex`, catalogued files are not re-hashed: recovery costs one walk of the archive.

    Must run while no node uses the data directory.
    """
    report = ReindexReport()
    with IngestService.open(config) as service:
        known = {entry.path for entry in service.catalog.iter_instance_files()}
        report.unchanged = len(known)
        for tmp in service.archive.clean_temp(min_age_s=0):
            logger.warning("removed temporary file of an interrupted write: %s", tmp)
        _index_orphans(service, known, report)
    return report


@contextlib.contextmanager
def node_session(config: NodeConfig) -> Iterator[ReindexReport | None]:
    """Mark the data directory in use while a node runs; recover first if the last node did not stop cleanly.

    The marker ``DATA_DIR/node.running`` exists only while a node runs. Finding it at start means the previous
    node crashed (or was killed), so :func:`recover` runs before anything is received.

    Yields
    ------
    ReindexReport or None
        What recovery did, or ``None`` after a clean stop.
    """
    marker = config.data_dir / "node.running"
    report = None
    if marker.exists():
        logger.warning("the node did not stop cleanly last time: recovering the archive and catalog")
        report = recover(config)
        logger.warning("recovery: %d orphan file(s) indexed, %d quarantined, %d duplicate copies removed",
                       len(report.indexed), len(report.quarantined), len(report.removed_copies))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with open(marker, "w") as fh:
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        yield report
    finally:
        marker.unlink(missing_ok=True)


def locate_instance(config: NodeConfig, sop_instance_uid: str) -> Path:
    """The archived file of an instance the node holds.

    Raises
    ------
    NotFoundError
        The catalog has no such SOP Instance UID.
    """
    with open_catalog(config) as catalog:
        entry = catalog.find_instance_file(sop_instance_uid)
    if entry is None:
        raise NotFoundError(f"SOP Instance UID {sop_instance_uid} is not in the catalog")
    return Path(config.data_dir) / entry.path
