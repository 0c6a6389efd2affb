"""Options and helpers shared by every ``ecg-node`` command."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from dicom_ecg_node.config import NodeConfig, load_config
from dicom_ecg_node.errors import EcgNodeError

F = TypeVar("F", bound=Callable[..., Any])


def node_options(func: F) -> F:
    """Add ``--data-dir``, ``--db-url`` and ``--config`` to a command.

    The command receives a validated ``config: NodeConfig`` argument in their place
    (file < ``ECG_NODE_*`` environment < flags).
    """

    @click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                  help="Data directory (archive, catalog, quarantine). Env ECG_NODE_DATA_DIR; default ./var.")
    @click.option("--db-url", default=None,
                  help="Catalog URL, sqlite:///PATH or postgresql://... Default: SQLite in the data directory.")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
                  help="TOML configuration file (its settings are overridden by ECG_NODE_* and flags).")
    @functools.wraps(func)
    def wrapper(*args: Any, data_dir: str | None, db_url: str | None, config_file: str | None,
                **kwargs: Any) -> Any:
        overrides = kwargs.pop("_config_overrides", {})
        try:
            config = load_config(config_file, data_dir=data_dir, db_url=db_url, **overrides)
        except EcgNodeError as exc:
            raise click.ClickException(str(exc)) from exc
        return func(*args, config=config, **kwargs)

    return wrapper  # type: ignore[return-value]


def handle_errors(func: F) -> F:
    """Turn an :class:`EcgNodeError` into a clean one-line message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EcgNodeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (dates and paths as strings)."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print ``rows`` as an aligned text table with the given ``columns``."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


__all__ = ["NodeConfig", "echo_json", "echo_table", "handle_errors", "node_options"]
