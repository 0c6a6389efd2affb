"""Configuration: TOML file < ECG_NODE_* environment < flags, validated on load."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_ecg_node.config import NodeConfig, load_config
from dicom_ecg_node.errors import ConfigError


def test_defaults():
    config = load_config(environ={})
    assert config == NodeConfig()
    assert config.aet == "ECGNODE" and config.port == 11112 and config.data_dir == Path("var")
    assert config.catalog_url == "sqlite:///var/catalog.sqlite"


def test_file_then_environment_then_flags(tmp_path):
    toml = tmp_path / "node.toml"
    toml.write_text('[node]\naet = "FROMFILE"\nport = 104\nmax_pdu = 65536\ndefault_timezone = "Europe/Rome"\n')
    config = load_config(toml, environ={"ECG_NODE_PORT": "2000", "ECG_NODE_AET": "FROMENV"}, aet="FROMFLAG")
    assert config.aet == "FROMFLAG"  # flag beats environment
    assert config.port == 2000  # environment beats file
    assert config.max_pdu == 65536  # file beats default
    assert config.default_timezone == "Europe/Rome"
    assert str(config.zone) == "Europe/Rome"


def test_none_flags_do_not_override(tmp_path):
    config = load_config(environ={"ECG_NODE_DATA_DIR": str(tmp_path)}, data_dir=None, port=None)
    assert config.data_dir == tmp_path
    assert config.catalog_url == f"sqlite:///{tmp_path / 'catalog.sqlite'}"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("aet", "A" * 17, "AE title"),
        ("aet", "BACK\\SLASH", "AE title"),
        ("port", 70000, "port"),
        ("max_pdu", 100, "max_pdu"),
        ("max_associations", 0, "max_associations"),
        ("dimse_timeout", 0, "dimse_timeout"),
        ("unidentified_patient", "maybe", "unidentified_patient"),
        ("on_conflict", "overwrite", "on_conflict"),
        ("default_timezone", "Mars/Olympus", "default_timezone"),
    ],
)
def test_invalid_values_name_the_setting(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={}, **{setting: value})


def test_bad_environment_value_and_unknown_file_key(tmp_path):
    with pytest.raises(ConfigError, match="port"):
        load_config(environ={"ECG_NODE_PORT": "eleven"})
    toml = tmp_path / "node.toml"
    toml.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_config(toml, environ={})
    toml.write_text("this is = not toml [")
    with pytest.raises(ConfigError, match="config file"):
        load_config(toml, environ={})
    with pytest.raises(ConfigError, match="config file"):
        load_config(tmp_path / "absent.toml", environ={})
