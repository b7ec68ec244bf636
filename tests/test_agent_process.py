"""`amoskys agent` as a real child process: an identity bundle from a real appliance data dir, its own
data dir by default, /metrics /healthz /readyz on its own port, no bus server and no dashboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from support import (
    CHILD_SITE,
    ROOT,
    amoskys,
    blocking_findings,
    free_port,
    http_get,
    require_root,
    require_tool,
    stall_findings,
    wait_for,
)

pytestmark = pytest.mark.e2e


def enrol(tmp_path: Path, name: str) -> Path:
    """A bundle for agent `name`, made by `amoskys agents enroll --out` against an appliance data dir;
    it names a bus address nobody listens on (no appliance runs: the agent must not care)."""
    data = tmp_path / "appliance"
    amoskys("certs", "init", "--data-dir", str(data))
    out = tmp_path / f"bundle-{name}"
    amoskys(
        "agents", "enroll", name, "--out", str(out), "--data-dir", str(data),
        "--bus-address", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    return out


def start_agent(
    log_path: Path, *args: str, env: dict[str, str], prefix: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOSKYS_", "XDG_", "STATE_"))}
    full_env.update({"PYTHONUNBUFFERED": "1", "AMOSKYS_LOG_LEVEL": "info"}, **env)
    # the blocking-call detector and the CPU-stall guard, logging (tests/child_site/sitecustomize.py)
    full_env["PYTHONPATH"] = str(CHILD_SITE)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "amoskys", "agent", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
        )


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="amoskys-agent-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def chown_tree(path: Path, user: str, group: str) -> None:
    shutil.chown(path, user, group)
    for p in path.rglob("*"):
        shutil.chown(p, user, group)


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_agent_runs_unprivileged_on_its_defaults_and_serves_only_health_and_metrics(
    tmp_path: Path, nobody_home: Path
) -> None:
    require_root("runs as root to drop to `nobody` with setpriv")
    setpriv = require_tool("setpriv", "util-linux")
    bundle = nobody_home / "bundle"
    shutil.copytree(enrol(tmp_path, "branch-1"), bundle)
    chown_tree(nobody_home, "nobody", "nogroup")
    env = {"HOME": str(nobody_home), "XDG_STATE_HOME": str(nobody_home / "state")}
    prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")
    expected = nobody_home / "state" / "amoskys-agent"
    log_path = tmp_path / "agent.log"
    # the defaults, but for the web port: a test never takes a fixed one
    proc = start_agent(
        log_path, "--identity", str(bundle), "--web-listen", "127.0.0.1:0", env=env, prefix=prefix
    )
    try:

        def ready() -> dict[str, object] | None:
            if proc.poll() is not None:
                raise AssertionError(f"agent exited {proc.returncode}:\n{log_path.read_text()}")
            try:
                info = json.loads((expected / "run.json").read_text())
            except (FileNotFoundError, ValueError):
                return None
            url = f"http://127.0.0.1:{info['web']['port']}"
            return info if http_get(url + "/readyz")[0] == 200 else None

        info = wait_for(ready, timeout=20, what="the agent to be ready")
        assert info["pid"] == proc.pid and info["mode"] == "agent" and info["bus"] is None
        assert info["name"] == "branch-1" and expected.stat().st_uid != 0
        url = f"http://127.0.0.1:{info['web']['port']}"  # type: ignore[index]
        status, body = http_get(url + "/metrics")
        assert status == 200 and "amoskys_up 1.0" in body.decode()
        assert http_get(url + "/healthz")[0] == 200
        for path in ("/", "/login", "/api/v1/overview", "/api/v1/agents", "/static/app.css"):
            assert http_get(url + path)[0] == 404, path  # no dashboard, login or API
        listening = {
            c.laddr.port
            for c in psutil.Process(proc.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {info["web"]["port"]}  # type: ignore[index]  # no bus port
        assert not (expected / "pki" / "ca.key").exists()  # serves no bus: makes no CA
        log = log_path.read_text()
        assert "agent_ready" in log and "per-user default ($XDG_STATE_HOME)" in log

        status_cmd = subprocess.run(
            [*prefix, sys.executable, "-m", "amoskys", "status", "--agent", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env, "PYTHONPATH": ""},
            cwd=ROOT,
        )
        assert status_cmd.returncode == 0, status_cmd.stderr
        reply = json.loads(status_cmd.stdout)
        assert reply["appliance"]["mode"] == "agent" and reply["appliance"]["name"] == "branch-1"
        assert reply["appliance"]["bus_max_connections"] is None and "bus" not in reply["appliance"]["ports"]
        states = {c["name"]: c["state"] for c in reply["collectors"]}
        assert {states[n] for n in ("heartbeat", "host", "process")} == {"running"}
        assert {states[n] for n in ("snmp", "flow", "discovery")} == {"disabled"}
        restart = subprocess.run(
            [*prefix, sys.executable, "-m", "amoskys", "collectors", "restart", "host", "--agent"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env, "PYTHONPATH": ""},
            cwd=ROOT,
        )
        assert restart.returncode == 0 and "host: running" in restart.stdout, restart.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not (expected / "run.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert blocking_findings(log_path) == [] and stall_findings(log_path) == []


def test_agent_named_otherwise_than_its_bundle_refuses_to_start(tmp_path: Path) -> None:
    bundle = enrol(tmp_path, "branch-2")
    config = tmp_path / "agent.toml"
    config.write_text('[appliance]\nname = "laptop"\n[web]\nlisten = "127.0.0.1:0"\n')
    done = amoskys(
        "agent", "--identity", str(bundle), "--config", str(config), "--data-dir", str(tmp_path / "d"),
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "'laptop'" in done.stderr and "'branch-2'" in done.stderr and "appliance.name" in done.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_agent_without_an_identity_says_how_to_get_one(tmp_path: Path) -> None:
    done = amoskys("agent", "--data-dir", str(tmp_path / "d"), check=False)
    assert done.returncode == 2
    assert "--identity DIR" in done.stderr and "amoskys agents enroll" in done.stderr


def test_agent_heartbeats_reach_the_appliance_and_show_on_its_agents_api(
    appliance_factory, tmp_path: Path
) -> None:
    app = appliance_factory()
    app.wait_ready()
    data = app.data_dir
    bundle = tmp_path / "bundle"
    amoskys(
        "agents", "enroll", "branch-3", "--out", str(bundle), "--data-dir", str(data),
        "--bus-address", f"127.0.0.1:{free_port()}",  # a dead address: --bus overrides it
    )  # fmt: skip
    token = amoskys("tokens", "issue", "admin", "--days", "1", "--data-dir", str(data)).stdout.split()[0]
    config = tmp_path / "agent.toml"
    config.write_text(
        '[web]\nlisten = "127.0.0.1:0"\n[collectors.heartbeat]\ninterval_seconds = 1.0\n'
        "[collectors.process]\nenabled = false\n[collectors.host]\nenabled = false\n"
    )
    log_path = tmp_path / "agent.log"
    proc = start_agent(
        log_path, "--identity", str(bundle), "--bus", f"127.0.0.1:{app.bus_port}", "--config", str(config),
        "--data-dir", str(tmp_path / "agent"), env={},
    )  # fmt: skip
    try:

        def shown() -> dict[str, object] | None:
            if proc.poll() is not None:
                raise AssertionError(f"agent exited {proc.returncode}:\n{log_path.read_text()}")
            status, body = http_get(app.web_url + "/api/v1/agents", {"Authorization": f"Bearer {token}"})
            assert status == 200, body
            item = {a["name"]: a for a in json.loads(body)["items"]}["branch-3"]
            return item if item["version"] else None

        item = wait_for(shown, timeout=20, what="the agent's heartbeat on the appliance's Agents API")
        assert item["silent"] is False and item["heartbeat_interval_seconds"] == 1.0
        assert item["os"] and isinstance(item["addresses"], list) and item["hostname"]
        assert item["outbox_lag_events"] is not None and item["outbox_lag_seconds"] is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert blocking_findings(log_path) == [] and stall_findings(log_path) == []


def test_agent_takes_the_bundle_in_its_data_dir_when_no_identity_is_named(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    data.mkdir(mode=0o700)
    shutil.copytree(enrol(tmp_path, "branch-4"), data / "identity")  # where `amoskys agent enroll` puts it
    log_path = tmp_path / "agent.log"
    proc = start_agent(log_path, "--data-dir", str(data), "--web-listen", "127.0.0.1:0", env={})
    try:

        def named() -> object:
            if proc.poll() is not None:
                raise AssertionError(f"agent exited {proc.returncode}:\n{log_path.read_text()}")
            try:
                return json.loads((data / "run.json").read_text()).get("name")
            except (FileNotFoundError, ValueError):
                return None

        assert wait_for(named, timeout=20, what="the agent to start") == "branch-4"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
