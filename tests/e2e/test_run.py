"""`amoskys run` as a real child process: readiness, /metrics, signals, reuse of its PKI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support import ROOT, amoskys, http_get, require_root, require_tool, wait_for

pytestmark = pytest.mark.e2e


def _pki_digest(data_dir: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((data_dir / "pki").iterdir())
        if p.is_file()
    }


def test_run_becomes_ready_serves_metrics_and_stops_on_sigterm(appliance_factory, tmp_path: Path) -> None:
    app = appliance_factory()
    app.wait_ready()
    assert app.info["pid"] == app.proc.pid
    assert app.info["web"]["port"] > 0 and app.info["bus"]["port"] > 0

    status, body = http_get(app.web_url + "/metrics")
    text = body.decode()
    assert status == 200
    assert "amoskys_build_info{" in text and "process_resident_memory_bytes" in text
    assert "amoskys_up 1.0" in text
    assert http_get(app.web_url + "/healthz")[0] == 200

    t0 = time.monotonic()
    app.signal(signal.SIGTERM)
    assert app.wait_exit(timeout=5) == 0
    assert time.monotonic() - t0 < 5
    assert not (app.data_dir / "run.json").exists()


def test_first_run_creates_private_pki_and_second_run_reuses_it(appliance_factory) -> None:
    first = appliance_factory()
    first.wait_ready()
    pki = first.data_dir / "pki"
    for key in ("ca.key", "server.key", "identity.ed25519"):
        assert (pki / key).stat().st_mode & 0o777 == 0o600, key
    assert "pki_created" in first.log()
    before = _pki_digest(first.data_dir)
    first.signal(signal.SIGTERM)
    assert first.wait_exit(timeout=5) == 0

    second = appliance_factory()
    second.wait_ready()
    assert "pki_loaded" in second.log() and "pki_created" not in second.log()
    assert _pki_digest(second.data_dir) == before
    second.signal(signal.SIGINT)
    assert second.wait_exit(timeout=5) == 0


def test_second_sigint_forces_exit_during_a_slow_shutdown(appliance_factory) -> None:
    app = appliance_factory(env={"AMOSKYS_FAULTS": "slow_shutdown_ms=60000"})
    app.wait_ready()
    app.signal(signal.SIGINT)
    wait_for(lambda: "stop_requested" in app.log(), what="the first signal to be handled")
    assert app.proc.poll() is None  # still in its (slowed) graceful stop
    app.signal(signal.SIGINT)
    assert app.wait_exit(timeout=5) == 128 + signal.SIGINT
    assert "forced_exit" in app.log()


@pytest.mark.needs_tool
def test_metrics_pass_promtool_check(appliance_factory) -> None:
    promtool = require_tool("promtool", "prometheus")
    app = appliance_factory()
    app.wait_ready()
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result.stdout + result.stderr


def test_metrics_token_file_protects_metrics(appliance_factory, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    cfg = tmp_path / "amoskys.toml"
    cfg.write_text(f'[web]\nmetrics_token_file = "{token}"\n')
    app = appliance_factory("--config", str(cfg))
    app.wait_ready()
    assert http_get(app.web_url + "/metrics")[0] == 401
    assert http_get(app.web_url + "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    assert http_get(app.web_url + "/metrics", {"Authorization": "Bearer s3cret-token"})[0] == 200
    assert "s3cret-token" not in app.log()


def test_bad_config_fails_fast_with_key_path(appliance_factory, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[bus]\nmax_events_per_batch = -1\n")
    app = appliance_factory("--config", str(cfg))
    assert app.wait_exit(timeout=15) == 2
    assert "bus.max_events_per_batch" in app.log() and "(got -1)" in app.log()


@pytest.mark.needs_root
@pytest.mark.needs_tool
def test_unprivileged_run_uses_per_user_data_dir(appliance_factory) -> None:
    require_root("runs as root to drop to `nobody` with setpriv (this user is already unprivileged)")
    setpriv = require_tool("setpriv", "util-linux")
    home = Path(tempfile.mkdtemp(prefix="amoskys-nobody-"))
    try:
        shutil.chown(home, "nobody", "nogroup")
        expected = home / ".local" / "state" / "amoskys"
        env = {"HOME": str(home), "XDG_STATE_HOME": "", "STATE_DIRECTORY": ""}
        prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")
        cfg = home / "amoskys.toml"
        cfg.write_text('[collectors.flow]\ninterface = "lo"\n')  # capture needs CAP_NET_RAW
        app = appliance_factory(
            "--config", str(cfg), data_dir=expected, env=env, prefix=prefix, pass_data_dir=False
        )
        app.wait_ready()
        assert expected.stat().st_uid != 0
        assert (expected / "pki" / "identity.ed25519").exists()
        assert "per-user default" in app.log()
        status = subprocess.run(
            [*prefix, sys.executable, "-m", "amoskys", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
            cwd=ROOT,
        )
        assert status.returncode == 0, status.stderr
        collectors = {c["name"]: c for c in json.loads(status.stdout)["collectors"]}
        assert collectors["flow"]["state"] == "disabled"
        assert collectors["flow"]["reason"] == "needs CAP_NET_RAW"
        assert collectors["heartbeat"]["state"] == "running"
        assert collectors["process"]["state"] == "running" and collectors["process"]["mode"].startswith(
            "polling"
        )
        app.signal(signal.SIGTERM)
        assert app.wait_exit(timeout=5) == 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_certificate_expiry_is_on_metrics_for_appliance_and_agents(appliance_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    amoskys("certs", "init", "--data-dir", str(data))
    amoskys(
        "agents", "enroll", "branch-1", "--out", str(tmp_path / "bundle"), "--data-dir", str(data),
        "--bus-address", "localhost:50051",
    )  # fmt: skip
    app = appliance_factory(data_dir=data)
    app.wait_ready()
    text = http_get(app.web_url + "/metrics")[1].decode()
    expiry = {
        line.split('cert="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("amoskys_pki_cert_expiry_timestamp_seconds{")
    }
    assert set(expiry) == {"ca", "server", "client", "agent:branch-1"}
    now = time.time()
    assert now + 300 * 86400 < expiry["agent:branch-1"] < now + 400 * 86400  # 397 days
    assert expiry["ca"] > expiry["server"]
