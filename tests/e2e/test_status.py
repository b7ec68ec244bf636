"""`amoskys status` and collector control against a running appliance; heartbeats reach the store."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from support import amoskys, wait_for

pytestmark = pytest.mark.e2e


def _status(data_dir: Path) -> dict:
    return json.loads(amoskys("status", "--json", "--data-dir", str(data_dir)).stdout)


def _collector(data_dir: Path, name: str) -> dict:
    return next(c for c in _status(data_dir)["collectors"] if c["name"] == name)


def _heartbeats(data_dir: Path) -> list[dict]:
    out = amoskys("events", "export", "--kind", "heartbeat", "--data-dir", str(data_dir)).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_status_and_collector_control_against_a_running_appliance(appliance_factory, tmp_path: Path) -> None:
    cfg = tmp_path / "amoskys.toml"
    cfg.write_text('[appliance]\nname = "edge-test"\n[collectors.heartbeat]\ninterval_seconds = 1\n')
    app = appliance_factory("--config", str(cfg))
    app.wait_ready()
    data = app.data_dir

    status = _status(data)
    assert status["appliance"]["name"] == "edge-test", status
    wait_for(lambda: _collector(data, "heartbeat")["state"] == "running", what="heartbeat running")
    table = amoskys("status", "--data-dir", str(data)).stdout
    assert "heartbeat" in table and "running" in table

    # heartbeats are committed to the store, stamped by the appliance, in sequence
    beats = wait_for(
        lambda: (lambda b: b if len(b) >= 2 else None)(_heartbeats(data)), timeout=15, what="2 heartbeats"
    )
    assert all(b["source"] == "edge-test" for b in beats)
    assert beats[0]["body"]["mode"] == "appliance" and beats[0]["body"]["version"]
    assert len({b["boot_id"] for b in beats}) == 1
    seqs = [int(b["source_seq"]) for b in beats]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    amoskys("collectors", "stop", "heartbeat", "--data-dir", str(data))
    assert _collector(data, "heartbeat")["state"] == "stopped"
    amoskys("collectors", "start", "heartbeat", "--data-dir", str(data))
    wait_for(lambda: _collector(data, "heartbeat")["state"] == "running", what="heartbeat restarted")

    unknown = amoskys("collectors", "stop", "nosuch", "--data-dir", str(data), check=False)
    assert unknown.returncode == 1 and "nosuch" in unknown.stderr  # nothing to act on

    app.signal(signal.SIGTERM)
    assert app.wait_exit(timeout=5) == 0
    gone = amoskys("status", "--data-dir", str(data), check=False)
    assert gone.returncode == 1 and "no appliance is running" in gone.stderr


def test_control_socket_is_private(appliance_factory) -> None:
    app = appliance_factory()
    app.wait_ready()
    sock = app.data_dir / "control.sock"
    assert sock.is_socket() and sock.stat().st_mode & 0o777 == 0o600
