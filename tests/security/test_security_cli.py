"""``ecg-node user add/list/remove``, ``ecg-node ae add/update`` with access settings, and their audit entries."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.cli import main
from dicom_ecg_node.services.audit import read_events
from dicom_ecg_node.services.security import UserService


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def test_user_add_list_remove(tmp_path):
    d = ["--data-dir", str(tmp_path)]
    result = run("user", "add", "alice", "--password-stdin", "--role", "cardiology", *d, input="s3cret pass\n")
    assert result.exit_code == 0, result.output
    again = run("user", "add", "alice", "--password-stdin", *d, input="x\n")
    assert again.exit_code == 2 and "already exists" in again.output
    empty = run("user", "add", "bob", "--password-stdin", *d, input="\n")
    assert empty.exit_code == 2 and "password" in empty.output
    listed = run("user", "list", "--json", *d)
    rows = json.loads(listed.output)
    assert [r["username"] for r in rows] == ["alice"] and rows[0]["roles"] == "cardiology"
    assert "salt" not in listed.output and "hash" not in listed.output
    with Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        stored = catalog.models.NodeUser.get()
        assert "s3cret" not in stored.password_hash and len(stored.salt) == 32
        assert UserService(catalog).verify("alice", "s3cret pass")
        assert not UserService(catalog).verify("alice", "s3cret")
    assert run("user", "remove", "alice", *d).exit_code == 0
    assert run("user", "remove", "alice", *d).exit_code == 2
    actions = [e["detail"]["action"] for e in read_events(tmp_path / "audit", event="admin")]
    assert actions == ["user-add", "user-remove"]
    assert all("s3cret" not in line for f in (tmp_path / "audit").iterdir() for line in f.read_text().splitlines())


def test_ae_add_update_list(tmp_path):
    d = ["--data-dir", str(tmp_path)]
    fp = "AB:" * 31 + "AB"
    result = run("ae", "add", "CART1", "--host", "10.1.2.3", "--port", "104", "--allow", "store,commit",
                 "--network", "10.0.0.0/8", "--network", "192.168.1.7", "--username", "alice",
                 "--cert-fingerprint", fp, *d)
    assert result.exit_code == 0, result.output
    row = json.loads(run("ae", "list", "--json", *d).output)[0]
    assert row["permissions"] == "commit,store" and row["networks"] == "10.0.0.0/8,192.168.1.7/32"
    assert row["username"] == "alice" and row["cert_fingerprint"] == "ab" * 32
    result = run("ae", "update", "CART1", "--allow", "echo,find", "--any-network", "--username", "",
                 "--move-destination", "PACS", *d)
    assert result.exit_code == 0, result.output
    row = json.loads(run("ae", "list", "--json", *d).output)[0]
    assert row["permissions"] == "echo,find" and row["networks"] == "" and row["username"] is None
    assert row["move_destinations"] == "PACS" and row["host"] == "10.1.2.3"
    bad = run("ae", "update", "CART1", "--allow", "delete", *d)
    assert bad.exit_code == 2 and "unknown operation" in bad.output
    assert run("ae", "update", "NOBODY", "--allow", "echo", *d).exit_code == 2
    assert run("ae", "add", "CART2", "--host", "h", "--port", "1", "--network", "not-a-net", *d).exit_code == 2
    assert run("ae", "add", "CART3", "--host", "h", "--port", "1", *d).exit_code == 0
    cart3 = next(r for r in json.loads(run("ae", "list", "--json", *d).output) if r["ae_title"] == "CART3")
    assert cart3["permissions"] == "echo"  # least privilege by default
    actions = [e["detail"]["action"] for e in read_events(tmp_path / "audit", event="admin")]
    assert actions == ["ae-add", "ae-update", "ae-add"]


def test_serve_flags_reach_the_configuration(tmp_path):
    from dicom_ecg_node.config import load_config

    config = load_config(environ={"ECG_NODE_ACCEPT_UNKNOWN": "true", "ECG_NODE_SYSLOG": "h:514"},
                         max_object_size="1000")
    assert config.accept_unknown and config.syslog == "h:514" and config.max_object_size == 1000
    result = run("serve", "--data-dir", str(tmp_path), "--no-plaintext", "--port", "0")
    assert result.exit_code != 0 and "plaintext" in result.output
