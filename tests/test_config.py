from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amoskys import config as cfg
from amoskys.errors import ConfigError


def _error(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.from_mapping(data, source="site.toml")
    return info.value


def test_unknown_key_names_its_path() -> None:
    err = _error({"store": {"max_batch_evnts": 5}})
    assert err.path == "store.max_batch_evnts"
    assert str(err) == "site.toml: store.max_batch_evnts: unknown key"


def test_unknown_section_names_its_path() -> None:
    assert _error({"webb": {}}).path == "webb"


def test_wrong_type_names_path_value_and_expected_type() -> None:
    err = _error({"web": {"listen": 8080}})
    assert err.path == "web.listen"
    assert "Expected `str`, got `int`" in str(err)
    assert "(got 8080)" in str(err)


def test_out_of_range_value_names_path_value_and_bound() -> None:
    err = _error({"store": {"max_batch_events": 0}})
    assert err.path == "store.max_batch_events"
    assert ">= 1" in str(err) and "(got 0)" in str(err)


def test_bad_enum_lists_the_choices() -> None:
    err = _error({"appliance": {"log_level": "loud"}})
    assert err.path == "appliance.log_level"
    assert "'debug', 'info', 'warning', 'error'" in str(err) and "'loud'" in str(err)


def test_malformed_listen_address_is_rejected_with_key() -> None:
    err = _error({"bus": {"listen": "nohostport"}})
    assert err.path == "bus.listen"
    assert "HOST:PORT" in str(err) and "'nohostport'" in str(err)


def test_port_out_of_range_is_rejected() -> None:
    assert "0..65535" in str(_error({"web": {"listen": "127.0.0.1:70000"}}))


def test_bad_ip_in_list_is_named() -> None:
    err = _error({"bus": {"server_ip_addresses": ["127.0.0.1", "not-an-ip"]}})
    assert err.path == "bus.server_ip_addresses" and "'not-an-ip'" in str(err)


def test_listen_parses_ipv4_ipv6_and_names() -> None:
    assert cfg.parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert cfg.parse_listen("[::1]:50051") == ("::1", 50051)
    assert cfg.parse_listen("box.local:8080") == ("box.local", 8080)
    assert cfg.format_listen("::1", 5) == "[::1]:5"


def test_no_file_means_embedded_defaults() -> None:
    assert cfg.load(None) == cfg.Config()


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[web\nlisten=1")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        cfg.load(p)


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    p = tmp_path / "a.toml"
    p.write_text('[appliance]\nlog_level = "warning"\ndata_dir = "/from/file"\n')
    loaded = cfg.load(p)
    assert loaded.appliance.log_level == "warning"
    env = {"AMOSKYS_LOG_LEVEL": "debug", "AMOSKYS_DATA_DIR": "/from/env"}
    merged = cfg.apply_overrides(loaded, env)
    assert (merged.appliance.log_level, merged.appliance.data_dir) == ("debug", "/from/env")
    flagged = cfg.apply_overrides(loaded, env, log_level="error", data_dir="/from/flag")
    assert (flagged.appliance.log_level, flagged.appliance.data_dir) == ("error", "/from/flag")


def test_bad_env_value_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"appliance\.log_level"):
        cfg.apply_overrides(cfg.Config(), {"AMOSKYS_LOG_LEVEL": "chatty"})


def test_check_config_command_reports_key_path(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[web]\nlisten = "0.0.0.0:9000"\n')
    bad.write_text('[store]\nsynchronous = "sometimes"\n')
    ok = subprocess.run(
        [sys.executable, "-m", "amoskys", "check-config", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "ok" in ok.stdout
    no = subprocess.run(
        [sys.executable, "-m", "amoskys", "check-config", str(bad)], capture_output=True, text=True
    )
    assert no.returncode == 2
    assert "store.synchronous" in no.stderr and "'sometimes'" in no.stderr
