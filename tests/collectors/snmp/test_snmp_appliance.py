"""`amoskys run` with an SNMP target: the collector runs under the supervisor and its samples reach the
store; with no targets it is shown disabled, saying why."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from snmp_agents import SnmpSim
from snmp_harness import secret_file

from support import amoskys

pytestmark = [pytest.mark.e2e, pytest.mark.needs_tool]  # the sim fixture needs net-snmp


def snmp_status(data_dir: Path) -> dict:  # type: ignore[type-arg]
    status = json.loads(amoskys("status", "--data-dir", str(data_dir), "--json").stdout)
    return next(c for c in status["collectors"] if c["name"] == "snmp")


def test_samples_reach_the_store_and_no_targets_means_disabled(
    sim: SnmpSim, tmp_path: Path, appliance_factory
) -> None:  # type: ignore[no-untyped-def]
    idle = appliance_factory(data_dir=tmp_path / "idle")
    idle.wait_ready()
    state = snmp_status(tmp_path / "idle")
    assert state["state"] == "disabled" and "no targets configured" in state["reason"]
    idle.signal(signal.SIGTERM)
    assert idle.wait_exit(20) == 0

    config = tmp_path / "amoskys.toml"
    config.write_text(
        "[collectors.snmp]\ninterval_seconds = 1.5\ndeadline_seconds = 1.5\n"
        "[[collectors.snmp.targets]]\n"
        f'name = "sw24"\naddress = "127.0.0.1"\nport = {sim.port}\n'
        f'community_file = "{secret_file(tmp_path, "community", "switch24")}"\n'
    )
    app = appliance_factory("--config", str(config), data_dir=tmp_path / "data")
    app.wait_ready()
    deadline = time.monotonic() + 15
    while snmp_status(tmp_path / "data")["events"] < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    app.signal(signal.SIGTERM)
    assert app.wait_exit(20) == 0
    export = amoskys("events", "export", "--data-dir", str(tmp_path / "data"), "--kind", "snmp")
    bodies = [json.loads(line)["body"] for line in export.stdout.splitlines()]
    assert len(bodies) >= 3 and all(b["target"] == "sw24" for b in bodies)
    # (a first poll may miss its 1.5 s deadline on a busy machine: count the good ones)
    good = [b for b in bodies if b.get("reachable")]
    assert len(good) >= 2, [b.get("error") for b in bodies]
    assert len(good[-1]["interfaces"]) == 24 and "in_bps" in good[-1]["interfaces"][0]
    assert "switch24" not in app.log()
