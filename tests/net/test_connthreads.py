"""Connection threads (net/connthreads.py): reused between connections, one more when all are busy, idle ones end,
no job lost when a thread times out as a job arrives; and on a running node, sequential associations reuse one."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from pynetdicom import AE

from dicom_ecg_node.net.connthreads import ConnectionThreads


def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_an_idle_thread_serves_the_next_job():
    pool = ConnectionThreads(idle_s=30)
    seen: list[int] = []
    for _ in range(5):
        done = threading.Event()
        pool.submit(lambda d=done: (seen.append(threading.get_ident()), d.set()))
        assert done.wait(5)
        _wait(lambda: pool.idle == 1)
    assert len(set(seen)) == 1 and pool.threads == 1
    pool.close()
    _wait(lambda: pool.threads == 0)


def test_a_busy_thread_does_not_hold_up_the_next_job():
    pool = ConnectionThreads(idle_s=30)
    release, second = threading.Event(), threading.Event()
    pool.submit(release.wait, 10)
    pool.submit(second.set)
    assert second.wait(5)  # ran while the first job still blocks
    assert pool.threads == 2
    release.set()
    _wait(lambda: pool.idle == 2)
    pool.close()
    _wait(lambda: pool.threads == 0)


def test_idle_threads_end_after_idle_s():
    pool = ConnectionThreads(idle_s=0.05)
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(5)
    _wait(lambda: pool.threads == 0)
    assert pool.idle == 0


def test_a_failing_job_is_logged_and_the_thread_serves_on(caplog):
    caplog.set_level(logging.ERROR, logger="dicom_ecg_node.net")
    pool = ConnectionThreads(idle_s=30)
    pool.submit(lambda: 1 / 0)
    _wait(lambda: pool.idle == 1)
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(5) and pool.threads == 1
    assert any("connection handler failed" in r.getMessage() for r in caplog.records)
    pool.close()


def test_closed_pool_refuses_jobs():
    pool = ConnectionThreads()
    pool.close()
    with pytest.raises(RuntimeError):
        pool.submit(print)


def test_no_job_is_lost_when_threads_time_out_as_jobs_arrive():
    # idle_s of a millisecond: threads keep timing out while jobs are handed to them.
    pool = ConnectionThreads(idle_s=0.001)
    runs: list[int] = []
    lock = threading.Lock()
    all_done = threading.Event()
    total = 2000

    def job(i: int) -> None:
        with lock:
            runs.append(i)
            if len(runs) == total:
                all_done.set()

    for i in range(total):
        pool.submit(job, i)
        if i % 7 == 0:
            time.sleep(0.001)
    assert all_done.wait(30), f"{total - len(runs)} jobs never ran"
    assert sorted(runs) == list(range(total))
    _wait(lambda: pool.threads == 0)
    pool.close()


def test_node_serves_sequential_associations_on_one_thread(node):
    server = node.node._server
    before = server.connection_threads.started
    ae = AE(ae_title="SCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    for _ in range(5):
        assoc = ae.associate("127.0.0.1", node.port, ae_title=node.aet)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        _wait(lambda: server.connection_threads.idle >= 1)
    assert server.connection_threads.started - before <= 1
