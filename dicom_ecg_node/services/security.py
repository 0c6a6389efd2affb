"""Who may connect and what they may do: the access policy, permission checks, and user passwords.

Policy (decided once per association, in :meth:`AccessPolicy.admit`, and kept for its lifetime)
    1. The calling AE title must be registered (``ecg-node ae add``); an unknown one is refused, unless
       ``accept_unknown`` is on (first-time set-up, demos), in which case it gets every permission and a warning
       is logged for each such association.
    2. A registered AE with networks may connect only from an address inside one of them.
    3. A registered AE with a certificate fingerprint must connect over TLS with exactly that client certificate.
    4. A registered AE with a username must present User Identity Negotiation (PS3.7 D.3.3.7) type 2, username
       and passcode, for that user, and the passcode must match its stored hash. Any identity a peer presents
       of type 2 is verified even when not required (a wrong password is never ignored); other types (1: username
       only, 3-5: Kerberos, SAML, JWT) are not verified, so they satisfy no requirement.
    5. Each request is checked against the AE's permissions (:data:`OPERATIONS`).
    6. A C-MOVE may target a destination only if the caller may ``move``, the destination is registered, and, when
       the caller has a list of move destinations, it is on that list.

    The called AE title is checked by pynetdicom (``require_called_aet``, PS3.8 9.3.4 reason 7). Association-level
    refusals raise :class:`~dicom_ecg_node.errors.AccessDeniedError` whose ``reason`` the network edge maps to an
    A-ASSOCIATE-RJ (:mod:`dicom_ecg_node.net.security`).
Passwords
    ``hashlib.scrypt`` (n=2**14, r=8, p=1, 32-byte key) with 16 random bytes of salt per user; compared with
    ``hmac.compare_digest`` (constant time). Only salt and hash are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dicom_ecg_node.catalog.registry import (
    OPERATIONS,
    AERegistry,
    RegisteredAE,
    UserRegistry,
    UserRow,
    check_username,
    normalize_fingerprint,
    parse_networks,
    parse_operations,
)
from dicom_ecg_node.errors import AccessDeniedError, ConfigError, UnknownAEError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dicom_ecg_node.catalog import Catalog

__all__ = [
    "OPERATIONS",
    "AccessPolicy",
    "Grant",
    "Peer",
    "UserIdentity",
    "UserService",
    "hash_password",
    "normalize_fingerprint",
    "parse_networks",
    "parse_operations",
    "verify_password",
]

#: scrypt cost: 16 MiB of memory and ~50 ms per hash, well within the association set-up budget.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
SALT_BYTES = 16
#: PS3.7 D.3.3.7.1 User-Identity-Type 2: username and passcode.
USER_IDENTITY_USERNAME_PASSCODE = 2


def hash_password(password: str, salt: bytes | None = None) -> tuple[str, str]:
    """Hash ``password`` with scrypt and a per-user random salt.

    Parameters
    ----------
    password : str
        The password (UTF-8 encoded before hashing, as PS3.7 D.3.3.7 sends it).
    salt : bytes, optional
        Fixed salt for tests; 16 random bytes (``secrets``) by default.

    Returns
    -------
    (salt_hex, hash_hex) : tuple of str
    """
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=SCRYPT_DKLEN)
    return salt.hex(), digest.hex()


def verify_password(password: str, salt_hex: str, hash_hex: str) -> bool:
    """Whether ``password`` matches the stored salt and hash (constant-time comparison)."""
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    _, candidate = hash_password(password, salt)
    return hmac.compare_digest(candidate, hash_hex)


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """A User Identity Negotiation request (PS3.7 D.3.3.7.1) as plain values.

    Attributes
    ----------
    kind : int
        User-Identity-Type: 1 username, 2 username + passcode, 3 Kerberos, 4 SAML, 5 JWT.
    primary : str
        Username (types 1 and 2), UTF-8 decoded.
    secondary : str
        Passcode (type 2), UTF-8 decoded; empty otherwise.
    """

    kind: int
    primary: str
    secondary: str = ""

    def __repr__(self) -> str:  # never show the passcode in a log or traceback
        return f"UserIdentity(kind={self.kind}, primary={self.primary!r}, secondary=***)"


@dataclass(frozen=True, slots=True)
class Peer:
    """Who asks for an association, as the network edge saw it (no pynetdicom types).

    Attributes
    ----------
    ae_title : str
        Calling AE title without padding.
    address : str
        IP address of the peer.
    tls : bool
        Whether the connection is TLS.
    cert_fingerprint : str or None
        SHA-256 (hex) of the verified client certificate (TLS only).
    cert_subject : str or None
        Its subject, for the audit trail.
    identity : UserIdentity or None
        The User Identity Negotiation request, if any.
    """

    ae_title: str
    address: str
    tls: bool = False
    cert_fingerprint: str | None = None
    cert_subject: str | None = None
    identity: UserIdentity | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """What an admitted association may do, decided once at association time.

    Attributes
    ----------
    ae_title : str
        The calling AE title.
    registered : bool
        ``False`` for an unknown AE admitted by ``accept_unknown``.
    permissions : frozenset of str
        Permitted operations.
    move_destinations : tuple of str
        Allowed C-MOVE destinations; empty: any registered AE.
    username : str or None
        The verified user, if one was presented.
    """

    ae_title: str
    registered: bool
    permissions: frozenset[str]
    move_destinations: tuple[str, ...] = ()
    username: str | None = None

    def allows(self, operation: str) -> bool:
        """Whether ``operation`` is permitted."""
        return operation in self.permissions


class UserService:
    """Add, remove, list and verify users of User Identity Negotiation.

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 4 or later.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.users = UserRegistry(catalog)

    def add(self, username: str, password: str, roles: Iterable[str] = ()) -> UserRow:
        """Create a user with a salted scrypt hash of ``password``.

        Raises
        ------
        ConfigError
            Invalid username or an empty password.
        CatalogError
            The user exists, or the database failed.
        """
        check_username(username)
        if not password:
            raise ConfigError("password: must not be empty")
        salt, digest = hash_password(password)
        return self.users.add(username, salt, digest, roles)

    def remove(self, username: str) -> None:
        """Delete a user (:class:`~dicom_ecg_node.errors.NotFoundError` when absent)."""
        self.users.remove(username)

    def list(self) -> list[UserRow]:
        """Every user (salt and hash included: callers show only names, roles and dates)."""
        return self.users.list()

    def verify(self, username: str, password: str) -> bool:
        """Whether ``username`` exists and ``password`` is its password.

        An unknown user still costs one scrypt, so the answer time does not tell which names exist.
        """
        row = self.users.get(username)
        if row is None:
            verify_password(password, "00" * SALT_BYTES, "00" * SCRYPT_DKLEN)
            return False
        return verify_password(password, row.salt, row.password_hash)


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:  # ::ffff:10.1.2.3 on dual-stack
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


class AccessPolicy:
    """The node's access policy over the AE registry and the users (see the module notes).

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 4 or later.
    accept_unknown : bool
        Admit calling AE titles that are not registered, with every permission.
    """

    def __init__(self, catalog: Catalog, *, accept_unknown: bool = False) -> None:
        self.registry = AERegistry(catalog)
        self.users = UserService(catalog)
        self.accept_unknown = accept_unknown

    def admit(self, peer: Peer) -> Grant:
        """Decide whether ``peer`` may associate, and with which permissions.

        Returns
        -------
        Grant

        Raises
        ------
        AccessDeniedError
            With ``reason`` ``"unknown-ae"``, ``"address"``, ``"certificate"`` or ``"user-identity"``.
        CatalogError
            The catalog failed (the network edge refuses the association then, too).
        """
        verified_user = self._verify_identity(peer)
        try:
            entry = self.registry.get(peer.ae_title)
        except UnknownAEError:
            if not self.accept_unknown:
                raise AccessDeniedError(f"calling AE title {peer.ae_title!r} is not registered",
                                        reason="unknown-ae") from None
            return Grant(peer.ae_title, False, frozenset(OPERATIONS), (), verified_user)
        self._check_entry(entry, peer, verified_user)
        return Grant(entry.ae_title, True, entry.permissions, entry.move_destinations, verified_user)

    def _verify_identity(self, peer: Peer) -> str | None:
        """The verified username of a type-2 identity; a wrong one refuses the association."""
        ident = peer.identity
        if ident is None or ident.kind != USER_IDENTITY_USERNAME_PASSCODE:
            return None
        if not self.users.verify(ident.primary, ident.secondary):
            raise AccessDeniedError(f"user identity of {peer.ae_title!r} failed verification",
                                    reason="user-identity")
        return ident.primary

    @staticmethod
    def _check_entry(entry: RegisteredAE, peer: Peer, verified_user: str | None) -> None:
        if entry.networks and not _in_networks(peer.address, entry.networks):
            raise AccessDeniedError(f"AE {entry.ae_title!r} may not connect from {peer.address}",
                                    reason="address")
        if entry.cert_fingerprint is not None and (
                not peer.tls or peer.cert_fingerprint is None
                or not hmac.compare_digest(peer.cert_fingerprint, entry.cert_fingerprint)):
            raise AccessDeniedError(f"AE {entry.ae_title!r} must present its registered TLS client certificate",
                                    reason="certificate")
        if entry.username is not None and verified_user != entry.username:
            raise AccessDeniedError(f"AE {entry.ae_title!r} must present the user identity of "
                                    f"{entry.username!r} (PS3.7 D.3.3.7)", reason="user-identity")

    @staticmethod
    def check(grant: Grant, operation: str) -> None:
        """Raise unless ``grant`` permits ``operation``.

        Raises
        ------
        AccessDeniedError
            ``reason="permission"``.
        """
        if not grant.allows(operation):
            raise AccessDeniedError(f"{grant.ae_title!r} may not {operation}", reason="permission")

    def move_destination(self, grant: Grant, title: str) -> RegisteredAE:
        """The registered destination ``title`` if ``grant`` may send C-MOVE results there.

        Raises
        ------
        AccessDeniedError
            No ``move`` permission, or a destination outside the caller's list (``reason="destination"``).
        UnknownAEError
            The destination is not registered.
        """
        self.check(grant, "move")
        title = title.strip(" ")
        if grant.move_destinations and title not in grant.move_destinations:
            raise AccessDeniedError(f"{grant.ae_title!r} may not move to {title!r}", reason="destination")
        return self.registry.get(title)
