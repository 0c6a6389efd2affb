"""Kernel AIO ``fsync`` (dicom_ecg_node/archive/aio.py) on real files of this machine's file system."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_ecg_node.archive.aio import FsyncPool, KernelFsync


@pytest.fixture
def aio() -> Iterator[KernelFsync]:
    context = KernelFsync.create()
    if context is None:
        pytest.skip("kernel AIO fsync (io_submit IOCB_CMD_FSYNC) is not available on this system")
    yield context
    context.close()


def _dirty_file(path: Path, size: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, os.urandom(size))
    return fd


def test_an_fsync_started_in_the_kernel_completes_as_fsync_does(aio: KernelFsync, tmp_path: Path) -> None:
    """Started, then collected: success, as ``fsync(2)`` on the same file answers, and the bytes read back.

    Whether the pages reached the disk cannot be observed from here (only a power cut would tell): the kernel's
    worker calls the same ``vfs_fsync`` as ``fsync(2)``, and the failure tests below show that its answer is
    the one ``fsync(2)`` gives.
    """
    path = tmp_path / "staged"
    data = os.urandom(144_000)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        token = aio.start(fd)
        aio.wait(token)
        assert _fsync_errno(fd) == 0
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_a_directory_can_be_synced_and_tokens_are_collected_in_any_order(aio: KernelFsync, tmp_path: Path) -> None:
    files = [_dirty_file(tmp_path / f"f{i}", 4096) for i in range(3)]
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        tokens = [aio.start(fd) for fd in files] + [aio.start(folder)]
        assert len(set(tokens)) == 4
        for token in reversed(tokens):  # the last started is waited for first: the others are kept, not lost
            aio.wait(token)
        with pytest.raises(KeyError):
            aio.wait(tokens[0])  # a token is collected once
    finally:
        for fd in [*files, folder]:
            os.close(fd)


def test_a_descriptor_the_kernel_cannot_sync_is_refused_at_start(aio: KernelFsync, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    with pytest.raises(OSError) as closed:
        aio.start(fd)
    assert closed.value.errno == errno.EBADF
    read, write = os.pipe()  # a pipe has no fsync: EINVAL, as fsync(2) answers
    try:
        with pytest.raises(OSError) as pipe:
            aio.wait(aio.start(read))
        assert pipe.value.errno == errno.EINVAL
        assert pipe.value.errno == _fsync_errno(read)
    finally:
        os.close(read)
        os.close(write)
    # The context is still usable after both failures.
    ok = _dirty_file(tmp_path / "g", 100)
    try:
        aio.wait(aio.start(ok))
    finally:
        os.close(ok)


def _fsync_errno(fd: int) -> int:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc.errno or 0
    return 0


def test_the_pool_reuses_contexts_and_can_be_disabled() -> None:
    pool = FsyncPool()
    first = pool.take()
    if first is None:
        pytest.skip("kernel AIO fsync (io_submit IOCB_CMD_FSYNC) is not available on this system")
    second = pool.take()
    assert second is not None and second is not first  # one per store in flight
    pool.give(first)
    assert pool.take() is first  # kept, not destroyed and made again
    pool.give(first)
    pool.give(second)
    pool.close()
    assert pool.take() is None  # closed: stores fsync on their own
    assert FsyncPool(kernel=False).take() is None


def test_a_pool_tries_one_fsync_on_its_probe_folder_before_handing_out_contexts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if KernelFsync.create() is None:
        pytest.skip("kernel AIO fsync (io_submit IOCB_CMD_FSYNC) is not available on this system")
    started: list[int] = []
    real_start = KernelFsync.start

    def start(self: KernelFsync, fd: int) -> int:
        started.append(os.fstat(fd).st_ino)
        return real_start(self, fd)

    monkeypatch.setattr(KernelFsync, "start", start)
    pool = FsyncPool(probe=tmp_path)
    first = pool.take()
    assert first is not None and started == [tmp_path.stat().st_ino]  # the folder's fsync, queued and collected
    second = pool.take()
    assert second is not None and len(started) == 1  # tried once per pool, not per context
    pool.give(first)
    pool.give(second)
    pool.close()


def test_a_pool_whose_probe_fsync_the_kernel_refuses_offers_no_context(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """io_setup works but io_submit refuses IOCB_CMD_FSYNC (Linux before 4.18, some sandboxes): EINVAL, injected
    where the kernel answers. The pool then hands out nothing, so stores use their other ways from the first."""
    if KernelFsync.create() is None:
        pytest.skip("kernel AIO fsync (io_submit IOCB_CMD_FSYNC) is not available on this system")
    created: list[KernelFsync | None] = []
    real_create = KernelFsync.create.__func__  # type: ignore[attr-defined]

    def create(cls: type[KernelFsync]) -> KernelFsync | None:
        created.append(real_create(cls))
        return created[-1]

    def refuse(self: KernelFsync, fd: int) -> int:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(KernelFsync, "create", classmethod(create))
    monkeypatch.setattr(KernelFsync, "start", refuse)
    pool = FsyncPool(probe=tmp_path)
    with caplog.at_level("WARNING", logger="dicom_ecg_node.archive"):
        assert pool.take() is None
    assert "does not queue an fsync" in caplog.text
    assert pool.take() is None and pool.take() is None
    assert len(created) == 1  # no context made (and refused) again per store
    assert created[0] is not None and not created[0]._context.value  # the refused one was released
