r"""``fsync`` that runs while the caller works: Linux kernel AIO (``io_submit`` with ``IOCB_CMD_FSYNC``).

Why
    A store ``fsync``\ s its file while it validates the object, and its directory while it writes the catalog rows.
    A helper thread can wait on the disk meanwhile, but it needs the GIL to start each call and to hand back its
    result: with the storing thread busy in Python each hand-off is a wake-up and a GIL switch (measured here, 15
    context switches per ECG on the helper thread). Kernel AIO hands the ``fsync`` to the kernel's own worker
    (``aio_fsync_work``, Linux 4.18 and later, every file system): one system call to start it, one to collect it,
    no Python thread. Measured here around 2 ms of Python work: a helper thread added 0.25 ms of wall time and
    0.35 ms of CPU per ``fsync``, kernel AIO 0.07 ms and ~0 (on the node, see services/ingest.py "Overlap").

What it promises
    The ``fsync`` done is the ``fsync(2)`` the caller would have made (``vfs_fsync`` on the same open file); its
    error is returned in the completion and raised here as :class:`OSError` with that ``errno``, exactly where the
    caller would have seen it. The descriptor must stay open until :meth:`KernelFsync.wait` returns.

Where it is not available
    :meth:`KernelFsync.create` returns ``None`` on another system, an architecture whose system call numbers are
    not listed here, a big-endian one, or when ``io_setup`` is refused (a seccomp profile, ``fs.aio-max-nr``
    exhausted): callers then ``fsync`` on their own thread, as before. A kernel can also set up a context and
    still refuse to queue an ``fsync`` (``EINVAL`` from ``io_submit``: Linux before 4.18, some sandboxes): a
    :class:`FsyncPool` given a ``probe`` folder tries one there before it hands out its first context, and offers
    none if it is refused, so that stores do not try and fall back every time.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import platform
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("dicom_ecg_node.archive")

#: (io_setup, io_destroy, io_getevents, io_submit) per architecture: ``arch/x86/entry/syscalls/syscall_64.tbl``
#: and ``include/uapi/asm-generic/unistd.h`` (arm64, riscv64).
_SYSCALLS = {
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "arm64": (0, 1, 4, 2),
    "riscv64": (0, 1, 4, 2),
}
_IOCB_CMD_FSYNC = 2
#: In-flight operations per context: a store has at most one ``fsync`` running at a time.
_DEPTH = 4


class _Iocb(ctypes.Structure):
    """``struct iocb`` of ``include/uapi/linux/aio_abi.h`` (little endian: key before rw_flags)."""

    _fields_ = [
        ("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32), ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16), ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64), ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64), ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    """``struct io_event``: ``res`` is the operation's return value (``-errno`` on failure)."""

    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64), ("res", ctypes.c_int64),
                ("res2", ctypes.c_int64)]


class KernelFsync:
    """One kernel AIO context: start ``fsync`` of a descriptor, collect it later. One thread at a time.

    Use :meth:`create` (``None`` where kernel AIO is not available) and :meth:`close` when done.
    """

    def __init__(self, syscall: Any, numbers: tuple[int, int, int, int], context: int) -> None:
        self._syscall = syscall
        self._setup, self._destroy, self._getevents, self._submit = numbers
        self._context = ctypes.c_ulong(context)
        self._iocb = _Iocb()
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._iocb))
        self._events = (_IoEvent * _DEPTH)()
        self._next = 0
        self._running: set[int] = set()
        self._done: dict[int, int] = {}  # token -> result, collected while waiting for another

    @classmethod
    def create(cls) -> KernelFsync | None:
        """A new context, or ``None`` where kernel AIO ``fsync`` cannot be used (see the module notes)."""
        numbers = _SYSCALLS.get(platform.machine().lower())
        if not sys.platform.startswith("linux") or numbers is None or sys.byteorder != "little":
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        context = ctypes.c_ulong(0)
        if syscall(ctypes.c_long(numbers[0]), ctypes.c_long(_DEPTH), ctypes.byref(context)) != 0:
            return None
        return cls(syscall, numbers, context.value)

    def start(self, fd: int) -> int:
        """Start ``fsync(fd)``; returns the token :meth:`wait` takes.

        Raises
        ------
        OSError
            The kernel refused to queue it (e.g. ``EINVAL`` for a descriptor that cannot be synced).
        """
        self._next += 1
        token = self._next
        iocb = self._iocb
        ctypes.memset(ctypes.byref(iocb), 0, ctypes.sizeof(iocb))
        iocb.aio_data = token
        iocb.aio_lio_opcode = _IOCB_CMD_FSYNC
        iocb.aio_fildes = fd
        while True:
            queued = self._syscall(ctypes.c_long(self._submit), self._context, ctypes.c_long(1), self._iocbs)
            if queued == 1:
                self._running.add(token)
                return token
            code = ctypes.get_errno()
            if code != errno.EINTR:
                raise OSError(code or errno.EIO, os.strerror(code or errno.EIO))

    def wait(self, token: int) -> None:
        """Wait until the ``fsync`` of ``token`` is done (the GIL is released meanwhile).

        Raises
        ------
        OSError
            The ``fsync`` failed (``ENOSPC``, ``EIO``...), as ``fsync(2)`` would have.
        KeyError
            ``token`` is not running here (never started, or already waited for): nothing to wait for.
        """
        if token not in self._running:
            raise KeyError(f"no fsync {token} is running on this context")
        while token not in self._done:
            got = self._syscall(ctypes.c_long(self._getevents), self._context, ctypes.c_long(1),
                                ctypes.c_long(_DEPTH), self._events, None)
            if got < 0:
                code = ctypes.get_errno()
                if code == errno.EINTR:
                    continue
                raise OSError(code, os.strerror(code))
            for event in self._events[:got]:
                self._done[int(event.data)] = int(event.res)
        self._running.discard(token)
        result = self._done.pop(token)
        if result < 0:
            raise OSError(-result, os.strerror(-result))

    def close(self) -> None:
        """Release the context (``io_destroy`` waits for what is still running)."""
        if self._context.value:
            self._syscall(ctypes.c_long(self._destroy), self._context)
            self._context = ctypes.c_ulong(0)


class FsyncPool:
    """Kernel AIO contexts for the storing threads: :meth:`take` one per store, :meth:`give` it back.

    Contexts are created on demand (one per store in flight at most) and kept: ``io_destroy`` is slow (it waits
    for an RCU grace period), so a store never pays for it.

    Parameters
    ----------
    kernel : bool
        ``False``: :meth:`take` always answers ``None``, as where kernel AIO is not available (the callers'
        other way, tested on any system).
    probe : Path, optional
        A folder on the file system whose files will be synced (the archive's). The first context made must
        queue and complete an ``fsync`` of it before any is handed out; if the kernel refuses to queue it, the pool
        offers no context from then on (module notes). Without it, contexts are handed out untried.
    """

    def __init__(self, kernel: bool = True, probe: Path | None = None) -> None:
        self._free: list[KernelFsync] = []
        self._lock = threading.Lock()
        self._closed = False
        self._available = kernel
        self._probe = probe

    def take(self) -> KernelFsync | None:
        """A context for this thread's store; ``None`` where kernel AIO cannot be used."""
        with self._lock:
            if self._free:
                return self._free.pop()
            if not self._available or self._closed:
                return None
            probe = self._probe
        made = KernelFsync.create()
        if made is not None and probe is not None and not _queues_fsync(made, probe):
            made.close()
            made = None
        with self._lock:
            if made is None:
                self._available = False
            elif probe is not None:
                self._probe = None  # tried once: the answer holds for every context of this kernel
        return made

    def give(self, context: KernelFsync) -> None:
        """Return a context whose operations have all been waited for."""
        with self._lock:
            if not self._closed:
                self._free.append(context)
                return
        context.close()

    def close(self) -> None:
        """Release the idle contexts; those still taken are released when given back."""
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for context in free:
            context.close()


def _queues_fsync(context: KernelFsync, folder: Path) -> bool:
    """Whether ``context`` queues an ``fsync`` of ``folder`` (``False`` only when the kernel refuses to queue it).

    A failure of the ``fsync`` itself (``EIO``...) is the disk's, not kernel AIO's: stores will meet it and answer it.
    A folder that cannot be opened tells nothing, so the context is used.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return True
    try:
        try:
            token = context.start(fd)
        except OSError as exc:
            log.warning("kernel AIO does not queue an fsync here (%s): stores fsync on their own thread", exc)
            return False
        with contextlib.suppress(OSError):  # the disk's failure: not this question
            context.wait(token)
        return True
    finally:
        os.close(fd)
