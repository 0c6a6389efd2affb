"""A throwaway PostgreSQL server for the test session, plus the parametrised ``catalog_url`` fixture.

Conftests import the fixtures (``from pgserver import catalog_url, pg_server``). The server is started once per
session, whichever conftest asks first (it is kept in ``config.stash``), and stopped when the session ends.

Running as root
    ``initdb`` refuses to run as root. When the tests run as root, the server's directory is created with
    ``tempfile.mkdtemp`` under ``/tmp`` (not under pytest's ``tmp_path``, whose parents are ``0700`` root-only),
    ``chown``\\ ed to the ``postgres`` user, and ``initdb``/``pg_ctl`` run through ``runuser -u postgres --``
    (or ``su`` where runuser is absent). The client (root) reaches the Unix socket regardless of the directory's
    mode. As an ordinary user, the tools run directly.
Isolation
    The server listens on a Unix socket in its own directory only (``listen_addresses=''``), with ``fsync=off``
    (a test server need not survive power loss). Each test gets a fresh database, dropped afterwards.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_KEY = pytest.StashKey["PgServer | str"]()


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PgServer:
    """A running throwaway server."""

    root: Path
    pg_ctl: str
    wrap: Callable[[list[str]], list[str]]
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}"

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(dbname="postgres", user="postgres", host=str(self.socket_dir))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self) -> str:
        name = f"ecg_test_{os.getpid()}_{next(self.counter)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(self.wrap([self.pg_ctl, "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"]),
                       capture_output=True, check=False, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def _start() -> PgServer | str:
    """Start a server, or return the reason why none can run here."""
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        return "PostgreSQL's initdb/pg_ctl are not installed"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed"
    root = Path(tempfile.mkdtemp(prefix="ecgpg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            return "running as root and there is no 'postgres' user to run initdb as"
        os.chown(root, user.pw_uid, user.pw_gid)
        runuser = shutil.which("runuser")
        prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "-s", "/bin/sh", "postgres", "-c"]
        if not runuser:  # su takes one shell command line
            def wrap(args: list[str]) -> list[str]:
                return [*prefix, " ".join(f"'{a}'" for a in args)]
        else:
            def wrap(args: list[str]) -> list[str]:
                return [*prefix, *args]
    else:
        def wrap(args: list[str]) -> list[str]:
            return args
    data = root / "data"
    steps = [
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
        [pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
         "-o", f"-k {root} -c listen_addresses='' -c fsync=off -c max_connections=200", "start"],
    ]
    for step in steps:
        proc = subprocess.run(wrap(step), capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"{step[0]} failed ({proc.returncode}): {proc.stderr}\n{log}")
    return PgServer(root, pg_ctl, wrap)


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> PgServer:
    """The session's PostgreSQL server (started on first use); skips, saying why, where none can run."""
    stash = request.config.stash
    if _KEY not in stash:
        started = _start()
        stash[_KEY] = started
        if isinstance(started, PgServer):
            request.config.add_cleanup(started.stop)
    server = stash[_KEY]
    if isinstance(server, str):
        pytest.skip(server)
    return server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty catalog URL: SQLite in ``tmp_path``, then a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)
