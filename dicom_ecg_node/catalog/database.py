"""Opening a catalog database from its URL: ``sqlite:///PATH`` or ``postgresql://user:pw@host:port/db``.

SQLite
    WAL journal with ``synchronous=NORMAL``, which syncs only at checkpoints: on its own a power loss could lose
    transactions the node already answered *Success* for. The catalog syncs the WAL itself after every durable
    commit, outside its writer lock (catalog/catalog.py, "Durability"): the durability the C-STORE contract
    needs (a success status means the row is on disk), without holding the next writer up while the disk
    flushes. ``busy_timeout`` lets writers in other worker processes wait instead of failing; ``foreign_keys``
    enables the cascades.
PostgreSQL
    psycopg2; ``?host=/path/to/socket/dir`` selects a Unix socket directory (as libpq does), other query
    parameters (``sslmode``, ``connect_timeout``...) are passed to the driver.

Both use peewee's connection pools: each thread checks a connection out for one unit of work and returns it, so
threads started per association do not each leave an open connection behind.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee as pw
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from dicom_ecg_node.errors import CatalogError

#: Seconds a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Pool size; above the node's default of 32 simultaneous associations.
POOL_SIZE = 64
#: Seconds a thread waits for a free pooled connection.
POOL_WAIT_S = 60


def open_database(url: str) -> pw.Database:
    """A (not yet connected) peewee database for ``url``.

    Parameters
    ----------
    url : str
        ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``postgresql://...``
        (``postgres://`` accepted).

    Returns
    -------
    peewee.Database

    Raises
    ------
    CatalogError
        Unsupported scheme or malformed URL.
    """
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path == ":memory:":
            raise CatalogError(f"catalog URL {url!r}: a file path is required (an in-memory catalog is not shared "
                               "between connections)")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return PooledSqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": int(SQLITE_BUSY_TIMEOUT_S * 1000),
            },
            timeout=POOL_WAIT_S,  # the pool's wait for a free connection; busy_timeout above is SQLite's
            check_same_thread=False,  # pooled connections move between threads (one user at a time)
            max_connections=POOL_SIZE,
            stale_timeout=3600,
        )
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        params: dict[str, object] = dict(parse_qsl(parts.query))
        if parts.username:
            params["user"] = unquote(parts.username)
        if parts.password:
            params["password"] = unquote(parts.password)
        if parts.hostname and "host" not in params:
            params["host"] = parts.hostname
        if parts.port:
            params["port"] = parts.port
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise CatalogError(f"catalog URL {url!r}: no database name")
        return PooledPostgresqlDatabase(dbname, max_connections=POOL_SIZE, stale_timeout=3600,
                                        timeout=POOL_WAIT_S, **params)
    raise CatalogError(f"catalog URL {url!r}: use sqlite:///PATH or postgresql://...")


def is_sqlite(db: pw.Database) -> bool:
    """Whether ``db`` is a SQLite database."""
    return isinstance(db, pw.SqliteDatabase)
