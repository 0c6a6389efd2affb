"""Schema version 4 (AE permissions, users) on SQLite and PostgreSQL, including the upgrade of an older registry."""

from __future__ import annotations

import pytest

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.catalog.registry import AERegistry
from dicom_ecg_node.errors import AccessDeniedError, CatalogError, ConfigError, NotFoundError
from dicom_ecg_node.services.security import (
    AccessPolicy,
    Peer,
    UserIdentity,
    UserService,
    hash_password,
    verify_password,
)


@pytest.fixture
def catalog(catalog_url):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


def test_registry_permissions_round_trip(catalog):
    reg = AERegistry(catalog)
    entry = reg.add("CART1", "10.0.0.5", 104, permissions="store,commit", networks=["10.0.0.0/8"],
                    username="alice", cert_fingerprint="sha256:" + "0F" * 32, move_destinations=["PACS"])
    assert entry.permissions == frozenset({"store", "commit"}) and entry.networks == ("10.0.0.0/8",)
    assert entry.cert_fingerprint == "0f" * 32 and entry.move_destinations == ("PACS",)
    changed = reg.update("CART1", permissions="all", networks=[], username="")
    assert changed.permissions == frozenset({"echo", "store", "find", "move", "get", "commit"})
    assert changed.networks == () and changed.username is None and changed.move_destinations == ("PACS",)
    with pytest.raises(ConfigError):
        reg.update("CART1", networks=["300.1.1.1/8"])


def test_users_store_only_salted_hashes(catalog):
    users = UserService(catalog)
    users.add("alice", "pw1", roles=["admin"])
    users.add("bob", "pw1")
    rows = {u.username: u for u in users.list()}
    assert rows["alice"].salt != rows["bob"].salt  # per-user salt
    assert rows["alice"].password_hash != rows["bob"].password_hash
    assert rows["alice"].roles == ("admin",)
    assert users.verify("alice", "pw1") and not users.verify("alice", "pw2") and not users.verify("carol", "pw1")
    with pytest.raises(CatalogError):
        users.add("alice", "again")
    users.remove("bob")
    with pytest.raises(NotFoundError):
        users.remove("bob")


def test_password_hash_is_deterministic_per_salt():
    salt, digest = hash_password("pw", bytes(16))
    assert salt == "00" * 16 and verify_password("pw", salt, digest) and not verify_password("pw ", salt, digest)
    assert not verify_password("pw", "not hex", digest)


def test_policy_decisions(catalog):
    reg = AERegistry(catalog)
    reg.add("CART1", "h", 1, permissions="store", networks=["10.0.0.0/8"])
    UserService(catalog).add("alice", "pw")
    reg.add("ALICE", "h", 1, permissions="find", username="alice")
    policy = AccessPolicy(catalog)
    grant = policy.admit(Peer("CART1", "10.2.3.4"))
    assert grant.allows("store") and not grant.allows("find")
    assert policy.admit(Peer("CART1", "::ffff:10.2.3.4")).registered  # IPv4-mapped on a dual-stack socket
    with pytest.raises(AccessDeniedError) as exc:
        policy.admit(Peer("CART1", "127.0.0.1"))
    assert exc.value.reason == "address"
    with pytest.raises(AccessDeniedError) as exc:
        policy.admit(Peer("NOBODY", "10.2.3.4"))
    assert exc.value.reason == "unknown-ae"
    assert AccessPolicy(catalog, accept_unknown=True).admit(Peer("NOBODY", "1.2.3.4")).allows("move")
    assert policy.admit(Peer("ALICE", "1.2.3.4", identity=UserIdentity(2, "alice", "pw"))).username == "alice"
    for identity in (None, UserIdentity(1, "alice"), UserIdentity(2, "alice", "nope")):
        with pytest.raises(AccessDeniedError) as exc:
            policy.admit(Peer("ALICE", "1.2.3.4", identity=identity))
        assert exc.value.reason == "user-identity"
    assert "nope" not in repr(UserIdentity(2, "alice", "nope"))
    with pytest.raises(AccessDeniedError):
        policy.check(grant, "find")


def test_version_4_upgrades_a_registry_created_before_it(catalog):
    """A remote_ae table from schema version 2 (without the access columns) gains them with least privilege."""
    db, table = catalog.db, catalog.models.RemoteAE._meta.table_name
    with catalog._connection():
        for column in ("permissions", "networks", "username", "cert_fingerprint", "move_destinations"):
            db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        db.execute_sql(f"INSERT INTO \"{table}\" (ae_title, host, port, description, created_at) "
                       f"VALUES ('OLDPACS', 'pacs', 104, '', '2024-01-01 00:00:00')")
        db.execute_sql(f"DROP TABLE \"{catalog.models.NodeUser._meta.table_name}\"")
        db.execute_sql("DELETE FROM schema_version WHERE version >= 4")
    catalog.close()
    upgraded = Catalog.open(catalog.url)
    try:
        old = AERegistry(upgraded).get("OLDPACS")
        assert old.permissions == frozenset({"echo"}) and old.networks == () and old.username is None
        UserService(upgraded).add("alice", "pw")
        assert upgraded.schema_version() >= 4
    finally:
        upgraded.close()
