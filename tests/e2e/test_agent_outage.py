"""An `amoskys agent` with the process collector rides out its appliance's outages (real processes, real
mTLS, the appliance's bus on one port across restarts):

- the appliance SIGKILLed and restarted 3 times while 200 marked processes run: each exec is in the
  appliance's store exactly once, with the agent as its source;
- the appliance down a minute while the outbox is over its small budget: the outbox grows, the oldest
  events go and a LossReport says so upstream; when the appliance is back the outbox drains and the
  lag on the agent's /metrics is 0 again.

(An agent SIGKILLed mid-forward, 5 times: tests/forwarders/test_crash.py.)
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from amoskys.proto import events_pb2

from agent_harness import QUIET_APPLIANCE, Agents, RunningAgent, by_boot, enrol_with_bundles, read_events
from support import RunningAppliance, free_port, require_root, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root]

#: The appliance: its heartbeat only, its bus on a port it keeps, no enrolment port.
APPLIANCE = '[bus]\nenrol_listen = "off"\n' + QUIET_APPLIANCE

#: The agent: heartbeat and process collectors; exec/exit from the proc connector (root).
PROCESS_AGENT = """\
[web]
listen = "127.0.0.1:0"
[forwarders.bus]
batch_wait_ms = 20
call_timeout_seconds = 2.0
[collectors.heartbeat]
interval_seconds = 1.0
[collectors.process]
mode = "netlink"
hash_max_mb = 0
snapshot_interval_seconds = 3600.0
[collectors.host]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[collectors.snmp]
enabled = false
"""
EXEC = events_pb2.ProcessEvent.EXEC


def _spawn(markers: list[str], *, padding: int = 0, wait: bool = True) -> list[subprocess.Popen[bytes]]:
    """Start one short shell per marker, side by side, its argv[0] the marker (plus `padding` bytes of
    arguments it ignores), and (`wait`) wait for them all. It runs two commands, so it stays itself
    (no exec of the last one) while the collector reads its argv."""
    shell = shutil.which("sh")
    assert shell
    pad = ["x" * 8000] * (padding // 8000)
    procs = [
        subprocess.Popen(
            [m, "-c", "sleep 0.2; :", *pad],
            executable=shell,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for m in markers
    ]
    if wait:
        _reap(procs)
    return procs


def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        assert proc.wait(timeout=30) == 0


def _execs(db: Path, run: str) -> list[tuple[str, str]]:
    """(source, marker) of every stored exec whose argv[0] is one of this run's markers."""
    out = []
    for row in read_events(db, kind="process"):
        event = row.parse().process
        if event.kind == EXEC and event.argv and event.argv[0].startswith(run):
            out.append((row.source, event.argv[0]))
    return out


def _soon(predicate: Callable[[], object], within: float) -> bool:
    """Poll `predicate` for at most `within` seconds; whether it came true (not an assertion)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
    return True


def _no_chain_fork(db: Path) -> bool:
    """No chain_fork Alert in the appliance's store (they outlive its restarts, unlike its metrics)."""
    return not [r for r in read_events(db, kind="alert") if r.parse().alert.rule == "bus.chain_fork"]


def _process_running(agent: RunningAgent) -> bool:
    return {c["name"]: c["state"] for c in agent.status()["collectors"]}.get("process") == "running"


def _start(appliance_factory, tmp_path: Path, port: int) -> RunningAppliance:  # type: ignore[no-untyped-def]
    config = tmp_path / "appliance.toml"
    config.write_text(APPLIANCE)
    return appliance_factory("--config", str(config), "--bus-listen", f"127.0.0.1:{port}")  # type: ignore[no-any-return]


def test_each_exec_arrives_once_while_the_appliance_is_killed_and_restarted_three_times(
    appliance_factory, tmp_path: Path
) -> None:
    require_root("the process collector's proc connector needs root (CAP_NET_ADMIN)")
    port = free_port()
    app = _start(appliance_factory, tmp_path, port)
    app.wait_ready()
    identity = enrol_with_bundles(app, tmp_path, ["edge-proc"])["edge-proc"]
    run = f"amoskys-marker-{uuid.uuid4().hex[:8]}-"
    markers = [f"{run}{i:03d}" for i in range(200)]
    chunks = [markers[i : i + 34] for i in range(0, 200, 34)]  # 6 chunks: up, down, up, down, up, down
    with Agents(tmp_path) as agents:
        agent = agents.start("edge-proc", identity, f"127.0.0.1:{port}", config=PROCESS_AGENT)
        agent.wait_ready()
        wait_for(lambda: _process_running(agent), timeout=20, what="the agent's process collector")
        for cycle in range(3):
            running = _spawn(chunks[2 * cycle], wait=False)
            # aim the kill at the agent forwarding these execs (its batches wait at most 20 ms)
            _soon(lambda: agent.metric("amoskys_forwarder_lag_events", sink="bus"), within=2.0)
            app.signal(signal.SIGKILL)
            app.wait_exit(10)
            _reap(running)
            _spawn(chunks[2 * cycle + 1])  # the appliance is down: into the outbox
            app = _start(appliance_factory, tmp_path, port)
            app.wait_ready()
        db = app.data_dir / "events.db"
        wait_for(lambda: len(_execs(db, run)) >= 200, timeout=60, what="every marked exec at the appliance")
        execs = _execs(db, run)
        assert sorted(m for _, m in execs) == markers  # each once
        assert {s for s, _ in execs} == {"edge-proc"}
        assert len(by_boot(read_events(db, source="edge-proc"))) == 1  # one agent boot throughout
        assert _no_chain_fork(db)
        assert agent.proc.poll() is None
        assert agent.stop() == 0


def test_a_minute_down_past_the_outbox_budget_drops_the_oldest_reports_it_and_drains(
    appliance_factory, tmp_path: Path
) -> None:
    require_root("the process collector's proc connector needs root (CAP_NET_ADMIN)")
    port = free_port()
    app = _start(appliance_factory, tmp_path, port)
    app.wait_ready()
    identity = enrol_with_bundles(app, tmp_path, ["edge-small"])["edge-small"]
    small = PROCESS_AGENT + "[store]\nhigh_water_mb = 1\nhard_cap_mb = 2\n"
    run = f"amoskys-marker-{uuid.uuid4().hex[:8]}-"
    with Agents(tmp_path) as agents:
        agent = agents.start("edge-small", identity, f"127.0.0.1:{port}", config=small)
        agent.wait_ready()
        wait_for(lambda: _process_running(agent), timeout=20, what="the agent's process collector")
        wait_for(
            lambda: (
                agent.metric("amoskys_forwarder_lag_events", sink="bus") == 0
                and read_events(app.data_dir / "events.db", source="edge-small", kind="heartbeat")
            ),
            timeout=20,
            what="the agent forwarding",
        )

        app.signal(signal.SIGKILL)
        app.wait_exit(10)
        down = time.monotonic()
        delivered = max(r.source_seq for r in read_events(app.data_dir / "events.db", source="edge-small"))
        # execs with 8 KB of argv each, until the outbox passes its 2 MiB cap and drops the oldest of
        # what it did not send yet (the rows it sent go first, and are not lost) — marked execs among
        # them: what else the host ran meanwhile (exits, other programs) may be all the cap took at
        # first. A marked exec seen in the outbox and gone from it later was dropped (the appliance is
        # down: nothing is sent); the collector reports side-by-side execs in any order. A round of 20
        # (each exec stored as its event, its history row and its process-table row while it runs, plus the WAL's
        # copy) stays well under the cap, so the outbox holds several rounds and a marked exec is seen
        # before it goes: with 32 KB each, one round could fill the cap and go before it was looked at.
        n = 0
        seen: set[str] = set()
        held: set[str] = set()

        def marker_dropped() -> bool:
            held.clear()
            held.update(m for _, m in _execs(agent.db, run))
            seen.update(held)
            return bool(seen - held)

        while (lost := agent.metric("amoskys_store_events_lost_total", reason="hard_cap") or 0) < 40 or (
            not marker_dropped()
        ):
            assert n < 2000, (
                f"the outbox never reached its hard cap: {lost} lost, {len(seen)} marked execs seen in "
                f"the outbox, {len(held)} held now"
            )
            _spawn([f"{run}{i:04d}" for i in range(n, n + 20)], padding=8_000)
            n += 20
        lag = agent.metric("amoskys_forwarder_lag_events", sink="bus")
        assert lag and lag > 20, lag  # the outbox grew
        wait_for(lambda: time.monotonic() - down >= 60, timeout=90, what="a minute of outage")
        assert (agent.metric("amoskys_forwarder_lag_seconds", sink="bus") or 0) > 0
        last_before = max(r.source_seq for r in read_events(agent.db, source="edge-small"))

        app = _start(appliance_factory, tmp_path, port)
        app.wait_ready()
        wait_for(
            lambda: (
                agent.metric("amoskys_forwarder_lag_events", sink="bus") == 0
                and agent.metric("amoskys_forwarder_lag_seconds", sink="bus") == 0
            ),
            timeout=60,
            what="the outbox drained: lag 0 on the agent's /metrics",
        )
        db = app.data_dir / "events.db"
        reports = [r.parse().loss for r in read_events(db, source="edge-small", kind="loss")]
        assert reports and {r.reason for r in reports} == {"hard_cap"}
        markers = [m for _, m in _execs(db, run)]
        assert len(markers) == len(set(markers)) < n  # none doubled; some dropped at the cap
        # the oldest of what was not sent went: the gaps lie after what the appliance had before the
        # outage and before the newest the agent held through it, which arrived; the LossReports
        # account for every gap
        boots = by_boot(read_events(db, source="edge-small"))
        assert len(boots) == 1, list(boots)  # the agent's one boot: its collectors' and its store's events
        have = set(*boots.values())
        missing = [s for s in range(1, max(have) + 1) if s not in have]
        assert missing and delivered < min(missing) and max(missing) < last_before <= max(have)
        assert sum(r.count for r in reports) >= len(missing)
        assert _no_chain_fork(db)
        assert agent.stop() == 0
