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
        Receiving processes sharing the listening port (0: two per CPU core).
    prepare_archive : bool
        Create the archive's 4,096 fan-out folders when the data directory is opened (default), so that no store
        creates a folder (and syncs its parent) on the way; ``False``: the first store that needs a folder creates it
        (durably too). Off saves 4,352 folders (17 MB) per data directory: for small, short-lived ones (tests).
    unidentified_patient : str
        What to do with an object without Patient ID: ``"refuse"`` or ``"accept"``.
    on_conflict : str
        What to do with a known SOP Instance UID arriving with different content: ``"refuse"`` (default; the
        object is quarantined) or ``"replace"``.
    log_level : str
        Logging level name for the node's own log.
    hl7_port : int or None
        Port of the HL7 v2 MLLP listener (ADT and orders in); ``None``: no listener.
    hl7_results_to : tuple of str
        ``"host:port"`` MLLP receivers of ORU^R01 results (empty: no results are sent).
    hl7_allowed_facilities : tuple of str
        Sending facilities (MSH-4, first component) accepted over MLLP; empty: any.
    hl7_allowed_addresses : tuple of str
        Peer IP addresses accepted over MLLP; empty: any.
    accept_unknown : bool
        Accept associations from calling AE titles absent from the AE registry, with every permission (first-time
        set-up and demos only; logged loudly). Off by default: unknown titles are rejected (PS3.8 9.3.4 reason 3).
    tls_cert, tls_key, tls_ca : Path or None
        PEM certificate chain and key of the node, and the CA bundle client certificates must chain to. All three
        enable DICOM TLS with mutual authentication (PS3.15 B.1/B.9 style, TLS 1.2+) on :attr:`tls_port`.
    tls_port : int
        Port of the TLS listener (2762, "dicom-tls", by default).
    plaintext : bool
        Also listen without TLS on :attr:`port` (``False`` needs TLS configured).
    max_object_size : int
        Largest C-STORE data set accepted, bytes (0: unlimited); larger ones are refused with 0xA700.
    max_associations_per_peer : int
        Simultaneous associations from one IP address per process (0: only :attr:`max_associations` applies).
    syslog : str or None
        Also send audit events as RFC 5424 messages to ``udp://host:port``, ``tcp://host:port`` or ``host:port``
        (UDP).
    clock_offset_threshold_s : float
        A device clock further than this from the node's (seconds, either way) is flagged (default 60).
    clock_window_samples, clock_window_hours : int, float
        A device's clock estimate uses its last ``clock_window_samples`` observations received within
        ``clock_window_hours`` of the latest one.
    clock_correction : str
        ``"off"`` (default) or ``"trusted"``: order serial ECGs by the acquisition time corrected by the
        device's offset when that offset is trusted (the original is always shown beside it).
    clock_trust_samples, clock_trust_tolerance_s : int, float
        An offset is trusted with at least this many observations in the window whose three largest lower
        bounds agree within this many seconds, and no zone jump.
    device_timezones : tuple of str
        ``"AE=Zone"`` or ``"AE/SERIAL=Zone"`` (IANA zone) for devices that send no UTC offset; others get
        ``default_timezone``.
    analysis : str
        ``"background"`` (default): every stored ECG is measured and compared with the patient's prior ECG by a
        background worker after the C-STORE response; ``"off"``: not at all (``ecg-node analyse`` still works).
    analysis_prior : str
        Which ECG is the prior: ``"most-recent"`` (the patient's previous measurable ECG in true UTC order). The
        ``"confirmed"`` policy (the most recent ECG a physician confirmed) needs confirmation, which the node does
        not record yet: it is refused until then.
    analysis_sr : str
        When the comparison is written back as a Comprehensive SR (PS3.16 TID 3700) in the ECG's study:
        ``"changes"`` (default: when at least one rule flagged a change), ``"compared"`` (whenever there is a
        prior) or ``"off"``.
    analysis_qtc_formula : str
        ``"bazett"`` (default) or ``"fridericia"``: the QTc the rules and reports use.
    analysis_thresholds : tuple of str
        Overrides of the comparison thresholds (``dicom_ecg_node.analysis.THRESHOLDS``) as ``"name=value"``;
        from the TOML ``[analysis.thresholds]`` table, a comma-separated list, or ``"@path"`` of a TOML file of
        ``name = value`` lines. An unknown name is a configuration error.
    http_port : int or None
        Port of the web viewer (``None``: no web viewer; 0: any free port). HTTPS when ``tls_cert`` and
        ``tls_key`` are set.
    http_host : str
        Address the web viewer binds (loopback by default: expose it deliberately).
    http_open : bool
        Web viewer without login, for demonstrations (logged loudly and shown on every page).
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
    prepare_archive: bool = True
    unidentified_patient: str = "refuse"
    on_conflict: str = "refuse"
    log_level: str = "INFO"
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    http_open: bool = False
    clock_offset_threshold_s: float = 60.0
    clock_window_samples: int = 20
    clock_window_hours: float = 24.0
    clock_correction: str = "off"
    clock_trust_samples: int = 5
    clock_trust_tolerance_s: float = 5.0
    device_timezones: tuple[str, ...] = ()
    hl7_port: int | None = None
    hl7_results_to: tuple[str, ...] = ()
    hl7_allowed_facilities: tuple[str, ...] = ()
    hl7_allowed_addresses: tuple[str, ...] = ()
    accept_unknown: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_port: int = 2762
    plaintext: bool = True
    max_object_size: int = 256 * 1024 * 1024
    max_associations_per_peer: int = 16
    syslog: str | None = None
    analysis: str = "background"
    analysis_prior: str = "most-recent"
    analysis_sr: str = "changes"
    analysis_qtc_formula: str = "bazett"
    analysis_thresholds: tuple[str, ...] = ()

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
            raise ConfigError(f"workers: {self.workers} must be 0 (two per core) or more")
        if self.unidentified_patient not in UNIDENTIFIED_POLICIES:
            raise ConfigError(f"unidentified_patient: must be one of {', '.join(UNIDENTIFIED_POLICIES)}")
        if self.on_conflict not in CONFLICT_POLICIES:
            raise ConfigError(f"on_conflict: must be one of {', '.join(CONFLICT_POLICIES)}")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"http_port: {self.http_port} is outside 0-65535")
        if self.hl7_port is not None and not 0 <= self.hl7_port <= 65535:
            raise ConfigError(f"hl7_port: {self.hl7_port} is outside 0-65535")
        for target in self.hl7_results_to:
            host, _, port = target.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigError(f"hl7_results_to: {target!r} is not host:port")
        self._check_security()
        _validate_clock_settings(self)
        _validate_analysis_settings(self)
        try:
            ZoneInfo(self.default_timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"default_timezone: unknown zone {self.default_timezone!r}") from exc

    def _check_security(self) -> None:
        """Validate the access-control, TLS, limit and audit settings."""
        tls = (self.tls_cert, self.tls_key, self.tls_ca)
        if any(v is not None for v in tls) and not all(v is not None for v in tls):
            raise ConfigError("tls_cert, tls_key, tls_ca: give all three (TLS here always authenticates clients)")
        if not self.plaintext and self.tls_cert is None:
            raise ConfigError("plaintext: switching plaintext off needs tls_cert, tls_key and tls_ca")
        if not 0 <= self.tls_port <= 65535:
            raise ConfigError(f"tls_port: {self.tls_port} is outside 0-65535")
        if self.max_object_size < 0:
            raise ConfigError(f"max_object_size: {self.max_object_size} must be 0 (unlimited) or more bytes")
        if self.max_associations_per_peer < 0:
            raise ConfigError(f"max_associations_per_peer: {self.max_associations_per_peer} must be 0 (off) or more")
        if self.syslog is not None:
            parse_syslog_target(self.syslog)

    @property
    def tls(self) -> bool:
        """Whether the TLS listener is configured."""
        return self.tls_cert is not None

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


def parse_syslog_target(value: str) -> tuple[str, str, int]:
    """Split ``udp://host:port``, ``tcp://host:port`` or ``host:port`` (UDP) into (protocol, host, port).

    Raises
    ------
    ConfigError
        Another scheme, no host, or a port outside 1-65535.
    """
    protocol, sep, rest = value.partition("://")
    if not sep:
        protocol, rest = "udp", value
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if protocol not in ("udp", "tcp") or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"syslog: {value!r} is not udp://host:port, tcp://host:port or host:port")
    return protocol, host, int(port)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


#: Settings of ``clock_correction``.
CLOCK_CORRECTIONS = ("off", "trusted")


def parse_device_timezones(entries: tuple[str, ...]) -> dict[tuple[str, str | None], ZoneInfo]:
    """``("AE=Zone", "AE/SERIAL=Zone")`` as ``{(ae, serial or None): ZoneInfo}``.

    Raises
    ------
    ConfigError
        An entry is not ``AE[/SERIAL]=Zone`` or names an unknown zone.
    """
    zones: dict[tuple[str, str | None], ZoneInfo] = {}
    for entry in entries:
        device, sep, zone = entry.partition("=")
        ae, _, serial = device.strip().partition("/")
        if not sep or not ae.strip() or not zone.strip():
            raise ConfigError(f"device_timezones: {entry!r} is not AE=Zone or AE/SERIAL=Zone")
        try:
            zones[(ae.strip(), serial.strip() or None)] = ZoneInfo(zone.strip())
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"device_timezones: unknown zone {zone.strip()!r}") from exc
    return zones


def _validate_clock_settings(config: NodeConfig) -> None:
    """Check the device clock settings (see :class:`NodeConfig`)."""
    if config.clock_offset_threshold_s <= 0:
        raise ConfigError("clock_offset_threshold_s: must be positive seconds")
    if config.clock_window_samples < 1 or config.clock_window_hours <= 0:
        raise ConfigError("clock_window_samples / clock_window_hours: must be positive")
    if config.clock_correction not in CLOCK_CORRECTIONS:
        raise ConfigError(f"clock_correction: must be one of {', '.join(CLOCK_CORRECTIONS)}")
    if config.clock_trust_samples < 3 or config.clock_trust_tolerance_s <= 0:
        raise ConfigError("clock_trust_samples: at least 3; clock_trust_tolerance_s: positive seconds")
    parse_device_timezones(config.device_timezones)


#: Settings of ``analysis``, ``analysis_prior``, ``analysis_sr`` and ``analysis_qtc_formula``.
ANALYSIS_MODES = ("background", "off")
ANALYSIS_PRIORS = ("most-recent",)
ANALYSIS_SR_MODES = ("changes", "compared", "off")
ANALYSIS_QTC_FORMULAS = ("bazett", "fridericia")


def parse_analysis_thresholds(entries: tuple[str, ...]) -> dict[str, float]:
    """``("name=value", "@file.toml")`` as ``{name: value}``, checked against the analysis threshold table.

    The table is imported only when there are overrides (it pulls in numpy and scipy).

    Raises
    ------
    ConfigError
        Not ``name=value``, an unreadable file, an unknown threshold name or a value that is not a finite number.
    """
    pairs: list[tuple[str, Any]] = []
    for entry in entries:
        if entry.startswith("@"):
            try:
                with open(entry[1:], "rb") as fh:
                    doc = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"analysis_thresholds: {entry[1:]!r}: {exc}") from exc
            pairs.extend(dict(doc.get("thresholds", doc)).items())
            continue
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"analysis_thresholds: {entry!r} is not name=value")
        pairs.append((name.strip(), value.strip()))
    if not pairs:
        return {}
    from dicom_ecg_node.analysis.compare import THRESHOLDS

    out: dict[str, float] = {}
    for name, value in pairs:
        if name not in THRESHOLDS:
            raise ConfigError(f"analysis_thresholds: unknown threshold {name!r}; "
                              f"known: {', '.join(sorted(THRESHOLDS))}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"analysis_thresholds: {name} = {value!r} is not a number") from exc
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"analysis_thresholds: {name} = {value!r} is not finite")
        out[name] = number
    return out


def _validate_analysis_settings(config: NodeConfig) -> None:
    """Check the serial-analysis settings (see :class:`NodeConfig`)."""
    if config.analysis not in ANALYSIS_MODES:
        raise ConfigError(f"analysis: must be one of {', '.join(ANALYSIS_MODES)}")
    if config.analysis_prior == "confirmed":
        raise ConfigError("analysis_prior: 'confirmed' needs ECG confirmation, which this node does not record yet; "
                          "use 'most-recent'")
    if config.analysis_prior not in ANALYSIS_PRIORS:
        raise ConfigError(f"analysis_prior: must be one of {', '.join(ANALYSIS_PRIORS)}")
    if config.analysis_sr not in ANALYSIS_SR_MODES:
        raise ConfigError(f"analysis_sr: must be one of {', '.join(ANALYSIS_SR_MODES)}")
    if config.analysis_qtc_formula not in ANALYSIS_QTC_FORMULAS:
        raise ConfigError(f"analysis_qtc_formula: must be one of {', '.join(ANALYSIS_QTC_FORMULAS)}")
    parse_analysis_thresholds(config.analysis_thresholds)


def _coerce(name: str, raw: Any, target: Any) -> Any:
    """Convert a TOML or environment value to the type of field ``name``."""
    if str(target) == "bool" and raw is not None:  # TOML booleans, or 1/0, true/false, yes/no, on/off
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in _TRUE + _FALSE:
            return str(raw).strip().lower() in _TRUE
        raise ConfigError(f"{name}: {raw!r} is not a boolean (true/false)")
    if str(target) == "Path | None" and raw is not None:
        return Path(raw)
    kind = {"int": int, "float": float, "str": str, "Path": Path, "str | None": str,
            "int | None": int}.get(str(target), str)
    if raw is None:
        return None
    if str(target) == "tuple[str, ...]":  # a TOML list, or a comma-separated environment / flag value
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{name}: {raw!r} is not a list of strings")
        return tuple(str(i).strip() for i in items if str(i).strip())
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
        doc = dict(doc)
        # [analysis]: mode, prior, sr, qtc_formula and a [analysis.thresholds] table, as analysis_* settings.
        section = doc.pop("analysis", None)
        table = doc.get("node", doc)
        if isinstance(section, dict):
            table = dict(table)
            for key, raw in section.items():
                if key == "thresholds" and isinstance(raw, dict):
                    table["analysis_thresholds"] = [f"{k}={v}" for k, v in raw.items()]
                else:
                    table["analysis" if key == "mode" else f"analysis_{key}"] = raw
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
