"""Node configuration: one frozen :class:`NodeConfig`, built from TOML file < ``ECG_NODE_*`` environment < flags.

Every value is validated when the configuration is built, so a wrong setting stops the node at start with a
:class:`~dicom_ecg_node.errors.ConfigError` naming the setting, never later in the middle of an association.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dicom_ecg_node.errors import ConfigError

ENV_PREFIX = "ECG_NODE_"

#: Policies for an object without Patient ID: refuse it, or store it under a generated ID (``UNIDENTIFIED-...``).
UNIDENTIFIED_POLICIES = ("refuse", "accept")
#: Policies for a known SOP Instance UID arriving with different bytes.
CONFLICT_POLICIES = ("refuse", "replace")

_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2 AE: 16 chars, no backslash or control chars


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """All settings of one node.

    Attributes
    ----------
    aet : str
        The node's own AE title (PS3.5 AE: at most 16 characters, no backslash).
    host, port : str, int
        Address the DICOM listener binds.
    data_dir : Path
        Root of everything the node writes: archive, catalog (SQLite), quarantine, logs.
    db_url : str or None
        Catalog URL (``sqlite:///path`` or ``postgresql://user@host/db``); ``None`` means
        ``sqlite:///DATA_DIR/catalog.sqlite``.
    default_timezone : str
        IANA zone applied to acquisition times that carry no UTC offset of their own (PS3.3 C.12.1.1.8);
        ``"UTC"`` by default.
    max_pdu : int
        Maximum PDU size the node receives (bytes, 0 for unlimited).
    max_associations : int
        Maximum simultaneous associations.
    network_timeout, acse_timeout, dimse_timeout : float
        Seconds before an idle connection, an ACSE exchange or a DIMSE exchange times out.
    workers : int
        Receiving processes sharing the listening port (0: one per CPU core).
    unidentified_patient : str
        What to do with an object without Patient ID: ``"refuse"`` or ``"accept"``.
    on_conflict : str
        What to do with a known SOP Instance UID arriving with different content: ``"refuse"`` (default; the
        object is quarantined) or ``"replace"``.
    log_level : str
        Logging level name for the node's own log.
    """

    aet: str = "ECGNODE"
    host: str = "0.0.0.0"
    port: int = 11112
    data_dir: Path = Path("var")
    db_url: str | None = None
    default_timezone: str = "UTC"
    max_pdu: int = 262144
    max_associations: int = 32
    network_timeout: float = 60.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    workers: int = 1
    unidentified_patient: str = "refuse"
    on_conflict: str = "refuse"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not _AET_RE.match(self.aet) or self.aet.strip() == "":
            raise ConfigError(f"aet: {self.aet!r} is not a valid AE title (1-16 characters, no backslash)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port} is outside 0-65535")
        if self.max_pdu != 0 and self.max_pdu < 4096:
            raise ConfigError(f"max_pdu: {self.max_pdu} is below 4096 bytes (use 0 for unlimited)")
        if self.max_associations < 1:
            raise ConfigError(f"max_associations: {self.max_associations} must be at least 1")
        for name in ("network_timeout", "acse_timeout", "dimse_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive seconds")
        if self.workers < 0:
            raise ConfigError(f"workers: {self.workers} must be 0 (one per core) or more")
        if self.unidentified_patient not in UNIDENTIFIED_POLICIES:
            raise ConfigError(f"unidentified_patient: must be one of {', '.join(UNIDENTIFIED_POLICIES)}")
        if self.on_conflict not in CONFLICT_POLICIES:
            raise ConfigError(f"on_conflict: must be one of {', '.join(CONFLICT_POLICIES)}")
        try:
            ZoneInfo(self.default_timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"default_timezone: unknown zone {self.default_timezone!r}") from exc

    @property
    def zone(self) -> ZoneInfo:
        """The configured default zone as a ``ZoneInfo``."""
        return ZoneInfo(self.default_timezone)

    @property
    def catalog_url(self) -> str:
        """The catalog URL, defaulting to SQLite inside the data directory."""
        return self.db_url or f"sqlite:///{self.data_dir / 'catalog.sqlite'}"

    def replace(self, **changes: Any) -> NodeConfig:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def _coerce(name: str, raw: Any, target: Any) -> Any:
    """Convert a TOML or environment value to the type of field ``name``."""
    kind = {"int": int, "float": float, "str": str, "Path": Path, "str | None": str}.get(str(target), str)
    if raw is None:
        return None
    try:
        if kind is Path:
            return Path(raw)
        if kind in (int, float) and isinstance(raw, str):
            return kind(raw.strip())
        if kind is int and isinstance(raw, bool):
            raise TypeError("boolean")
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {raw!r} is not a valid {kind.__name__}") from exc


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> NodeConfig:
    """Build the node configuration: TOML file < ``ECG_NODE_*`` environment < explicit overrides.

    Parameters
    ----------
    config_file : path, optional
        A TOML file whose top-level keys (or ``[node]`` table) are :class:`NodeConfig` field names.
    environ : mapping, optional
        Environment to read ``ECG_NODE_<FIELD>`` variables from; ``os.environ`` by default.
    **overrides
        Values from command-line flags; ``None`` means "not given".

    Returns
    -------
    NodeConfig

    Raises
    ------
    ConfigError
        Unreadable file, unknown key or invalid value.
    """
    known = {f.name: f.type for f in fields(NodeConfig)}
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            with open(config_file, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"config file {os.fspath(config_file)!r}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {os.fspath(config_file)!r}: {exc}") from exc
        table = doc.get("node", doc)
        for key, raw in table.items():
            if key not in known:
                raise ConfigError(f"config file: unknown setting {key!r}")
            values[key] = _coerce(key, raw, known[key])
    env = os.environ if environ is None else environ
    for key, kind in known.items():
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None and raw != "":
            values[key] = _coerce(key, raw, kind)
    for key, raw in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}")
        if raw is not None:
            values[key] = _coerce(key, raw, known[key])
    return NodeConfig(**values)
