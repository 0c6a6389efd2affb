"""Peewee queries compiled to SQL once, run many times with new values.

Peewee generates a statement's SQL text on every execution; for the small statements of the per-ECG work (the
device clock observation, the reconciliation look-ups) that generation was about 40 % of their CPU time, measured
here. A :class:`Prepared` statement is written with peewee as usual, except that each value that changes from one
execution to the next is a named slot (``p("name")``); it is compiled once, in the database's dialect, and each
execution only binds the values to the slots. Results are converted as peewee converts them (``python_value`` of
each selected field), so callers see the same Python values.

A slot is always a bound parameter, so a shape that must say ``IS NULL`` (peewee writes ``== None`` that way) is a
statement of its own. Everything else is fixed at compile time: an insert fills the columns it does not name with
their defaults then, so a prepared insert names every column whose default is computed (a time, a random value).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import peewee as pw

from dicom_ecg_node.errors import CatalogError

#: A statement builder: given ``p(name, field=None)``, which returns the slot node for ``name``, a peewee query.
Builder = Callable[[Callable[..., pw.Node]], pw.Query]


@dataclass(frozen=True, slots=True)
class Slot:
    """A named value of a prepared statement, as it travels through peewee's SQL generation.

    ``pw.Value(Slot(name), converter=False)`` in a query is bound, unconverted, to the value named ``name``.
    """

    name: str


def _identity(value: Any) -> Any:
    return value


def _column_converter(node: Any) -> Callable[[Any], Any]:
    """How peewee converts a selected column: the field's ``python_value``, else the value as the driver gave it."""
    while isinstance(node, pw.Alias):
        node = node.node
    if isinstance(node, pw.Field):
        return node.python_value
    return _identity


def _column_name(node: Any) -> str:
    if isinstance(node, pw.Alias):
        return str(node._alias)
    return str(getattr(node, "name", node))


class Prepared:
    """One statement, compiled for ``db`` from a peewee query with named slots.

    Parameters
    ----------
    db : peewee.Database
        The database the statement runs on (its dialect writes the SQL).
    build : callable
        ``build(p)`` returns the peewee query; ``p(name)`` stands for a value bound at each execution, and
        ``p(name, field)`` converts that value with ``field.db_value`` first (as peewee would for that column).

    Examples
    --------
    >>> select = Prepared(db, lambda p: I.select(I.id).where(I.sop_instance_uid == p("uid")))  # doctest: +SKIP
    >>> select.one(uid="1.2.3")  # doctest: +SKIP
    """

    def __init__(self, db: pw.Database, build: Builder) -> None:
        converters: dict[str, Callable[[Any], Any]] = {}

        def slot(name: str, field: pw.Field | None = None) -> pw.Node:
            if field is not None:
                converters[name] = field.db_value
            return pw.Value(Slot(name), converter=False)

        query = build(slot)
        sql, params = query.sql()  # in the dialect of the database the query's models are bound to
        self.db = db
        self.sql: str = sql
        # Each parameter in order: a slot's name and converter, or a constant peewee put in the query itself.
        self._params: tuple[tuple[str | None, Any], ...] = tuple(
            (p.name, converters.get(p.name, _identity)) if isinstance(p, Slot) else (None, p) for p in params)
        returning = getattr(query, "_returning", None) if isinstance(query, pw.SelectQuery) else None
        self._columns: tuple[Callable[[Any], Any], ...] = tuple(
            _column_converter(node) for node in (returning or ()))
        #: Names of a select's columns: the alias, else the field's name (as peewee's ``.dicts()`` names them).
        self.names: tuple[str, ...] = tuple(_column_name(node) for node in (returning or ()))

    def _bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        try:
            return tuple(convert(values[name]) if name is not None else convert
                         for name, convert in self._params)
        except KeyError as exc:
            raise CatalogError(f"prepared statement: no value for slot {exc.args[0]!r}") from exc

    def execute(self, **values: Any) -> Any:
        """Run the statement; returns the driver's cursor (``rowcount``, ``lastrowid``)."""
        return self.db.execute_sql(self.sql, self._bind(values))

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """Every row of a select, each value converted as peewee converts it."""
        cursor = self.execute(**values)
        return [self._convert(row) for row in cursor.fetchall()]

    def one(self, **values: Any) -> tuple[Any, ...] | None:
        """The first row of a select (converted), or ``None``."""
        row = self.execute(**values).fetchone()
        return None if row is None else self._convert(row)

    def one_dict(self, **values: Any) -> dict[str, Any] | None:
        """The first row of a select as ``{column name: value}`` (see :attr:`names`), or ``None``."""
        row = self.one(**values)
        return None if row is None else dict(zip(self.names, row, strict=True))

    def _convert(self, row: Iterable[Any]) -> tuple[Any, ...]:
        if not self._columns:
            return tuple(row)
        return tuple(convert(value) if value is not None else None
                     for convert, value in zip(self._columns, row, strict=False))


class PreparedCache:
    """The prepared statements of one database (a catalog's), compiled on first use (thread-safe).

    Parameters
    ----------
    db : peewee.Database
    """

    def __init__(self, db: pw.Database, max_statements: int = 1024) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._statements: dict[str, Prepared] = {}
        self.max_statements = max_statements

    def get(self, key: str, build: Builder) -> Prepared:
        """The statement named ``key``, compiled from ``build`` the first time it is asked for.

        Once :attr:`max_statements` are kept, a new one is compiled for each use and not kept (the keys of
        C-FIND shapes come from the peers' identifiers: memory stays bounded whatever they send).
        """
        statement = self._statements.get(key)
        if statement is None:
            compiled = Prepared(self._db, build)
            with self._lock:
                if len(self._statements) >= self.max_statements:
                    return compiled
                statement = self._statements.setdefault(key, compiled)
        return statement


__all__ = ["Builder", "Prepared", "PreparedCache", "Slot"]
