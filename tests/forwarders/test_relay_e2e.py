"""Two `amoskys run` appliances: a site appliance with `[forwarders.bus]` on and a relay identity feeds
a regional one; `amoskys status` shows its forwarder."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from support import amoskys, wait_for

pytestmark = pytest.mark.e2e


def _exported(data_dir: Path, source: str) -> list[dict]:
    out = amoskys("events", "export", "--source", source, "--data-dir", str(data_dir)).stdout
    return [json.loads(line) for line in out.splitlines()]


def _forwarder(data_dir: Path) -> dict:
    status = json.loads(amoskys("status", "--json", "--data-dir", str(data_dir)).stdout)
    return status["appliance"]["forwarders"][0]


def test_a_site_appliance_forwards_upward_with_a_relay_identity(appliance_factory, tmp_path: Path) -> None:
    regional_cfg = tmp_path / "regional.toml"
    regional_cfg.write_text('[appliance]\nname = "regional"\n')
    regional = appliance_factory("--config", str(regional_cfg), data_dir=tmp_path / "regional")
    regional.wait_ready()
    bundle = tmp_path / "relay-bundle"
    amoskys(
        "agents", "enroll", "site-relay", "--role", "relay", "--out", str(bundle),
        "--bus-address", f"127.0.0.1:{regional.bus_port}", "--data-dir", str(regional.data_dir),
    )  # fmt: skip
    site_cfg = tmp_path / "site.toml"
    site_cfg.write_text(
        '[appliance]\nname = "site"\n[collectors.heartbeat]\ninterval_seconds = 1\n'
        f'[forwarders.bus]\nenabled = true\nidentity = "{bundle}"\nbatch_wait_ms = 20\n'
    )
    site = appliance_factory("--config", str(site_cfg), data_dir=tmp_path / "site")
    site.wait_ready()

    beats = wait_for(
        lambda: [e for e in _exported(regional.data_dir, "site") if e["kind"] == "heartbeat"][1:],
        timeout=20,
        what="the site's heartbeats at the regional appliance",
    )
    assert {e["origin"] for e in beats} == {"site-relay"}  # through the relay identity
    forwarder = wait_for(
        lambda: (lambda f: f if f["sent"] >= 2 and f["lag_events"] == 0 else None)(_forwarder(site.data_dir)),
        timeout=20,
        what="the forwarder caught up",
    )
    assert forwarder["name"] == "bus" and forwarder["address"] == f"127.0.0.1:{regional.bus_port}"
    assert forwarder["state"] in ("idle", "forwarding") and forwarder["identity"] == "site-relay"
    table = amoskys("status", "--data-dir", str(site.data_dir)).stdout
    assert "FORWARDER" in table and f"bus -> 127.0.0.1:{regional.bus_port}" in table

    for app in (site, regional):
        app.signal(signal.SIGTERM)
        assert app.wait_exit(10) == 0
