"""The AE registry: DICOM peers known to the node, stored in the catalog (table ``remote_ae``, schema version 2).

C-MOVE names its destination only by AE title (PS3.4 C.4.2.1.1, Move Destination); the node must already know the
host and port behind that title. The registry is the one place where they live, edited with ``ecg-node ae ...``.

AE titles are stored without their padding spaces (leading and trailing spaces are not significant, PS3.5 6.2 AE)
and compared case-sensitively, as the standard defines them.

Errors (both below the project's tree in :mod:`dicom_ecg_node.errors`)::

    ConfigError      invalid title, host or port
    CatalogError
    └── DuplicateAEError   the title is already registered
    NotFoundError
    └── UnknownAEError     the title is not registered (C-MOVE: 0xA801 Move destination unknown)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import peewee as pw

from dicom_ecg_node.catalog.catalog import Catalog
from dicom_ecg_node.errors import CatalogError, ConfigError, DuplicateAEError, UnknownAEError

#: PS3.5 6.2 AE: 1-16 characters of the default repertoire, no backslash nor control characters.
_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9._:\-\[\]%]{1,255}$")


@dataclass(frozen=True, slots=True)
class RegisteredAE:
    """One registered peer.

    Attributes
    ----------
    ae_title : str
        AE title without padding.
    host : str
        Host name or IP address the node connects to.
    port : int
        TCP port.
    description : str
        Free text for admins.
    created_at : datetime or None
        When it was registered (aware UTC).
    """

    ae_title: str
    host: str
    port: int
    description: str = ""
    created_at: datetime | None = None


def normalize_ae_title(title: str) -> str:
    """Validate an AE title and return it without padding spaces.

    Raises
    ------
    ConfigError
        Empty, longer than 16 characters, or with a backslash or control character (PS3.5 6.2 AE).
    """
    stripped = title.strip(" ")
    if not stripped or not _AET_RE.match(stripped):
        raise ConfigError(f"AE title {title!r}: 1-16 printable characters without backslash (PS3.5 6.2 AE)")
    return stripped


def _check_host(host: str) -> str:
    host = host.strip()
    if not _HOST_RE.match(host):
        raise ConfigError(f"host {host!r}: a host name or an IP address is required")
    return host


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port {port!r}: must be an integer in 1-65535")
    return port


class AERegistry:
    """Add, list, look up and remove registered AEs in one catalog.

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 2 or later.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._model = catalog.models.RemoteAE

    @staticmethod
    def _entry(row: pw.Model) -> RegisteredAE:
        created = row.created_at
        if isinstance(created, str):  # SQLite may hand back the stored text
            created = datetime.fromisoformat(created)
        return RegisteredAE(row.ae_title, row.host, int(row.port), row.description or "",
                            created.replace(tzinfo=UTC) if created is not None else None)

    def add(self, ae_title: str, host: str, port: int, description: str = "") -> RegisteredAE:
        """Register a peer.

        Parameters
        ----------
        ae_title : str
            Its AE title (padding spaces removed).
        host : str
            Host name or IP address.
        port : int
            TCP port, 1-65535.
        description : str, optional
            Free text.

        Returns
        -------
        RegisteredAE

        Raises
        ------
        ConfigError
            Invalid title, host or port.
        DuplicateAEError
            The title is already registered (remove it first to change it).
        """
        title = normalize_ae_title(ae_title)
        entry = RegisteredAE(title, _check_host(host), _check_port(port), description.strip(),
                             datetime.now(UTC).replace(microsecond=0))
        model = self._model
        try:
            with self.catalog._write():
                model.insert(ae_title=entry.ae_title, host=entry.host, port=entry.port,
                             description=entry.description,
                             created_at=entry.created_at.replace(tzinfo=None)).execute()  # type: ignore[union-attr]
        except CatalogError as exc:
            if isinstance(exc.__cause__, pw.IntegrityError):  # the unique index on ae_title
                raise DuplicateAEError(f"AE title {title!r} is already registered") from exc.__cause__
            raise
        return entry

    def get(self, ae_title: str) -> RegisteredAE:
        """The registered peer ``ae_title`` (one indexed lookup).

        Raises
        ------
        UnknownAEError
            Not registered (an invalid title is also simply unknown).
        """
        title = ae_title.strip(" ")
        model = self._model
        with self.catalog._connection():
            row = model.select().where(model.ae_title == title).first()
        if row is None:
            raise UnknownAEError(f"AE title {title!r} is not registered (ecg-node ae add)")
        return self._entry(row)

    def list(self) -> list[RegisteredAE]:
        """Every registered peer, by AE title."""
        model = self._model
        with self.catalog._connection():
            return [self._entry(r) for r in model.select().order_by(model.ae_title)]

    def remove(self, ae_title: str) -> None:
        """Unregister ``ae_title``.

        Raises
        ------
        UnknownAEError
            Not registered.
        """
        title = ae_title.strip(" ")
        model = self._model
        with self.catalog._write():
            deleted = model.delete().where(model.ae_title == title).execute()
        if not deleted:
            raise UnknownAEError(f"AE title {title!r} is not registered")
