"""Security fixtures: a node that refuses unknown AEs, SCU helpers, a throwaway PKI (openssl CLI), catalog URLs."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pgserver import catalog_url, pg_server
from securitysupport import Pki

__all__ = ["catalog_url", "pg_server"]


@pytest.fixture
def secure_node(node_factory: Callable[..., Any]) -> Callable[..., Any]:
    """Start a node with the default policy (unknown AEs refused); keyword arguments override settings."""

    def start(**overrides: Any) -> Any:
        overrides.setdefault("accept_unknown", False)
        return node_factory(**overrides)

    return start


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command-line tool is needed to create throwaway certificates")
    root = tmp_path_factory.mktemp("pki")
    (root / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca in ("ca", "otherca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=Test {ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=root)
    for name, ca in (("node", "ca"), ("cart", "ca"), ("cart2", "ca"), ("rogue", "otherca")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=root)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt", cwd=root)
    yield Pki(root)
