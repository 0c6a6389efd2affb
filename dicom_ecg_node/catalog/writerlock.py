"""One SQLite writer at a time across the node's threads and processes, handed over without SQLite's sleeps.

Why
    SQLite lets one connection write at a time. A second ``BEGIN IMMEDIATE`` is refused with ``SQLITE_BUSY`` and
    its busy handler retries after sleeping 1, 2, 5, 10... ms (``sqliteDefaultBusyCallback``), however soon the
    lock is released. With the node's worker processes storing side by side and the derived work (clock
    observations) writing from the parent, measured here with DCMTK ``storescu`` over 4 associations: a write
    transaction waited 1.7 to 2.8 ms on average to begin, a third of them over 0.8 ms, while the transaction it
    waited for holds the lock for about half a millisecond (its commit's ``fsync``).

How
    :class:`SqliteWriterLock` queues this process's threads on a :class:`threading.Lock`, then takes an exclusive
    ``flock`` on a lock file beside the database (``catalog.sqlite-writer``) before ``BEGIN IMMEDIATE``. Every
    writer of the node takes the two in that order, so by the time it begins, SQLite's write lock is normally
    free. A busy ``flock`` is retried after sleeps that start at 50 µs and double up to 1 ms, until ``timeout_s``
    (:class:`~dicom_ecg_node.errors.CatalogError` then, as SQLite's own busy timeout would give); a blocking
    ``flock`` would hand over faster but could wait forever.

    A process that does not take the lock (another program, an older node) still meets SQLite's own locking:
    ``BEGIN IMMEDIATE`` and ``busy_timeout`` keep the database correct, only slower. The kernel drops the
    ``flock`` of a process that dies. The lock file is opened on first use, and again in a forked child (a
    descriptor inherited across ``fork`` shares its lock with the parent).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from dicom_ecg_node.errors import CatalogError

#: Suffix of the lock file's name, after the database file's (SQLite's own are ``-wal``, ``-shm``, ``-journal``).
LOCK_SUFFIX = "-writer"
_FIRST_SLEEP_S = 0.00005
_MAX_SLEEP_S = 0.001


class SqliteWriterLock:
    """Context manager: exclusive write access to one SQLite database file, for threads and processes.

    Parameters
    ----------
    database : str or Path
        The SQLite database file; the lock file is this path plus :data:`LOCK_SUFFIX`.
    timeout_s : float
        Longest wait for another process's writer.
    """

    def __init__(self, database: str | Path, timeout_s: float) -> None:
        self.path = Path(f"{database}{LOCK_SUFFIX}")
        self.timeout_s = timeout_s
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> SqliteWriterLock:
        self._thread_lock.acquire()
        try:
            self._lock_file()
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Close the lock file (reopened on the next use)."""
        with self._thread_lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise CatalogError(f"catalog writer lock {self.path}: {exc.strerror or exc}") from exc
            self._pid = os.getpid()
        return self._fd

    def _lock_file(self) -> None:
        fd = self._descriptor()
        deadline = time.monotonic() + self.timeout_s
        sleep = _FIRST_SLEEP_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                    raise CatalogError(f"catalog writer lock {self.path}: {exc.strerror or exc}") from exc
            if time.monotonic() >= deadline:
                raise CatalogError(f"catalog database is locked: another writer held {self.path.name} for "
                                   f"more than {self.timeout_s:g} s")
            time.sleep(sleep)
            sleep = min(sleep * 2, _MAX_SLEEP_S)
