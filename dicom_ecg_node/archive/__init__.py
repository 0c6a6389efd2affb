r"""The archive: DICOM files on disk under ``DATA_DIR/archive`` and refused objects under ``DATA_DIR/quarantine``.

Placement
    A file's path is derived from the *validated* SOP Instance UID, hashed, never from the peer's string itself:
    ``archive/ab/c/<sha256(uid)>.<token>.dcm`` where ``ab`` and ``c`` are the first hex digits of the hash
    (4,096 directories: ~250 files each at a million ECGs) and ``token`` is random. :meth:`Archive.create`
    makes all of them once, so a store never creates (and ``fsync``\ s) a directory on the way (unless told not
    to, for a small short-lived archive: then the first file of a directory creates it, durably); files stored
    under the earlier ``archive/ab/cd/`` layout stay where their catalog rows say. The random token means two stores
    of the same UID (a concurrent re-send, or a ``replace``) never share a file, so the catalog row alone says
    which file is current and a failed store can always delete *its own* file without touching another's.

Durability
    :meth:`Archive.write` writes a temporary file in the target directory, hashes while writing, ``fsync``\ s it,
    links it to its final name without clobbering (``os.link``; ``os.replace`` only when ``overwrite=True``),
    removes the temporary name and ``fsync``\ s the directory (and every directory it had to create, in their
    parents), so that once it returns the file and its name survive a power loss.
Staging
    A received object's name is known only once it is parsed, and its ``fsync`` (about a millisecond) need not wait
    for that: :meth:`Archive.begin_stage` writes the bytes under a temporary name in ``archive/.staging``,
    :meth:`PendingStage.sync` ``fsync``\ s them (:meth:`PendingStage.sync_in_kernel` starts that ``fsync`` on the
    kernel's side, :mod:`.aio`, while the object is validated), and :meth:`Archive.place` (or
    :meth:`Archive.begin_place`, its directory ``fsync`` likewise left running) then links them to their final
    name and ``fsync``\ s that directory, which is all a later crash needs. A staged file that
    never gets a name is removed (:meth:`Archive.discard`, :meth:`PendingStage.abandon` when it was never
    ``fsync``\ ed, or at the next start like any temporary file).
    Creating the staged file (a new inode and directory entry) is done ahead of the store that fills it
    (:meth:`Archive.prepare_stage`, called once the previous store has answered its sender): measured here after
    a large delete on the same file system, ``open(O_CREAT)`` took 0.7-0.9 ms (0.1 ms usually), while the sender
    waited.

Direct writes
    :meth:`Archive.begin_stage` writes the whole 4 KiB blocks of a received object with ``O_DIRECT`` (copied into a
    page-aligned buffer that the disk reads from) and only its last partial block through the page cache. Measured
    here (ext4 on a virtio disk, 2 vCPUs): writing a 144 KB ECG through the page cache and ``fdatasync``-ing it took
    320-500 µs of kernel CPU (copying it into new page-cache pages, then writing those back), written directly
    150-160 µs plus about 40 µs of copying in user space; with the node receiving on 4 associations, 10% less CPU
    per ECG and 7% more ECGs/s (``scripts/bench_ab.py``, 8 rounds), on one association the same. The ``fsync``
    that follows is the same as before: it makes the file's size and blocks, its tail and the disk's write cache
    durable. A file system that refuses ``O_DIRECT`` (``EINVAL``: ramfs, some network file systems) is written
    through the page cache from then on.

Errors
    ``ENOSPC``/``EDQUOT`` become :class:`~dicom_ecg_node.errors.StorageFullError`, any other ``OSError``
    :class:`~dicom_ecg_node.errors.ArchiveError`; partial temporary files are removed before raising.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import mmap
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom_ecg_node.archive.aio import KernelFsync
from dicom_ecg_node.errors import ArchiveError, StorageFullError

#: Prefix of temporary files; they never end in ``.dcm`` so listings of the archive skip them.
TEMP_PREFIX = ".tmp-"
#: Folder of the archive holding staged files (:meth:`Archive.begin_stage`); never a fan-out folder name (hex digits).
STAGING = ".staging"
#: Staged files created ahead of the stores that fill them (:meth:`Archive.prepare_stage`).
SPARE_STAGES = 2
#: A spare staged file older than this is replaced rather than used: far below the age (``clean_temp``'s
#: ``min_age_s``, 300 s) at which a starting sibling worker removes temporary files it did not write.
SPARE_MAX_AGE_S = 60.0
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_CHUNK = 1 << 20
#: Direct writes (``O_DIRECT``, see "Direct writes"): offsets, lengths and buffers are multiples of this (the
#: largest logical block size of common disks, so every smaller one divides it).
_DIRECT_ALIGN = 4096
#: Bytes copied through one aligned buffer per direct write.
_DIRECT_CHUNK = 1 << 20


def _os_error(exc: OSError, what: str) -> ArchiveError:
    """Map an ``OSError`` to the project's error (disk full → :class:`StorageFullError`)."""
    if exc.errno in _FULL_ERRNOS:
        return StorageFullError(f"{what}: no space left on the archive file system ({exc.strerror})")
    return ArchiveError(f"{what}: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    """``fsync`` a directory so that entries created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdir(path: Path) -> bool:
    """Create one directory; ``False`` if it already existed."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    return True


def ensure_dir(path: Path) -> None:
    """Create ``path`` and missing parents, ``fsync``-ing each parent a new directory was created in."""
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:  # another thread or worker created it meanwhile
            continue
        fsync_dir(d.parent)


def sha256_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 hex digest of the file at ``path``.

    Raises
    ------
    OSError
        The file cannot be read (callers map it).
    """
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of :meth:`Archive.write`.

    Attributes
    ----------
    path : Path
        Absolute path of the durable file.
    relative : str
        Path relative to the data directory, POSIX separators (what the catalog stores).
    size : int
        Bytes written.
    sha256 : str
        Hex SHA-256 of the bytes written.
    """

    path: Path
    relative: str
    size: int
    sha256: str


def _write_new(path: Path, chunks: Iterable[bytes], h: Any) -> int:
    """Create ``path`` (never an existing file), write ``chunks`` (hashing into ``h`` unless ``None``), ``fsync``.

    Returns the size; a partial file is removed before an error propagates.
    """
    size = 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:  # a directory not created ahead (or removed since), or of an earlier layout
        ensure_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                if h is not None:
                    h.update(view)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    size += n
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return size


def _atomic_write(target: Path, data: bytes | Iterable[bytes], *, overwrite: bool,
                  sha256: str | None = None) -> tuple[int, str]:
    """Write ``data`` durably to ``target`` (temp file in the same directory, fsync, link/rename, fsync dir).

    With ``sha256`` (the digest of ``data``, a ``bytes`` object the caller already hashed) nothing is hashed again.
    """
    directory = target.parent
    tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}.part"
    h = None if sha256 is not None and isinstance(data, bytes) else hashlib.sha256()
    chunks: Iterable[bytes] = (data,) if isinstance(data, bytes | bytearray | memoryview) else data
    size = _write_new(tmp, chunks, h)
    linked = False
    try:
        if overwrite:
            os.replace(tmp, target)
        else:
            # link() fails with EEXIST instead of silently replacing an existing file (rename would clobber).
            os.link(tmp, target)
            linked = True
            os.unlink(tmp)
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if linked:  # the new name is not durable, so it is not reported written: take it back
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
        raise
    return size, h.hexdigest() if h is not None else sha256  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Staged:
    """Bytes made durable under a temporary name (:meth:`PendingStage.sync`), still without their final name.

    Attributes
    ----------
    path : Path
        The temporary file in ``archive/.staging``.
    size : int
        Bytes written.
    """

    path: Path
    size: int


class PendingStage:
    """A staged file written but not yet durable (:meth:`Archive.begin_stage`); :meth:`sync` finishes it.

    Attributes
    ----------
    path : Path
    size : int
    """

    __slots__ = ("_fd", "path", "size")

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self.size = size
        self._fd = fd

    def sync(self) -> Staged:
        """``fsync`` and close the file: its bytes are durable (a failure removes it).

        Raises
        ------
        StorageFullError, ArchiveError
        """
        try:
            os.fsync(self._fd)
        except OSError as exc:
            _close_and_remove(self._fd, self.path)
            raise _os_error(exc, "writing a received object") from exc
        os.close(self._fd)
        return Staged(self.path, self.size)

    def abandon(self) -> None:
        """Close and remove the file without making it durable (its object was refused before :meth:`sync`)."""
        _close_and_remove(self._fd, self.path)

    def sync_in_kernel(self, aio: KernelFsync) -> Callable[[], Staged]:
        """Start the ``fsync`` on the kernel's side (:mod:`.aio`) and return what finishes it, as :meth:`sync` does.

        The returned callable waits for the ``fsync``, closes the file and returns the :class:`Staged` file; on a
        failure it removes the file and raises :class:`StorageFullError` or :class:`ArchiveError`. It must be
        called once, by the thread that holds ``aio``, also when the object is refused meanwhile (then discard the
        file it returns): the context is reused only once its operations are collected.
        """
        try:
            token = aio.start(self._fd)
        except OSError:
            return self.sync  # not queued: the caller's thread does it when asked

        def finish() -> Staged:
            try:
                aio.wait(token)
            except OSError as exc:
                _close_and_remove(self._fd, self.path)
                raise _os_error(exc, "writing a received object") from exc
            os.close(self._fd)
            return Staged(self.path, self.size)

        return finish


def _link(source: Path, target: Path) -> None:
    """``os.link`` (never clobbers), making the target's folders first when they are missing (durably)."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        if not source.exists():
            raise
        ensure_dir(target.parent)
        os.link(source, target)


def _close_and_remove(fd: int, path: Path) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Archive:
    """Files of stored instances under ``data_dir/archive``.

    Parameters
    ----------
    data_dir : Path
        The node's data directory; the archive lives in its ``archive`` subfolder and paths handed to the
        catalog are relative to ``data_dir``.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "archive"
        #: Open staged files not yet written: ``(path, fd, time.monotonic() at creation)``.
        self._spares: deque[tuple[Path, int, float]] = deque()
        self._spares_lock = threading.Lock()
        #: Whether the staging file system takes ``O_DIRECT`` (``None``: not tried yet); see "Direct writes".
        self._direct: bool | None = None
        #: Page-aligned buffers for direct writes, one per store writing at a time, kept for the next.
        self._buffers: list[mmap.mmap] = []

    def create(self, *, fan_out: bool = True) -> None:
        """Create the archive root and its fan-out directories, each ``fsync``-ed into its parent (idempotent).

        About 0.2 s and 17 MB of directory blocks (4,352 directories) the first time; a later call only checks the
        last directory.

        Parameters
        ----------
        fan_out : bool
            ``False``: only the root and ``.staging``; a store then creates its file's directory when it is missing.
        """
        try:
            ensure_dir(self.root / STAGING)
            if not fan_out or (self.root / "ff" / "f").is_dir():
                return
            for a in range(256):
                top = self.root / f"{a:02x}"
                made = _mkdir(top)
                for b in range(16):
                    made = _mkdir(top / f"{b:x}") or made
                if made:
                    fsync_dir(top)
            fsync_dir(self.root)
        except OSError as exc:
            raise _os_error(exc, f"creating {self.root}") from exc

    def placement(self, sop_instance_uid: str) -> str:
        """A fresh relative path for a file of ``sop_instance_uid`` (``archive/ab/c/<hash>.<token>.dcm``).

        The UID only enters through its SHA-256, so no peer-sent character reaches the file system.
        """
        digest = hashlib.sha256(sop_instance_uid.encode("ascii", "replace")).hexdigest()
        return f"archive/{digest[:2]}/{digest[2]}/{digest}.{secrets.token_hex(4)}.dcm"

    def resolve(self, relative: str) -> Path:
        """Absolute path of a catalog-relative path, refusing anything outside the archive.

        Raises
        ------
        ArchiveError
            ``relative`` is absolute or escapes the archive root.
        """
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] != "archive":
            raise ArchiveError(f"{relative!r} is not a path inside the archive")
        return self.data_dir / rel

    def relative(self, path: Path) -> str:
        """Catalog-relative form (POSIX) of an absolute path inside the archive."""
        return Path(path).relative_to(self.data_dir).as_posix()

    def write(self, relative: str, data: bytes | Iterable[bytes], *, overwrite: bool = False,
              sha256: str | None = None) -> WriteResult:
        """Write ``data`` durably at ``relative``, hashing while writing.

        Parameters
        ----------
        relative : str
            Target, as returned by :meth:`placement`.
        data : bytes or iterable of bytes
            Content, written exactly as given.
        overwrite : bool
            Atomically replace an existing file (``os.replace``); by default an existing file is an error.
        sha256 : str, optional
            The SHA-256 the caller computed of ``data`` (``bytes``): reported instead of hashing it again.

        Returns
        -------
        WriteResult

        Raises
        ------
        StorageFullError
            No space (``ENOSPC``/``EDQUOT``); nothing is left behind.
        ArchiveError
            Any other I/O failure, or the target exists and ``overwrite`` is false.
        """
        target = self.resolve(relative)
        try:
            size, digest = _atomic_write(target, data, overwrite=overwrite, sha256=sha256)
        except OSError as exc:
            raise _os_error(exc, f"writing {relative}") from exc
        return WriteResult(target, relative, size, digest)

    def begin_stage(self, data: bytes) -> PendingStage:
        """Write ``data`` under a temporary name in ``archive/.staging`` without waiting for the disk.

        :meth:`PendingStage.sync` (on any thread) then makes it durable and returns the :class:`Staged` file that
        :meth:`place` names.
        Why two steps: the ``fsync`` is the longer wait (the file's size and blocks, the disk's cache flush; the
        bytes themselves go to the disk here, see "Direct writes"), and a thread that only
        has to call ``fsync`` needs the GIL once to start it, so it overlaps with the caller's parsing, where a
        thread that also opened and wrote the file needed the GIL after each of those calls and mostly did not
        overlap at all. The file is one :meth:`prepare_stage` created when one is ready.

        Raises
        ------
        StorageFullError
            No space (``ENOSPC``/``EDQUOT``); nothing is left behind.
        ArchiveError
            Any other I/O failure.
        """
        spare = self._take_spare()
        if spare is None:
            try:
                tmp, fd = self._new_stage()
            except OSError as exc:
                raise _os_error(exc, "writing a received object") from exc
        else:
            tmp, fd = spare
        try:
            view = memoryview(data)
            size = self._write_direct(fd, view) if self._direct is not False else 0
            view = view[size:]
            while view:
                n = os.write(fd, view)
                view = view[n:]
                size += n
        except OSError as exc:
            _close_and_remove(fd, tmp)
            raise _os_error(exc, "writing a received object") from exc
        except BaseException:
            _close_and_remove(fd, tmp)
            raise
        return PendingStage(tmp, fd, size)

    def _write_direct(self, fd: int, view: memoryview) -> int:
        """Write the whole aligned blocks at the start of ``view`` to the empty file ``fd`` with ``O_DIRECT``.

        Returns how many bytes were written (a multiple of :data:`_DIRECT_ALIGN`, 0 when the file system refuses
        ``O_DIRECT``); the caller writes the rest through the page cache. See "Direct writes" in the module notes.

        Raises
        ------
        OSError
            A write failed (``ENOSPC``...).
        """
        whole = len(view) - len(view) % _DIRECT_ALIGN
        direct = getattr(os, "O_DIRECT", 0)  # absent on some systems (macOS): page cache there
        if whole == 0 or not direct:
            return 0
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct)
        except OSError:  # EINVAL: this file system does not do direct I/O
            self._direct = False
            return 0
        buffer = self._take_buffer()
        done = 0
        try:
            while done < whole:
                n = min(_DIRECT_CHUNK, whole - done)
                buffer[:n] = view[done:done + n]
                try:
                    written = os.write(fd, memoryview(buffer)[:n])
                except OSError as exc:
                    if exc.errno != errno.EINVAL or done:
                        raise
                    self._direct = False  # took the flag but not the write (alignment): page cache from now on
                    return 0
                done += written
                if written != n:  # short: the rest goes through the page cache, at any offset
                    break
            self._direct = True
        finally:
            self._give_buffer(buffer)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        return done

    def _take_buffer(self) -> mmap.mmap:
        with self._spares_lock:
            if self._buffers:
                return self._buffers.pop()
        return mmap.mmap(-1, _DIRECT_CHUNK)  # anonymous: page-aligned

    def _give_buffer(self, buffer: mmap.mmap) -> None:
        with self._spares_lock:
            self._buffers.append(buffer)

    def _new_stage(self) -> tuple[Path, int]:
        tmp = self.root / STAGING / f"{TEMP_PREFIX}{secrets.token_hex(8)}.part"
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def _take_spare(self) -> tuple[Path, int] | None:
        """A spare staged file made by :meth:`prepare_stage` (``None``: none fresh enough)."""
        now = time.monotonic()
        while True:
            with self._spares_lock:
                if not self._spares:
                    return None
                path, fd, created = self._spares.popleft()
            if now - created < SPARE_MAX_AGE_S:
                return path, fd
            _close_and_remove(fd, path)

    def prepare_stage(self, keep: int = SPARE_STAGES) -> None:
        """Create an empty staged file for a later :meth:`begin_stage`, unless ``keep`` are waiting already.

        Meant for the time between stores (see "Staging" in the module notes); thread-safe. A failure (a full
        disk) is not reported here: :meth:`begin_stage` then creates its file itself and reports it to the store.
        """
        with self._spares_lock:
            if len(self._spares) >= keep:
                return
        try:
            path, fd = self._new_stage()
        except OSError:
            return
        with self._spares_lock:
            self._spares.append((path, fd, time.monotonic()))

    def close(self) -> None:
        """Remove the spare staged files (:meth:`prepare_stage`), free the direct writes' buffers; stays usable."""
        with self._spares_lock:
            buffers, self._buffers = self._buffers, []
        for buffer in buffers:
            buffer.close()
        while True:
            with self._spares_lock:
                if not self._spares:
                    return
                path, fd, _ = self._spares.popleft()
            _close_and_remove(fd, path)

    def place(self, staged: Staged, relative: str, sha256: str) -> WriteResult:
        """Give a staged file its final name, durably: link it at ``relative``, drop the staged name, ``fsync``.

        Parameters
        ----------
        staged : Staged
            What :meth:`PendingStage.sync` returned (its bytes are already ``fsync``-ed).
        relative : str
            Target, as returned by :meth:`placement`; an existing file there is an error, never replaced.
        sha256 : str
            The SHA-256 the caller computed of the staged bytes (reported, not recomputed).

        Returns
        -------
        WriteResult

        Raises
        ------
        StorageFullError, ArchiveError
            The staged file is left for the caller to :meth:`discard`.
        """
        target = self.resolve(relative)
        linked = False
        try:
            _link(staged.path, target)
            linked = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged.path)  # no fsync of .staging: a name that comes back after a crash is cleaned
            fsync_dir(target.parent)
        except OSError as exc:
            if linked:  # the final name is not durable, so no row may name it: take it back (no orphan)
                with contextlib.suppress(OSError):
                    os.unlink(target)
            raise _os_error(exc, f"writing {relative}") from exc
        return WriteResult(target, relative, staged.size, sha256)

    def begin_place(self, staged: Staged, relative: str, sha256: str, aio: KernelFsync) -> Callable[[], WriteResult]:
        """:meth:`place`, with the directory's ``fsync`` left running on the kernel's side (:mod:`.aio`).

        The link is made here; the returned callable waits for the ``fsync`` and returns the :class:`WriteResult`
        (what :meth:`place` returns), or takes the name back and raises as :meth:`place` does. Call it once, from
        the thread that holds ``aio``, before a row naming the file is committed.

        Raises
        ------
        StorageFullError, ArchiveError
            The link failed: nothing was named, the staged file is left for the caller to :meth:`discard`.
        """
        target = self.resolve(relative)
        try:
            _link(staged.path, target)
        except OSError as exc:
            raise _os_error(exc, f"writing {relative}") from exc
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged.path)  # no fsync of .staging: a name that comes back after a crash is cleaned
            fd = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise _os_error(exc, f"writing {relative}") from exc
        try:
            token = aio.start(fd)
        except OSError:
            token = None

        def finish() -> WriteResult:
            try:
                if token is None:
                    os.fsync(fd)
                else:
                    aio.wait(token)
            except OSError as exc:  # the final name is not durable, so no row may name it: take it back
                with contextlib.suppress(OSError):
                    os.unlink(target)
                raise _os_error(exc, f"writing {relative}") from exc
            finally:
                os.close(fd)
            return WriteResult(target, relative, staged.size, sha256)

        return finish

    def discard(self, staged: Staged) -> None:
        """Remove a staged file that will not be named (gone already is fine; a failure is left to the cleanup)."""
        with contextlib.suppress(OSError):
            os.unlink(staged.path)

    def remove(self, relative: str) -> bool:
        """Delete a file durably (unlink, then ``fsync`` its directory). Returns whether it existed."""
        target = self.resolve(relative)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _os_error(exc, f"removing {relative}") from exc
        try:
            fsync_dir(target.parent)
        except OSError as exc:
            raise _os_error(exc, f"removing {relative}") from exc
        return True

    def read(self, relative: str) -> bytes:
        """The bytes of an archived file.

        Raises
        ------
        ArchiveError
            Missing or unreadable.
        """
        try:
            return self.resolve(relative).read_bytes()
        except OSError as exc:
            raise _os_error(exc, f"reading {relative}") from exc

    def checksum(self, relative: str) -> tuple[int, str]:
        """Size and SHA-256 of an archived file (see :func:`sha256_file`).

        Raises
        ------
        ArchiveError
            Missing or unreadable.
        """
        try:
            return sha256_file(self.resolve(relative))
        except OSError as exc:
            raise _os_error(exc, f"reading {relative}") from exc

    def verify(self, relative: str, sha256: str) -> bool:
        """Whether the file at ``relative`` exists and hashes to ``sha256``."""
        try:
            return self.checksum(relative)[1] == sha256
        except ArchiveError:
            return False

    def iter_files(self) -> Iterator[str]:
        """Relative paths of every archived ``.dcm`` file (temporary files excluded), in sorted order."""
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".dcm") and not name.startswith(TEMP_PREFIX):
                    yield self.relative(Path(dirpath) / name)

    def temp_files(self) -> list[Path]:
        """Leftover temporary files (from an interrupted write) anywhere in the archive."""
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            found.extend(Path(dirpath) / n for n in filenames if n.startswith(TEMP_PREFIX))
        return sorted(found)

    def leftover_files(self) -> list[Path]:
        """:meth:`temp_files` that hold bytes or a name: all but the empty files of ``.staging``.

        An empty staged file is a spare of a running node (:meth:`prepare_stage`), or one a stopped node had not
        written to: either way nothing was stored in it. :meth:`clean_temp` removes old ones like any other.
        """
        found = []
        for path in self.temp_files():
            with contextlib.suppress(FileNotFoundError):
                if path.parent.name != STAGING or path.stat().st_size > 0:
                    found.append(path)
        return found

    def clean_temp(self, min_age_s: float = 300.0) -> list[Path]:
        """Remove temporary files older than ``min_age_s`` seconds; returns those removed.

        The age limit keeps a starting worker process from deleting the in-flight temporary file of a sibling
        worker sharing the same archive; a write takes well under that (the bytes are already in memory).
        """
        now = time.time()
        removed = []
        for path in self.temp_files():
            try:
                if now - path.stat().st_mtime >= min_age_s:
                    path.unlink()
                    fsync_dir(path.parent)
                    removed.append(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _os_error(exc, f"removing {path}") from exc
        return removed


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One refused object kept in the quarantine folder.

    Attributes
    ----------
    path : Path
        The ``.dcm`` file (bytes as received).
    reason : dict
        The ``.json`` sidecar: ``received_at``, ``sender_ae``, ``sender_address``, ``status``, ``error``,
        ``comment`` and, when known, ``sop_class_uid``, ``sop_instance_uid``, ``size``, ``sha256``.
    """

    path: Path
    reason: dict[str, Any]


class Quarantine:
    """Refused objects: ``DATA_DIR/quarantine/<UTC timestamp>-<random>.dcm`` plus a ``.json`` reason.

    Parameters
    ----------
    data_dir : Path
        The node's data directory.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "quarantine"

    def put(self, data: bytes, reason: dict[str, Any]) -> Path:
        """Keep ``data`` with its ``reason``; the JSON is written last, so its presence marks a complete entry.

        Raises
        ------
        StorageFullError, ArchiveError
            The quarantine could not be written (nothing partial is left).
        """
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        base = self.root / f"{stamp}-{secrets.token_hex(4)}"
        dcm, sidecar = base.with_suffix(".dcm"), base.with_suffix(".json")
        body = dict(reason)
        body.setdefault("received_at", datetime.now(UTC).isoformat())
        body["file"] = dcm.name
        try:
            _atomic_write(dcm, data, overwrite=False)
            try:
                _atomic_write(sidecar, json.dumps(body, indent=2, default=str).encode(), overwrite=False)
            except BaseException:
                dcm.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise _os_error(exc, f"quarantining into {self.root}") from exc
        return dcm

    def entries(self) -> list[QuarantineEntry]:
        """Every complete entry, oldest first (an unreadable sidecar is reported in its ``reason``)."""
        if not self.root.is_dir():
            return []
        out = []
        for sidecar in sorted(self.root.glob("*.json")):
            try:
                reason = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                reason = {"error": "unreadable reason file", "comment": str(exc)}
            out.append(QuarantineEntry(sidecar.with_suffix(".dcm"), reason))
        return out


__all__ = [
    "STAGING",
    "TEMP_PREFIX",
    "Archive",
    "PendingStage",
    "Quarantine",
    "QuarantineEntry",
    "Staged",
    "WriteResult",
    "ensure_dir",
    "fsync_dir",
    "sha256_file",
]
