"""The bus address `amoskys agents enroll` writes into a bundle: --bus-address, else `[bus]
advertise_address`, else the running appliance's bus (run.json), else `[bus] listen` — never a wildcard,
and always a host the bus server certificate names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amoskys import config as cfg
from amoskys.errors import ConfigError

from support import amoskys, free_port


class Appliance:
    """A data dir with a CA and bus server certificate (`certs init`) and the config it was made with."""

    def __init__(self, tmp_path: Path, bus_section: str = "") -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.config = tmp_path / "amoskys.toml"
        self.config.write_text(f"[bus]\n{bus_section}")
        amoskys("certs", "init", "--data-dir", str(self.data), "--config", str(self.config))
        self._bundles = 0

    def enroll(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self._bundles += 1
        self.out = self.tmp / f"bundle-{self._bundles}"
        return amoskys(
            "agents", "enroll", f"edge-{self._bundles}", "--out", str(self.out),
            "--data-dir", str(self.data), "--config", str(self.config), *extra, check=check,
        )  # fmt: skip

    def bundle_address(self, *extra: str) -> str:
        self.enroll(*extra)
        return json.loads((self.out / "bundle.json").read_text())["bus_address"]

    def refused(self, *extra: str) -> str:
        """The one line of a refused enrolment, having checked nothing was issued or recorded."""
        result = self.enroll(*extra, check=False)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert not self.out.exists(), "no bundle is written"
        assert not list((self.data / "pki").glob("agents/*")), "nothing is recorded"
        return lines[0]

    def write_run_json(self, pid: int, host: str, port: int) -> None:
        """What a running appliance leaves in its data dir (only the fields enrol reads matter)."""
        info = {"pid": pid, "bus": {"host": host, "port": port}, "web": {"host": "127.0.0.1", "port": 1}}
        (self.data / "run.json").write_text(json.dumps(info))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------ precedence
def test_the_flag_wins_over_everything(tmp_path: Path) -> None:
    app = Appliance(tmp_path, 'listen = "127.0.0.1:50051"\nadvertise_address = "127.0.0.1:6000"\n')
    app.write_run_json(os.getpid(), "127.0.0.1", 7000)
    assert app.bundle_address("--bus-address", "localhost:5000") == "localhost:5000"


def test_advertise_address_wins_over_the_running_appliance_and_listen(tmp_path: Path) -> None:
    app = Appliance(tmp_path, 'listen = "127.0.0.1:50051"\nadvertise_address = "localhost:6000"\n')
    app.write_run_json(os.getpid(), "127.0.0.1", 7000)
    assert app.bundle_address() == "localhost:6000"


def test_the_running_appliances_bus_wins_over_listen(tmp_path: Path) -> None:
    app = Appliance(tmp_path, 'listen = "127.0.0.1:50051"\n')
    app.write_run_json(os.getpid(), "127.0.0.1", 7000)  # this test process stands for the appliance
    assert app.bundle_address() == "127.0.0.1:7000"


def test_a_stale_run_json_is_ignored(tmp_path: Path) -> None:
    app = Appliance(tmp_path, 'listen = "127.0.0.1:50051"\n')
    app.write_run_json(dead_pid(), "127.0.0.1", 7000)
    assert app.bundle_address() == "127.0.0.1:50051"


def test_a_specific_listen_is_used_last(tmp_path: Path) -> None:
    app = Appliance(tmp_path, 'listen = "[::1]:50051"\n')
    assert app.bundle_address() == "[::1]:50051"


@pytest.mark.e2e
def test_a_real_running_appliance_gives_its_bus_address(appliance_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    app = appliance_factory(data_dir=data)  # --bus-listen 127.0.0.1:0: the port is chosen at start
    app.wait_ready(timeout=30)
    out = tmp_path / "bundle"
    amoskys("agents", "enroll", "edge-1", "--out", str(out), "--data-dir", str(data))
    assert json.loads((out / "bundle.json").read_text())["bus_address"] == f"127.0.0.1:{app.bus_port}"


# ------------------------------------------------------------------ wildcard
def test_a_wildcard_listen_with_nothing_else_is_refused_naming_both_remedies(tmp_path: Path) -> None:
    app = Appliance(tmp_path)  # the default listen, 0.0.0.0:50051
    line = app.refused()
    assert line.startswith("amoskys: error: agents enroll: [bus] listen is 0.0.0.0:50051"), line
    assert "--bus-address" in line and "[bus] advertise_address" in line, line


def test_a_running_appliance_on_a_wildcard_is_refused_too(tmp_path: Path) -> None:
    app = Appliance(tmp_path, 'listen = "[::]:50051"\n')
    app.write_run_json(os.getpid(), "::", 7000)
    line = app.refused()
    assert "[::]:7000" in line and "--bus-address" in line and "[bus] advertise_address" in line, line


@pytest.mark.parametrize("value", ["0.0.0.0:50051", "localhost:0", "nonsense"])
def test_a_flag_agents_cannot_dial_is_refused(tmp_path: Path, value: str) -> None:
    app = Appliance(tmp_path)
    line = app.refused("--bus-address", value)
    assert line.startswith("amoskys: error: --bus-address: ") and repr(value) in line, line


@pytest.mark.parametrize("value", ["0.0.0.0:50051", "[::]:1", "localhost:0", "localhost", "a:b:1"])
def test_advertise_address_is_validated_at_load(tmp_path: Path, value: str) -> None:
    path = tmp_path / "amoskys.toml"
    path.write_text(f'[bus]\nadvertise_address = "{value}"\n')
    with pytest.raises(ConfigError, match="advertise_address"):
        cfg.load(path)


# ------------------------------------------------------------------ certificate names
def test_a_host_the_server_certificate_does_not_name_is_refused(tmp_path: Path) -> None:
    app = Appliance(tmp_path)
    line = app.refused("--bus-address", "appliance.example:50051")
    assert "'appliance.example'" in line and "localhost" in line and "127.0.0.1" in line, line
    assert "[bus] server_dns_names" in line and "server_ip_addresses" in line, line
    assert "amoskys certs renew" in line, line


def test_an_advertise_address_outside_the_certificate_is_refused(tmp_path: Path) -> None:
    app = Appliance(tmp_path, 'advertise_address = "10.0.0.5:50051"\n')
    line = app.refused()
    assert "[bus] advertise_address" in line and "'10.0.0.5'" in line and "certs renew" in line, line


def test_names_in_the_certificate_are_accepted_ignoring_case_and_ip_spelling(tmp_path: Path) -> None:
    app = Appliance(
        tmp_path, 'server_dns_names = ["appliance.example"]\nserver_ip_addresses = ["10.0.0.5", "fd00::5"]\n'
    )
    assert app.bundle_address("--bus-address", "Appliance.Example:50051") == "Appliance.Example:50051"
    assert app.bundle_address("--bus-address", "10.0.0.5:50051") == "10.0.0.5:50051"
    assert app.bundle_address("--bus-address", "[fd00:0::5]:50051") == "[fd00:0::5]:50051"


# ------------------------------------------------------------------ the server certificate stays
def test_enrolling_without_the_appliances_config_leaves_its_server_certificate_alone(tmp_path: Path) -> None:
    """The bus server certificate is re-issued by `run`, `certs init` and `certs renew` only: `agents
    enroll` run without `--config` (embedded defaults: other SANs) must not replace the certificate a
    running appliance serves."""
    app = Appliance(tmp_path, 'server_ip_addresses = ["127.0.0.1", "198.19.7.1"]\n')
    cert = app.data / "pki" / "server.crt"
    before = cert.read_bytes()
    result = amoskys(
        "agents", "enroll", "edge-x", "--out", str(tmp_path / "bundle-x"), "--data-dir", str(app.data),
        "--bus-address", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert cert.read_bytes() == before
    renewed = amoskys("certs", "renew", "--data-dir", str(app.data), "--config", str(app.config))
    assert renewed.returncode == 0 and cert.read_bytes() != before  # renewing on purpose still does
