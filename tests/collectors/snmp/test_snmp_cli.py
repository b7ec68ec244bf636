"""`amoskys snmp poll`: one poll printed as JSON or a table, clear errors, no secret in the output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from snmp_agents import SnmpDaemon, SnmpSim
from snmp_harness import secret_file

from amoskys.collectors.snmp.cli import parse_host_port
from amoskys.errors import ConfigError

from support import ROOT


def snmp_poll(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amoskys.collectors.snmp.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_host_port_forms() -> None:
    assert parse_host_port("10.0.0.2") == ("10.0.0.2", 161)
    assert parse_host_port("sw1.example.net:1161") == ("sw1.example.net", 1161)
    assert parse_host_port("[::1]:162") == ("::1", 162)
    assert parse_host_port("fe80::1") == ("fe80::1", 161)
    with pytest.raises(ConfigError, match=r"port must be 1\.\.65535"):
        parse_host_port("h:70000")


@pytest.mark.needs_tool
def test_json_poll_of_a_recorded_device(sim: SnmpSim, tmp_path: Path) -> None:
    community = secret_file(tmp_path, "c", "linux-full-walk")
    result = snmp_poll(f"127.0.0.1:{sim.port}", "--community-file", community, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["reachable"] is True and data["address"] == f"127.0.0.1:{sim.port}"
    assert data["system"]["name"] == "tt" and data["system"]["uptime_ticks"] == "233425120"
    assert [i["descr"] for i in data["interfaces"]] == ["lo", "eth0"]
    assert data["interfaces"][1]["phys_address"] == "00:12:79:62:f9:40"
    assert "linux-full-walk" not in result.stdout + result.stderr


@pytest.mark.needs_tool
def test_table_poll_over_v3_with_key_files(snmpd: SnmpDaemon, tmp_path: Path) -> None:
    auth = secret_file(tmp_path, "auth", "auth-pass-256-xyz")
    priv = secret_file(tmp_path, "priv", "priv-pass-128-xyz")
    result = snmp_poll(
        f"127.0.0.1:{snmpd.port}", "--user", "amoskys256", "--auth-key-file", auth, "--priv-key-file", priv
    )
    assert result.returncode == 0, result.stderr
    assert "sysName   amoskys-test-agent" in result.stdout
    assert any(line.split()[1:2] == ["lo"] for line in result.stdout.splitlines() if line[:1].isdigit())
    assert "auth-pass" not in result.stdout and "priv-pass" not in result.stdout


@pytest.mark.needs_tool
def test_errors_name_the_target_and_never_the_secret(snmpd: SnmpDaemon, tmp_path: Path) -> None:
    result = snmp_poll(
        "127.0.0.1:1", "--community", "s3cr3t-never-shown", "--timeout", "0.3", "--retries", "0"
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "amoskys: error: snmp target '127.0.0.1' (127.0.0.1:1): no response after 0.3 s"
    )
    missing = snmp_poll(f"127.0.0.1:{snmpd.port}")
    assert missing.returncode == 2 and "give --community-file F" in missing.stderr
    unreadable = snmp_poll(f"127.0.0.1:{snmpd.port}", "--community-file", str(tmp_path / "nope"))
    assert unreadable.returncode == 2
    assert f"community_file: cannot read {tmp_path / 'nope'}" in unreadable.stderr
