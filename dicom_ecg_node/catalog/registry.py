"""The AE registry: DICOM peers known to the node, stored in the catalog (table ``remote_ae``, schema version 2).

C-MOVE names its destination only by AE title (PS3.4 C.4.2.1.1, Move Destination); the node must already know the
host and port behind that title. The registry is the one place where they live, edited with ``ecg-node ae ...``.

From schema version 4 it also says who may connect and what they may do (enforced by
:mod:`dicom_ecg_node.services.security`): the operations an AE may request (:data:`OPERATIONS`), the networks it
may connect from (CIDR; none: any address), the User Identity it must present (PS3.7 D.3.3.7), the SHA-256
fingerprint of its TLS client certificate, and the C-MOVE destinations it may use (none: any registered one).
The users of User Identity Negotiation live next to it (:class:`UserRegistry`, table ``node_user``): a salt and
a password hash, never the password.

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

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import peewee as pw

from dicom_ecg_node.catalog.catalog import Catalog
from dicom_ecg_node.errors import CatalogError, ConfigError, DuplicateAEError, NotFoundError, UnknownAEError

#: PS3.5 6.2 AE: 1-16 characters of the default repertoire, no backslash nor control characters.
_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9._:\-\[\]%]{1,255}$")
_USERNAME_RE = re.compile(r"^[^\s,]{1,128}$")

#: What a registered AE may be allowed to request: C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, Storage Commitment.
OPERATIONS = ("echo", "store", "find", "move", "get", "commit")
#: Permissions of ``ae add`` without ``--allow`` and of rows migrated from before version 4: least privilege.
DEFAULT_PERMISSIONS = frozenset({"echo"})


def parse_operations(value: str | Iterable[str]) -> frozenset[str]:
    """Validate permissions given as ``"echo,store"`` or an iterable; ``"all"`` means every operation.

    Raises
    ------
    ConfigError
        An unknown operation.
    """
    items = value.split(",") if isinstance(value, str) else [x for v in value for x in str(v).split(",")]
    names = {x.strip().lower() for x in items if x.strip()}
    if "all" in names:
        return frozenset(OPERATIONS)
    unknown = sorted(names - set(OPERATIONS))
    if unknown:
        raise ConfigError(f"permissions: unknown operation(s) {', '.join(unknown)} (use {','.join(OPERATIONS)})")
    return frozenset(names)


def parse_networks(values: Iterable[str]) -> tuple[str, ...]:
    """Validate CIDR networks (``10.0.0.0/8``, ``192.168.1.7``, ``fd00::/8``); returns their canonical forms.

    Host bits are allowed (``10.1.2.3/8`` means ``10.0.0.0/8``), as admins write them.

    Raises
    ------
    ConfigError
        Not an IPv4/IPv6 address or network.
    """
    out = []
    for value in values:
        for item in str(value).split(","):
            if not item.strip():
                continue
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError as exc:
                raise ConfigError(f"network {item.strip()!r}: not a CIDR network or IP address") from exc
    return tuple(dict.fromkeys(out))


def normalize_fingerprint(value: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lowercase hex digits (colons, spaces and ``sha256:`` removed).

    Raises
    ------
    ConfigError
        Not 32 bytes of hex.
    """
    text = value.strip().lower().removeprefix("sha256:").removeprefix("sha256=").replace(":", "").replace(" ", "")
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ConfigError(f"certificate fingerprint {value!r}: 64 hex digits of SHA-256 expected")
    return text


def check_username(value: str) -> str:
    """A username: 1-128 characters without whitespace or comma.

    Raises
    ------
    ConfigError
    """
    if not _USERNAME_RE.match(value):
        raise ConfigError(f"username {value!r}: 1-128 characters without whitespace or comma")
    return value


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(x for x in (text or "").split(",") if x)


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
    permissions : frozenset of str
        Operations of :data:`OPERATIONS` it may request.
    networks : tuple of str
        CIDR networks it may connect from; empty: any address.
    username : str or None
        The User Identity (PS3.7 D.3.3.7) it must present, if any.
    cert_fingerprint : str or None
        SHA-256 (hex) of the TLS client certificate it must present, if any (then it must connect over TLS).
    move_destinations : tuple of str
        AE titles its C-MOVEs may target; empty: any registered AE.
    """

    ae_title: str
    host: str
    port: int
    description: str = ""
    created_at: datetime | None = None
    permissions: frozenset[str] = field(default=DEFAULT_PERMISSIONS)
    networks: tuple[str, ...] = ()
    username: str | None = None
    cert_fingerprint: str | None = None
    move_destinations: tuple[str, ...] = ()

    def allows(self, operation: str) -> bool:
        """Whether ``operation`` (one of :data:`OPERATIONS`) is permitted."""
        return operation in self.permissions


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
        # get() runs for every association: its SELECT is compiled once (with the database's placeholder) and run
        # on the cursor, ~15 us instead of ~190 us through a peewee query and model instance.
        model = self._model
        self._get_sql, _ = model.select().where(model.ae_title == "").sql()
        self._get_names = [f.name for f in model._meta.sorted_fields]

    @staticmethod
    def _entry(row: Any) -> RegisteredAE:
        created = row.created_at
        if isinstance(created, str):  # SQLite may hand back the stored text
            created = datetime.fromisoformat(created)
        return RegisteredAE(row.ae_title, row.host, int(row.port), row.description or "",
                            created.replace(tzinfo=UTC) if created is not None else None,
                            frozenset(_split(row.permissions)), _split(row.networks), row.username or None,
                            row.cert_fingerprint or None, _split(row.move_destinations))

    @staticmethod
    def _access_values(permissions: str | Iterable[str] | None, networks: Iterable[str] | None,
                       username: str | None, cert_fingerprint: str | None,
                       move_destinations: Iterable[str] | None) -> dict[str, Any]:
        """Validated column values of the access-control settings given (``None``: not given)."""
        values: dict[str, Any] = {}
        if permissions is not None:
            values["permissions"] = ",".join(sorted(parse_operations(permissions)))
        if networks is not None:
            values["networks"] = ",".join(parse_networks(networks))
        if username is not None:  # "" clears it
            values["username"] = check_username(username) if username else None
        if cert_fingerprint is not None:  # "" clears it
            values["cert_fingerprint"] = normalize_fingerprint(cert_fingerprint) if cert_fingerprint else None
        if move_destinations is not None:
            values["move_destinations"] = ",".join(dict.fromkeys(
                normalize_ae_title(t) for v in move_destinations for t in str(v).split(",") if t.strip()))
        return values

    def add(self, ae_title: str, host: str, port: int, description: str = "", *,
            permissions: str | Iterable[str] | None = None, networks: Iterable[str] | None = None,
            username: str | None = None, cert_fingerprint: str | None = None,
            move_destinations: Iterable[str] | None = None) -> RegisteredAE:
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
        permissions : str or iterable of str, optional
            Operations it may request (``"echo,store"``, ``"all"``); :data:`DEFAULT_PERMISSIONS` when omitted.
        networks : iterable of str, optional
            CIDR networks it may connect from (default: any address).
        username : str, optional
            User Identity it must present.
        cert_fingerprint : str, optional
            SHA-256 fingerprint of the TLS client certificate it must present.
        move_destinations : iterable of str, optional
            AE titles its C-MOVEs may target (default: any registered AE).

        Returns
        -------
        RegisteredAE

        Raises
        ------
        ConfigError
            Invalid title, host, port, operation, network, username or fingerprint.
        DuplicateAEError
            The title is already registered (use :meth:`update` to change it).
        """
        title = normalize_ae_title(ae_title)
        values = {"permissions": ",".join(sorted(DEFAULT_PERMISSIONS)), "networks": "", "username": None,
                  "cert_fingerprint": None, "move_destinations": ""}
        values.update(self._access_values(permissions, networks, username, cert_fingerprint, move_destinations))
        created = datetime.now(UTC).replace(microsecond=0)
        host, port = _check_host(host), _check_port(port)
        model = self._model
        try:
            with self.catalog._write():
                model.insert(ae_title=title, host=host, port=port, description=description.strip(),
                             created_at=created.replace(tzinfo=None), **values).execute()
            self.catalog.registry_cache.clear()
        except CatalogError as exc:
            if isinstance(exc.__cause__, pw.IntegrityError):  # the unique index on ae_title
                raise DuplicateAEError(f"AE title {title!r} is already registered") from exc.__cause__
            raise
        return self.get(title)

    def update(self, ae_title: str, *, host: str | None = None, port: int | None = None,
               description: str | None = None, permissions: str | Iterable[str] | None = None,
               networks: Iterable[str] | None = None, username: str | None = None,
               cert_fingerprint: str | None = None, move_destinations: Iterable[str] | None = None) -> RegisteredAE:
        """Change some settings of a registered peer; ``None`` leaves a setting as it is.

        ``networks=[]`` / ``move_destinations=[]`` reset to "any", ``username=""`` / ``cert_fingerprint=""``
        remove the requirement.

        Returns
        -------
        RegisteredAE
            The entry after the change.

        Raises
        ------
        ConfigError
            An invalid value.
        UnknownAEError
            Not registered.
        """
        title = ae_title.strip(" ")
        values = self._access_values(permissions, networks, username, cert_fingerprint, move_destinations)
        if host is not None:
            values["host"] = _check_host(host)
        if port is not None:
            values["port"] = _check_port(port)
        if description is not None:
            values["description"] = description.strip()
        model = self._model
        if values:
            with self.catalog._write():
                changed = model.update(**values).where(model.ae_title == title).execute()
            self.catalog.registry_cache.clear()
            if not changed:
                raise UnknownAEError(f"AE title {title!r} is not registered")
        return self.get(title)

    def get(self, ae_title: str) -> RegisteredAE:
        """The registered peer ``ae_title`` (one indexed lookup).

        Raises
        ------
        UnknownAEError
            Not registered (an invalid title is also simply unknown).
        """
        title = ae_title.strip(" ")
        cache = self.catalog.registry_cache  # catalog/lookupcache.py: hits only, one second at most
        entry = cache.get(title)
        if entry is not None:
            return entry  # type: ignore[no-any-return]
        generation = cache.generation
        with self.catalog._connection():
            values = self.catalog.db.execute_sql(self._get_sql, (title,)).fetchone()
        if values is None:
            raise UnknownAEError(f"AE title {title!r} is not registered (ecg-node ae add)")
        entry = self._entry(SimpleNamespace(**dict(zip(self._get_names, values, strict=True))))
        cache.put(title, entry, generation)
        return entry

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
        self.catalog.registry_cache.clear()
        if not deleted:
            raise UnknownAEError(f"AE title {title!r} is not registered")


@dataclass(frozen=True, slots=True)
class UserRow:
    """One user of User Identity Negotiation as stored: the salt and scrypt hash, never the password.

    Attributes
    ----------
    username : str
    salt, password_hash : str
        Hex strings (see :func:`dicom_ecg_node.services.security.hash_password`).
    roles : tuple of str
        Free labels (``admin``, ``viewer``...), listed by ``ecg-node user list``; DICOM permissions are the AE's.
    created_at : datetime or None
        Aware UTC.
    """

    username: str
    salt: str
    password_hash: str
    roles: tuple[str, ...] = ()
    created_at: datetime | None = None


class UserRegistry:
    """Rows of the ``node_user`` table (schema version 4); hashing is the security service's job.

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 4 or later.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._model = catalog.models.NodeUser

    @staticmethod
    def _row(row: pw.Model) -> UserRow:
        created = row.created_at
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        return UserRow(row.username, row.salt, row.password_hash, _split(row.roles),
                       created.replace(tzinfo=UTC) if created is not None else None)

    def add(self, username: str, salt: str, password_hash: str, roles: Iterable[str] = ()) -> UserRow:
        """Insert a user.

        Raises
        ------
        ConfigError
            Invalid username.
        CatalogError
            The username exists (message says so) or the database failed.
        """
        name = check_username(username)
        model = self._model
        try:
            with self.catalog._write():
                model.insert(username=name, salt=salt, password_hash=password_hash,
                             roles=",".join(r.strip() for r in roles if r.strip()),
                             created_at=datetime.now(UTC).replace(microsecond=0, tzinfo=None)).execute()
        except CatalogError as exc:
            if isinstance(exc.__cause__, pw.IntegrityError):
                raise CatalogError(f"user {name!r} already exists (remove it first)") from exc.__cause__
            raise
        row = self.get(name)
        if row is None:  # pragma: no cover - the insert just committed
            raise CatalogError(f"user {name!r} vanished after its insert")
        return row

    def get(self, username: str) -> UserRow | None:
        """The user ``username``, or ``None`` (one indexed lookup)."""
        model = self._model
        with self.catalog._connection():
            row = model.select().where(model.username == username).first()
        return None if row is None else self._row(row)

    def list(self) -> list[UserRow]:
        """Every user, by name."""
        model = self._model
        with self.catalog._connection():
            return [self._row(r) for r in model.select().order_by(model.username)]

    def remove(self, username: str) -> None:
        """Delete ``username``.

        Raises
        ------
        NotFoundError
            No such user.
        """
        model = self._model
        with self.catalog._write():
            deleted = model.delete().where(model.username == username).execute()
        if not deleted:
            raise NotFoundError(f"user {username!r} does not exist")
