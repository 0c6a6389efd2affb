"""The audit trail: an append-only log of security-relevant events, in the spirit of PS3.15 A.5 / IHE ATNA.

Where
    ``DATA_DIR/audit/audit-YYYY-MM-DD.jsonl``, one file per UTC day, one JSON object per line, created with mode
    0600 (the trail names patients, that is its purpose; the ordinary node log never does). Optionally each event
    is also sent as an RFC 5424 syslog message (facility 10 security/authorization, MSGID = event name, the JSON
    as MSG) over UDP, or TCP with octet-counting framing (RFC 6587 3.4.1), to a configured collector.
Durability (fsync policy)
    Every event is one ``write()`` on a file opened ``O_APPEND``: it survives a crash of the process at once, and
    lines from several worker processes never interleave. The file is ``fsync``-ed at most once per
    ``fsync_interval`` seconds (1 s by default; 0: after every event) and on close, so a power loss loses at most
    about one second of events while a busy store path is not slowed by a second ``fsync`` per object.
    A syslog failure is logged and never blocks or fails the operation: the file is the record.
Events (``event`` field) and their fields
    ``association`` (``outcome`` accepted / refused, ``reason``), ``tls`` (handshake refused), ``store``,
    ``query`` (``keys``, ``answers``), ``retrieve`` (``operation`` move / get, ``destination``, ``completed``,
    ``failed``), ``commitment`` (for Storage Commitment: call :meth:`AuditLog.record` with
    ``event="commitment"``, ``outcome`` committed / failed, ``sop_instance_uids``, ``detail={"transaction_uid":
    ...}``), and ``admin`` (``action`` in ``detail``: ae-add, ae-update, ae-remove, user-add, user-remove, ...).
    Common fields: ``time`` (UTC ISO 8601, ``Z``), ``node`` (our AE title), ``ae``, ``address``, ``user``,
    ``patient_ids``, ``patient_names``, ``study_uids``, ``sop_instance_uids``, ``detail``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicom_ecg_node.config import parse_syslog_target
from dicom_ecg_node.errors import ArchiveError, ConfigError

if TYPE_CHECKING:
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.config import NodeConfig

log = logging.getLogger("dicom_ecg_node.audit")

AUDIT_DIR = "audit"
#: RFC 5424 6.2.1: facility 10 "security/authorization messages"; severities 6 informational, 4 warning.
SYSLOG_FACILITY = 10
_SEVERITY = {"success": 6, "accepted": 6, "committed": 6}
#: Lists in one event are capped so that one huge retrieve cannot write a megabyte line.
MAX_LIST = 1000


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SyslogSender:
    """RFC 5424 messages to one collector over UDP (one datagram each) or TCP (octet counting, RFC 6587).

    Parameters
    ----------
    target : str
        ``udp://host:port``, ``tcp://host:port`` or ``host:port`` (UDP).
    app_name : str
        APP-NAME field.
    timeout : float
        Seconds for a TCP connect or send.
    """

    def __init__(self, target: str, app_name: str = "ecg-node", timeout: float = 2.0) -> None:
        self.protocol, self.host, self.port = parse_syslog_target(target)
        self.app_name = app_name
        self.timeout = timeout
        self.hostname = socket.gethostname() or "-"
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def format(self, ts: datetime, severity: int, msgid: str, msg: str) -> bytes:
        """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG``."""
        pri = SYSLOG_FACILITY * 8 + severity
        header = f"<{pri}>1 {_iso(ts)} {self.hostname[:255]} {self.app_name[:48]} {os.getpid()} {msgid[:32]} -"
        return header.encode("ascii", "replace") + b" \xef\xbb\xbf" + msg.encode("utf-8")

    def send(self, payload: bytes) -> None:
        """Send one formatted message (raises ``OSError`` on failure)."""
        with self._lock:
            if self.protocol == "udp":
                with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                   socket.SOCK_DGRAM) as sock:
                    sock.sendto(payload, (self.host, self.port))
                return
            frame = str(len(payload)).encode("ascii") + b" " + payload
            for attempt in (1, 2):  # one reconnect: the collector may have closed an idle connection
                try:
                    if self._sock is None:
                        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                    self._sock.sendall(frame)
                    return
                except OSError:
                    self.close()
                    if attempt == 2:
                        raise

    def close(self) -> None:
        """Close the TCP connection, if any."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class AuditLog:
    """Append audit events to ``DIRECTORY/audit-YYYY-MM-DD.jsonl`` (and to syslog when configured).

    Thread-safe; several processes may append to the same directory (``O_APPEND``, one write per line).

    Parameters
    ----------
    directory : path
        The audit directory (created if needed).
    node : str
        The node's AE title, written in every event.
    syslog : str, optional
        Syslog collector (see :class:`SyslogSender`).
    fsync_interval : float
        Seconds between two ``fsync`` of the file (0: every event).
    """

    def __init__(self, directory: str | os.PathLike[str], *, node: str = "ECGNODE", syslog: str | None = None,
                 fsync_interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self.node = node
        self.fsync_interval = fsync_interval
        self.syslog = SyslogSender(syslog) if syslog else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._day: date | None = None
        self._last_sync = 0.0
        self._dirty = False

    @classmethod
    def for_config(cls, config: NodeConfig) -> AuditLog:
        """The audit log of a node: ``DATA_DIR/audit``, its AE title, its syslog setting."""
        return cls(Path(config.data_dir) / AUDIT_DIR, node=config.aet, syslog=config.syslog)

    def path_for(self, day: date) -> Path:
        """The file of UTC day ``day``."""
        return self.directory / f"audit-{day.isoformat()}.jsonl"

    def record(self, event: str, *, outcome: str = "success", ae: str | None = None, address: str | None = None,
               user: str | None = None, reason: str | None = None,
               patient_ids: Iterable[str] = (), patient_names: Iterable[str] = (),
               study_uids: Iterable[str] = (), sop_instance_uids: Iterable[str] = (),
               detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Append one event; returns it as written.

        Parameters
        ----------
        event : str
            ``association``, ``tls``, ``store``, ``query``, ``retrieve``, ``commitment``, ``admin``...
        outcome : str
            ``success``, ``failure``, ``accepted``, ``refused``, ``committed``...
        ae, address, user : str, optional
            Who: calling AE title, ``ip:port`` (or ``local`` for the CLI), verified user.
        reason : str, optional
            Why it was refused or failed.
        patient_ids, patient_names, study_uids, sop_instance_uids : iterable of str
            Whose data (each list de-duplicated, capped at :data:`MAX_LIST`).
        detail : mapping, optional
            Anything else (JSON-serialisable; other values are written with ``str``).

        Raises
        ------
        ArchiveError
            The audit file cannot be written (an operation that must be audited should then fail).
        """
        ts = _utc_now()
        entry: dict[str, Any] = {"time": _iso(ts), "event": event, "outcome": outcome, "node": self.node}
        for key, value in (("ae", ae), ("address", address), ("user", user), ("reason", reason)):
            if value:
                entry[key] = value
        for key, values in (("patient_ids", patient_ids), ("patient_names", patient_names),
                            ("study_uids", study_uids), ("sop_instance_uids", sop_instance_uids)):
            items = list(dict.fromkeys(str(v) for v in values if v))
            if items:
                entry[key] = items[:MAX_LIST]
                if len(items) > MAX_LIST:
                    entry[f"{key}_total"] = len(items)
        if detail:
            entry["detail"] = dict(detail)
        line = json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"
        self._append(ts, line.encode("utf-8"))
        if self.syslog is not None:
            try:
                self.syslog.send(self.syslog.format(ts, _SEVERITY.get(outcome, 4), event, line.rstrip("\n")))
            except OSError as exc:
                log.warning("audit event not sent to syslog %s:%d: %s", self.syslog.host, self.syslog.port, exc)
        return entry

    def _append(self, ts: datetime, data: bytes) -> None:
        with self._lock:
            try:
                day = ts.date()
                if self._fd is None or day != self._day:
                    self._close_fd()
                    self.directory.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path_for(day), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                       0o600)
                    self._day = day
                os.write(self._fd, data)
                self._dirty = True
                now = time.monotonic()
                if now - self._last_sync >= self.fsync_interval:
                    os.fsync(self._fd)
                    self._last_sync, self._dirty = now, False
            except OSError as exc:
                raise ArchiveError(f"audit log {self.directory}: {exc.strerror or exc}") from exc

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if self._dirty:
                    os.fsync(self._fd)
                os.close(self._fd)
            self._fd, self._dirty = None, False

    def flush(self) -> None:
        """``fsync`` what was written."""
        with self._lock:
            if self._fd is not None and self._dirty:
                os.fsync(self._fd)
                self._dirty = False

    def close(self) -> None:
        """``fsync`` and close the file and the syslog connection."""
        with self._lock:
            self._close_fd()
        if self.syslog is not None:
            self.syslog.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading --------------------------------------------------------------------------------------------------


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO date or date-time (UTC when no offset), or a duration back from now (``2h``, ``7d``).

    Raises
    ------
    ConfigError
        Neither form.
    """
    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[:-1].isdigit() and text[-1:] in units:
        return (now or _utc_now()) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--since {value!r}: an ISO date/date-time or a duration such as 2h, 7d") from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _matches(entry: Mapping[str, Any], since: datetime | None, patient: str | None, ae: str | None,
             event: str | None) -> bool:
    if event is not None and entry.get("event") != event:
        return False
    if ae is not None and entry.get("ae") != ae and (entry.get("detail") or {}).get("destination") != ae:
        return False
    if patient is not None:
        keys = (entry.get("detail") or {}).get("keys") or {}
        if patient not in entry.get("patient_ids", ()) and keys.get("PatientID") != patient:
            return False
    if since is not None:
        try:
            ts = datetime.fromisoformat(str(entry.get("time", "")).replace("Z", "+00:00"))
        except ValueError:
            return False
        if ts < since:
            return False
    return True


def read_events(directory: str | os.PathLike[str], *, since: datetime | None = None, patient: str | None = None,
                ae: str | None = None, event: str | None = None) -> Iterator[dict[str, Any]]:
    """Audit events in time order, filtered.

    Parameters
    ----------
    directory : path
        The audit directory.
    since : datetime, optional
        Only events at or after this instant (files of earlier days are not read).
    patient : str, optional
        Only events naming this Patient ID (stored, answered by a query, retrieved, or a query key).
    ae : str, optional
        Only events of this calling AE title (or, for retrieves, sent to it).
    event : str, optional
        Only this kind of event.

    Yields
    ------
    dict
        One event; a line that is not JSON (a torn last line after a crash) is skipped with a warning.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("audit-*.jsonl")):
        day = path.stem.removeprefix("audit-")
        if since is not None and day < since.date().isoformat():
            continue
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("audit file %s line %d is not JSON; skipped", path, n)
                    continue
                if _matches(entry, since, patient, ae, event):
                    yield entry


# -- whose data: the subjects of stored and retrieved instances -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subject:
    """Patient and study of one instance, for the audit trail."""

    patient_id: str
    patient_name: str | None
    study_instance_uid: str
    sop_instance_uid: str


def subjects_of(catalog: Catalog, sop_instance_uids: Sequence[str], batch: int = 500) -> list[Subject]:
    """Patient and study of each stored instance among ``sop_instance_uids`` (batched ``IN`` queries)."""
    m = catalog.models
    P, S, Se, I = m.Patient, m.Study, m.Series, m.Instance  # noqa: N806, E741
    out: list[Subject] = []
    uids = list(dict.fromkeys(sop_instance_uids))
    with catalog._connection():
        for start in range(0, len(uids), batch):
            rows = (I.select(P.patient_id, P.patient_name, S.study_instance_uid, I.sop_instance_uid)
                    .join(Se, on=(I.series == Se.id)).join(S, on=(Se.study == S.id))
                    .join(P, on=(S.patient == P.id))
                    .where(I.sop_instance_uid.in_(uids[start:start + batch])).tuples())
            out.extend(Subject(*row) for row in rows)
    return out


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
_SUBJECT_TAGS = {0x00100020: 0, 0x00100010: 1, 0x0020000D: 2}
#: Specific Character Sets the quick scan decodes itself (PS3.3 C.12.1.1.2); others go to pydicom.
_CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


class _NeedPydicom(Exception):
    """The quick scan met something it does not handle; pydicom reads the header instead."""


def _scan_subject(data: bytes) -> tuple[str | None, str | None, str | None]:
    """Top-level elements up to (0020,000D) of a Little Endian Part 10 stream, by hand (PS3.5 7.1, PS3.10 7.1)."""
    if len(data) < 144 or data[128:132] != b"DICM":
        raise _NeedPydicom
    pos, meta_end, ts = 132, None, None
    while pos + 8 <= len(data):  # file meta: Explicit VR Little Endian, group 0002
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            length, head = struct.unpack_from("<I", data, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", data, pos + 6)[0], 8
        if elem == 0x0010:
            ts = data[pos + head:pos + head + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos += head + length
        meta_end = pos
    if meta_end is None or ts not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
        raise _NeedPydicom  # deflated or big endian: rare, pydicom handles them
    implicit = ts == "1.2.840.10008.1.2"
    found: list[bytes | None] = [None, None, None]
    charset = ""
    while pos + 8 <= len(data):
        tag = (struct.unpack_from("<H", data, pos)[0] << 16) | struct.unpack_from("<H", data, pos + 2)[0]
        if tag > 0x0020000D:
            break
        if implicit:
            length, head = struct.unpack_from("<I", data, pos + 4)[0], 8
        elif data[pos + 4:pos + 6] in _LONG_VRS:
            length, head = struct.unpack_from("<I", data, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", data, pos + 6)[0], 8
        if length == 0xFFFFFFFF:
            raise _NeedPydicom  # an undefined-length sequence before the study UID
        value = data[pos + head:pos + head + length]
        if tag == 0x00080005:
            charset = value.decode("ascii", "replace").strip(" \0").split("\\")[0]
        elif tag in _SUBJECT_TAGS:
            found[_SUBJECT_TAGS[tag]] = value
        pos += head + length
    encoding = _CHARSETS.get(charset)
    if encoding is None:
        raise _NeedPydicom
    return tuple(  # type: ignore[return-value]
        (v.decode(encoding, "replace").strip(" \0") or None) if v is not None else None for v in found)


def store_subject(data: bytes) -> tuple[str | None, str | None, str | None]:
    """(Patient ID, Patient's Name, Study Instance UID) of a Part 10 byte stream, reading only its start.

    A hand scan of the top-level elements up to (0020,000D) (tens of microseconds: this runs for every C-STORE);
    pydicom's reader, stopped at the same place, for whatever the scan does not handle.
    """
    try:
        return _scan_subject(data)
    except (_NeedPydicom, IndexError, ValueError, struct.error):
        pass
    import pydicom
    from pydicom.errors import InvalidDicomError

    def stop(tag: Any, vr: Any, length: Any) -> bool:
        return int(tag) > 0x0020000D

    try:
        ds = pydicom.filereader.read_partial(io.BytesIO(data), stop_when=stop)
        return (str(ds.get("PatientID", "") or "") or None, str(ds.get("PatientName", "") or "") or None,
                str(ds.get("StudyInstanceUID", "") or "") or None)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError, OSError):
        return None, None, None

