"""The admin's own SCU: C-ECHO and C-STORE of files to any DICOM node (``ecg-node echo`` / ``ecg-node send``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_ecg_node.errors import EcgNodeError
from dicom_ecg_node.net.handlers import requestor_handlers

#: PS3.8 9.3.2.2: at most 128 presentation contexts in one A-ASSOCIATE-RQ.
MAX_CONTEXTS = 128


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one file sent with C-STORE.

    Attributes
    ----------
    path : Path
    status : int or None
        DIMSE status, ``None`` when the file was not sent (unreadable, no context accepted, connection lost).
    comment : str
        Error Comment from the peer or the local reason.
    """

    path: Path
    status: int | None
    comment: str = ""

    @property
    def ok(self) -> bool:
        """Success (0x0000) or a warning (0x0001, 0xBxxx): the peer took the object."""
        return self.status is not None and (self.status == 0 or self.status == 1 or self.status >> 12 == 0xB)


def _ae(calling_aet: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


def echo(host: str, port: int, *, called_aet: str = "ECGNODE", calling_aet: str = "ECGNODE-SCU",
         timeout: float = 30.0) -> int:
    """Send one C-ECHO and return its status.

    Raises
    ------
    EcgNodeError
        The association was rejected, aborted or could not be opened.
    """
    ae = _ae(calling_aet, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=requestor_handlers())
    if not assoc.is_established:
        raise EcgNodeError(f"association with {called_aet}@{host}:{port} failed (rejected, aborted or unreachable)")
    try:
        status = assoc.send_c_echo()
        if "Status" not in status:
            raise EcgNodeError("no C-ECHO response (timeout or abort)")
        return int(status.Status)
    finally:
        assoc.release()


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files named, and files under folders named, recursively, in a stable order."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file())
        else:
            yield p


def send(host: str, port: int, files: Iterable[Path], *, called_aet: str = "ECGNODE",
         calling_aet: str = "ECGNODE-SCU", timeout: float = 60.0,
         progress: Callable[[SendResult], None] | None = None) -> list[SendResult]:
    """C-STORE ``files`` on associations of at most 128 presentation contexts, as stored on disk (not re-encoded).

    Parameters
    ----------
    host, port : str, int
        The peer.
    files : iterable of Path
        DICOM Part 10 files.
    called_aet, calling_aet : str
        AE titles.
    timeout : float
        ACSE, DIMSE and network timeout in seconds.
    progress : callable, optional
        Called with each file's :class:`SendResult`.

    Returns
    -------
    list of SendResult
        In the order of ``files``.
    """
    results: dict[Path, SendResult] = {}
    order: list[Path] = []
    # (SOP class, transfer syntax) of each readable file; unreadable files are reported, not sent.
    pending: list[tuple[Path, str, str]] = []
    for path in files:
        order.append(path)
        try:
            meta = read_file_meta_info(path)
            pending.append((path, str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
        except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
            results[path] = SendResult(path, None, f"not a DICOM Part 10 file: {exc}")
            if progress:
                progress(results[path])

    while pending:
        batch: list[tuple[Path, str, str]] = []
        contexts: set[tuple[str, str]] = set()
        rest: list[tuple[Path, str, str]] = []
        for item in pending:
            key = (item[1], item[2])
            if key in contexts or len(contexts) < MAX_CONTEXTS:
                contexts.add(key)
                batch.append(item)
            else:
                rest.append(item)
        pending = rest
        ae = _ae(calling_aet, timeout)
        for sop_class, syntax in sorted(contexts):
            ae.add_requested_context(sop_class, syntax)
        assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=requestor_handlers())
        if not assoc.is_established:
            for path, *_ in batch:
                results[path] = SendResult(path, None, f"association with {called_aet}@{host}:{port} failed")
                if progress:
                    progress(results[path])
            continue
        try:
            for path, _sop_class, _syntax in batch:
                if not assoc.is_established:
                    results[path] = SendResult(path, None, "association lost")
                else:
                    try:
                        status = assoc.send_c_store(path)
                    except ValueError as exc:  # no accepted context for this SOP class / transfer syntax
                        status = Dataset()
                        reason = f"not sent: {exc}"
                    else:
                        reason = "no response (timeout or abort)"
                    if "Status" in status:
                        results[path] = SendResult(path, int(status.Status), str(status.get("ErrorComment", "")))
                    else:
                        results[path] = SendResult(path, None, reason)
                if progress:
                    progress(results[path])
        finally:
            if assoc.is_established:
                assoc.release()
    return [results[p] for p in order]
