"""The SQLite writer lock: exclusive across processes, bounded wait, prompt hand-over, fork-safe."""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_ecg_node.catalog.writerlock import LOCK_SUFFIX, SqliteWriterLock
from dicom_ecg_node.errors import CatalogError


def _hold(database: str, seconds: float, held: multiprocessing.synchronize.Event) -> None:
    with SqliteWriterLock(database, timeout_s=5.0):
        held.set()
        time.sleep(seconds)


@contextlib.contextmanager
def holder(database: str, seconds: float) -> Iterator[multiprocessing.process.BaseProcess]:
    """Another process holding the writer lock for ``seconds`` (entered once it holds it)."""
    ctx = multiprocessing.get_context("spawn")
    held = ctx.Event()
    process = ctx.Process(target=_hold, args=(database, seconds, held))
    process.start()
    try:
        assert held.wait(30)
        yield process
    finally:
        process.join(30)


def test_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    db = tmp_path / "catalog.sqlite"
    lock = SqliteWriterLock(db, timeout_s=1.0)
    with lock:
        assert (tmp_path / f"catalog.sqlite{LOCK_SUFFIX}").is_file()
    lock.close()


def test_another_process_waits_until_release(tmp_path: Path) -> None:
    db = str(tmp_path / "catalog.sqlite")
    lock = SqliteWriterLock(db, timeout_s=10.0)
    with holder(db, 0.4) as other:
        start = time.monotonic()
        with lock:
            waited = time.monotonic() - start
            other.join(30)  # it has released: we hold the lock now
            assert other.exitcode == 0
    lock.close()
    # It waited for the other process (0.4 s from the moment it held the lock), not for its own 10 s timeout.
    assert 0.2 <= waited < 5.0


def test_wait_is_bounded(tmp_path: Path) -> None:
    db = str(tmp_path / "catalog.sqlite")
    lock = SqliteWriterLock(db, timeout_s=0.3)
    with holder(db, 1.2) as other:
        start = time.monotonic()
        with pytest.raises(CatalogError, match="locked"), lock:
            pass
        assert 0.3 <= time.monotonic() - start < 1.2 + 5.0
        # The failed attempt left the thread lock free: once the other process is gone the lock is taken at once.
        other.join(30)
        with lock:
            pass
    lock.close()


def _count(database: str, counter: str, times: int, start: multiprocessing.synchronize.Event) -> None:
    """Add 1 to the number in ``counter`` ``times`` times, each read and write under the writer lock."""
    lock = SqliteWriterLock(database, timeout_s=30.0)
    start.wait(30)
    for _ in range(times):
        with lock:
            value = int(Path(counter).read_text())
            time.sleep(0.0002)  # a lost update needs the other process in here meanwhile
            Path(counter).write_text(str(value + 1))
    lock.close()


def test_processes_contending_never_overlap(tmp_path: Path) -> None:
    """Three processes writing by turns, most turns waited for in the kernel's queue (the waiter thread)."""
    db, counter = str(tmp_path / "catalog.sqlite"), tmp_path / "counter"
    counter.write_text("0")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    processes = [ctx.Process(target=_count, args=(db, str(counter), 150, start)) for _ in range(3)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert counter.read_text() == "450"


def _try_once(database: str) -> bool:
    with open(f"{database}{LOCK_SUFFIX}", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def test_a_wait_given_up_does_not_keep_the_lock(tmp_path: Path) -> None:
    """The waiter thread may get the lock after its writer timed out: it must release it at once."""
    db = str(tmp_path / "catalog.sqlite")
    lock = SqliteWriterLock(db, timeout_s=0.2)
    with holder(db, 0.8) as other:
        with pytest.raises(CatalogError, match="locked"), lock:
            pass
        other.join(30)
    # The holder is gone; the abandoned wait took the lock when it left and must have let it go. Another
    # process's descriptor (here: this test's own) can take it within moments.
    deadline = time.monotonic() + 10
    while not _try_once(db):
        assert time.monotonic() < deadline, "the abandoned wait kept the writer lock"
        time.sleep(0.01)
    with lock:
        assert not _try_once(db)  # held again, through this lock's own descriptor
    assert _try_once(db)
    waiters = [t for t in threading.enumerate() if t.name == "ecg-node-writer-lock"]
    lock.close()
    for thread in waiters:
        thread.join(5)
        assert not thread.is_alive()  # close() stops the idle waiter thread


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = SqliteWriterLock(tmp_path / "catalog.sqlite", timeout_s=5.0)
    inside = 0
    overlaps = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, overlaps
        for _ in range(200):
            with lock:
                with guard:
                    inside += 1
                    overlaps += inside > 1
                time.sleep(0)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lock.close()
    assert overlaps == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_forked_child_does_not_share_the_parents_lock(tmp_path: Path) -> None:
    lock = SqliteWriterLock(tmp_path / "catalog.sqlite", timeout_s=0.3)
    with lock:
        pass  # the parent has its lock file open now
    lock._thread_lock.acquire()  # hold both locks as a writer would, without the context manager
    fcntl.flock(lock._fd, fcntl.LOCK_EX)
    pid = os.fork()
    if pid == 0:  # child: its inherited descriptor would share the parent's lock; it must open its own and wait
        code = 1
        try:
            lock._thread_lock = threading.Lock()
            try:
                with lock:
                    code = 2  # got it while the parent held it: not exclusive
            except CatalogError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    fcntl.flock(lock._fd, fcntl.LOCK_UN)
    lock._thread_lock.release()
    lock.close()
    assert os.waitstatus_to_exitcode(status) == 0
