"""A fleet: 20 `amoskys agent` processes (heartbeat and host collectors, 1 s intervals) feeding one
`amoskys run` appliance over real mTLS for a minute. Some are enrolled with one-time tokens (their keys
made on the endpoint), the others with bundles. Every agent's events arrive in sequence and none is
lost; the Agents API lists all 20 active. Then one is revoked: the bus answers PERMISSION_DENIED, the
agent keeps collecting into its outbox, and its log and `amoskys status --agent` say why, once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent_harness import (
    QUIET_APPLIANCE,
    Agents,
    RunningAgent,
    by_boot,
    contiguous,
    enrol_with_bundles,
    enrol_with_tokens,
    read_events,
)
from support import amoskys, http_get, wait_for

pytestmark = pytest.mark.e2e

FLEET = 20
BY_TOKEN = 5  # enrolled with `amoskys agents token` + `amoskys agent enroll`; the rest with bundles
MINUTE = 60.0
#: Heartbeats each agent must have delivered after the minute: one a second, less what a loaded
#: machine (20 agents and the appliance on two cores) may delay past the end of the minute.
MIN_BEATS = 50


def test_twenty_agents_feed_one_appliance_in_sequence_and_a_revoked_one_keeps_its_data(
    appliance_factory, tmp_path: Path
) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text(QUIET_APPLIANCE)
    app = appliance_factory("--config", str(config))
    app.wait_ready()
    bus = f"127.0.0.1:{app.bus_port}"
    names = [f"edge-{i:02d}" for i in range(FLEET)]
    identities = {
        **enrol_with_tokens(app, tmp_path, names[:BY_TOKEN]),
        **enrol_with_bundles(app, tmp_path, names[BY_TOKEN:]),
    }
    api_token = amoskys("tokens", "issue", "admin", "--days", "1", "--data-dir", str(app.data_dir))
    auth = {"Authorization": f"Bearer {api_token.stdout.split()[0]}"}

    def listed() -> dict[str, dict]:  # type: ignore[type-arg]
        status, body = http_get(app.web_url + "/api/v1/agents", auth)
        assert status == 200, body
        return {a["name"]: a for a in json.loads(body)["items"]}

    with Agents(tmp_path) as agents:
        fleet = [agents.start(name, identities[name], bus) for name in names]
        wait_for(lambda: all([a.poll_ready() for a in fleet]), timeout=90, what="all 20 agents ready")
        began = time.monotonic()

        def all_active() -> bool:
            items = listed()
            return all(
                n in items and items[n]["revoked_ns"] is None and items[n]["silent"] is False for n in names
            )

        wait_for(all_active, timeout=30, what="the Agents API to list all 20 active")
        items = listed()
        assert {items[n]["role"] for n in names} == {"agent"}
        assert all(items[n]["version"] and items[n]["cert_expires"] for n in names)

        # the minute: every agent beats once a second into the appliance
        def beats(db: Path) -> dict[str, int]:
            counts = dict.fromkeys(names, 0)
            for row in read_events(db, kind="heartbeat"):
                if row.source in counts:
                    counts[row.source] += 1
            return counts

        wait_for(
            lambda: (
                time.monotonic() - began >= MINUTE
                and min(beats(app.data_dir / "events.db").values()) >= MIN_BEATS
            ),
            timeout=MINUTE + 60,
            what=f"a minute, and {MIN_BEATS} heartbeats of every agent at the appliance",
        )
        for agent in fleet:
            assert_delivered_in_sequence(app.data_dir / "events.db", agent)
        assert all(a.proc.poll() is None for a in fleet)

        # revoked: the bus answers PERMISSION_DENIED; the agent keeps its data and says so once
        revoked = fleet[0]  # one enrolled with a token
        done = amoskys("agents", "revoke", revoked.name, "--data-dir", str(app.data_dir))
        assert "the running appliance confirmed" in done.stdout
        stopped = wait_for(
            lambda: (lambda f: f if f["state"] == "stopped" else None)(revoked.forwarder()),
            timeout=30,
            what="the revoked agent's forwarder to stop",
        )
        assert "PERMISSION_DENIED" in stopped["reason"]
        delivered = len(read_events(app.data_dir / "events.db", source=revoked.name))
        wait_for(
            lambda: (
                len(read_events(revoked.db, source=revoked.name, kind="heartbeat"))
                >= len(read_events(app.data_dir / "events.db", source=revoked.name, kind="heartbeat")) + 3
            ),
            timeout=30,
            what="the revoked agent to keep collecting into its outbox",
        )
        assert revoked.proc.poll() is None  # still running, only forwarding stopped
        assert len(read_events(app.data_dir / "events.db", source=revoked.name)) == delivered
        assert_delivered_in_sequence(app.data_dir / "events.db", revoked)
        kept = read_events(revoked.db, source=revoked.name)
        assert len(kept) > delivered  # nothing deleted: what was not sent stays in the outbox
        table = amoskys("status", "--agent", "--data-dir", str(revoked.data_dir)).stdout
        assert "PERMISSION_DENIED" in table and "stopped" in table
        stops = [e for e in revoked.log_events() if e.get("event") == "forwarder_stopped"]
        assert len(stops) == 1 and "PERMISSION_DENIED" in json.dumps(stops[0]), stops
        assert listed()[revoked.name]["revoked_ns"] is not None
        assert {f["state"] for f in (a.forwarder() for a in fleet[1:3])} <= {"idle", "forwarding"}

        for agent in fleet:
            assert agent.stop() == 0, agent.log()
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200
    assert "amoskys_bus_chain_forks_total 0.0" in body.decode()


def assert_delivered_in_sequence(appliance_db: Path, agent: RunningAgent) -> None:
    """What the appliance holds of `agent` is, per boot, source_seq 1, 2, 3 ... without a gap or a
    repeat, each event byte for byte as the agent's outbox holds it (the outbox, read after the
    appliance, may be ahead by the events still on their way)."""
    upstream = read_events(appliance_db, source=agent.name)
    outbox = read_events(agent.db, source=agent.name)
    got, have = by_boot(upstream), by_boot(outbox)
    assert list(got) == list(have) and len(have) == 1, f"{agent.name}: boots {list(got)} vs {list(have)}"
    for boot, seqs in got.items():
        assert contiguous(seqs), f"{agent.name}: a gap or a repeat in boot {boot}: {seqs}"
        assert contiguous(have[boot])
    sent = {(r.boot_id, r.source_seq): r.envelope for r in outbox}
    assert all(sent.get((r.boot_id, r.source_seq)) == r.envelope for r in upstream), agent.name
    assert {r.kind for r in upstream} >= {"heartbeat", "host"}
