"""The built-in detectors over a real store and bus: findings become alert rows with the detector's
rule id, title and level, repeats count on one alert, flows are judged once (at their start for this
appliance's capture, on their first record for an agent's), and what the store knew at start counts."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from amoskys.config import DetectionsConfig, ExecPathConfig, IocConfig
from amoskys.control_service import Actor
from amoskys.detections.builtin.ioc import Ioc
from amoskys.detections.desk import AlertDesk, UnknownRuleError
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.store.alerts import AddSuppression, Suppression

from .harness import NAME, builtin
from .recorded import exec_of, flow_record
from support import eventually


def _exec(stamper: EnvelopeStamper, exe: str, pid: int) -> ev.Envelope:
    e = exec_of(stamper, exe, [exe, "-x"], pid=pid)
    e.ts_ns = stamper.stamp(ev.Envelope()).ts_ns  # now: the alert is within its window
    return e


async def test_an_exec_from_tmp_raises_one_alert_with_the_builtin_rule_and_repeats_count_on_it(
    tmp_path: Path,
) -> None:
    async with builtin(tmp_path) as d:
        await d.publish([_exec(d.stamper, "/usr/bin/ls", 10)])
        first = _exec(d.stamper, "/tmp/dropper", 11)
        await d.publish([first])
        [row] = await eventually(lambda: d.alerts("amoskys.exec_path"), what="the alert row")
        second = _exec(d.stamper, "/dev/shm/x", 12)
        await d.publish([second])
        await eventually(
            lambda: _count(d, "amoskys.exec_path", 2), what="the repeat counted on the same alert"
        )
        rows = await d.alerts()
    assert [r["rule_id"] for r in rows] == ["amoskys.exec_path"]  # ls raised nothing
    assert row["rule"] == "amoskys.exec_path" and row["level"] == "high" and row["host"] == NAME
    assert row["title"] == "Program run from a temporary directory or a deleted file"
    assert row["summary"] == "exec from /tmp: /tmp/dropper -x"
    assert json.loads(row["related_event_ids"]) == [first.event_id]
    assert json.loads(row["attributes"])["exe"] == "/tmp/dropper"
    assert json.loads(rows[0]["related_event_ids"]) == [first.event_id, second.event_id]
    assert d.metric("amoskys_detections_builtin_findings_total", rule="amoskys.exec_path") == 2


async def _count(d, rule_id: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    rows = await d.alerts(rule_id)
    return bool(rows) and rows[0]["count"] == n


async def test_a_suppressed_finding_raises_nothing(tmp_path: Path) -> None:
    async def suppress(store, stamper):  # type: ignore[no-untyped-def]
        now = stamper.stamp(ev.Envelope()).ts_ns
        await store.submit_ops(
            [
                AddSuppression(
                    Suppression(
                        "s1", "amoskys.exec_path", "", "exe", "/tmp/known", "ours", "admin", now, now + 10**12
                    )
                )
            ]
        )

    async with builtin(tmp_path, before=suppress) as d:
        await d.publish([_exec(d.stamper, "/tmp/known", 10), _exec(d.stamper, "/tmp/unknown", 11)])
        [row] = await eventually(lambda: d.alerts("amoskys.exec_path"), what="the unsuppressed alert")
        await eventually(
            lambda: d.metric("amoskys_detections_builtin_suppressed_total") == 1, what="one suppressed"
        )
    assert json.loads(row["attributes"])["exe"] == "/tmp/unknown"


def _note(src: str, dst: str, dport: int, ts: int) -> tuple[bytes, int, int, int]:
    key = (
        socket.inet_aton(src) + socket.inet_aton(dst) + (40000).to_bytes(2, "big") + dport.to_bytes(2, "big")
    )
    return key, 6, 0, ts


async def test_flow_starts_raise_a_scan_and_this_appliances_flow_records_are_not_judged_again(
    tmp_path: Path,
) -> None:
    async with builtin(tmp_path) as d:
        assert d.flow_starts.wanted
        now = d.stamper.stamp(ev.Envelope()).ts_ns
        d.flow_starts.offer(
            "eth1", [_note("10.9.9.9", "10.0.0.5", port, now + port) for port in range(1, 120)]
        )
        [row] = await eventually(lambda: d.alerts("amoskys.port_scan"), what="the scan alert")
        # the records of those flows, when they end, are not judged a second time
        await d.publish([flow_record(d.stamper, "10.9.9.9", "10.0.0.5", p) for p in range(1, 120)])
        # a LossReport after them: once its alert is stored, the records before it were seen
        await d.publish([d.stamper.stamp(ev.Envelope(loss=ev.LossReport(what="events", count=1)))])
        await eventually(lambda: d.alerts("amoskys.loss"), what="the marker's alert")
        assert d.metric("amoskys_detections_flow_starts_total") == 119
    assert row["host"] == NAME and row["count"] == 1 and json.loads(row["related_event_ids"]) == []
    attributes = json.loads(row["attributes"])
    assert (
        attributes["scanner"] == "10.9.9.9"
        and attributes["ports"] == "100"
        and attributes["interface"] == "eth1"
    )
    assert d.metric("amoskys_detections_builtin_findings_total", rule="amoskys.port_scan") == 1


async def test_an_agents_flow_records_are_judged_once_per_flow(tmp_path: Path) -> None:
    listed = tmp_path / "ioc.txt"
    listed.write_text("203.0.113.7\n")
    config = DetectionsConfig(ioc=IocConfig(ioc_files=(str(listed),)))
    async with builtin(tmp_path, config) as d:
        agent = EnvelopeStamper("agent-1")
        interim = flow_record(agent, "10.0.0.5", "203.0.113.7", 443, final=False)
        final = flow_record(agent, "10.0.0.5", "203.0.113.7", 443)
        for e in (interim, final):
            e.ts_ns = d.stamper.stamp(ev.Envelope()).ts_ns
        await d.publish([interim, final])
        [row] = await eventually(lambda: d.alerts("amoskys.ioc"), what="the IOC alert")
        other = flow_record(agent, "10.0.0.5", "203.0.113.7", 443, sport=40001)
        other.ts_ns = d.stamper.stamp(ev.Envelope()).ts_ns
        await d.publish([other])
        await eventually(lambda: _count(d, "amoskys.ioc", 2), what="a second flow counted")
    assert row["host"] == "agent-1" and json.loads(row["related_event_ids"]) == [interim.event_id]
    assert d.metric("amoskys_detections_builtin_findings_total", rule="amoskys.ioc") == 2
    assert isinstance(next(x for x in d.runner.detectors if x.name == "ioc"), Ioc)


async def test_an_agent_already_silent_at_start_is_reported_from_its_stored_heartbeat(tmp_path: Path) -> None:
    agent = EnvelopeStamper("agent-1")
    beat = agent.stamp(ev.Envelope(heartbeat=ev.Heartbeat(interval_seconds=0.05)))

    async def stored(store, stamper):  # type: ignore[no-untyped-def]
        await store.submit([Record.from_envelope(beat)], local=True)

    async with builtin(tmp_path, tick_seconds=0.05, before=stored) as d:
        [row] = await eventually(lambda: d.alerts("amoskys.silent"), what="the silent alert")
    assert row["host"] == "agent-1" and json.loads(row["related_event_ids"]) == [beat.event_id]
    assert row["level"] == "high"


async def test_with_detections_off_nothing_runs(tmp_path: Path) -> None:
    async with builtin(tmp_path, DetectionsConfig(enabled=False)) as d:
        assert not d.runner.active and not d.flow_starts.wanted
        await d.publish([_exec(d.stamper, "/tmp/x", 1)])
        await d.store.submit_ops(())
        assert await d.alerts() == []


async def test_exec_path_off_leaves_execs_alone(tmp_path: Path) -> None:
    config = DetectionsConfig(exec_path=ExecPathConfig(enabled=False))
    async with builtin(tmp_path, config) as d:
        await d.publish([_exec(d.stamper, "/tmp/x", 1)])
        loss = d.stamper.stamp(ev.Envelope(loss=ev.LossReport(what="events", where="store", count=3)))
        await d.publish([loss])
        [row] = await eventually(lambda: d.alerts("amoskys.loss"), what="the loss alert")
        assert await d.alerts("amoskys.exec_path") == []
    assert row["summary"] == "3 events lost in store"


async def test_the_alert_desk_switches_a_builtin_rule_off_and_a_resolved_alert_opens_anew(
    tmp_path: Path,
) -> None:
    async with builtin(tmp_path) as d:
        desk = AlertDesk(d.store, d.bus, d.stamper, builtin=d.runner)
        admin = Actor("admin", "127.0.0.1")
        await d.publish([_exec(d.stamper, "/tmp/a", 1)])
        [first] = await eventually(lambda: d.alerts("amoskys.exec_path"), what="the first alert")
        await desk.triage(admin, first["store_seq"], "resolved")
        await d.publish([_exec(d.stamper, "/tmp/b", 2)])
        rows = await eventually(
            lambda: _n_alerts(d, "amoskys.exec_path", 2), what="a new alert after resolving"
        )
        await desk.set_rule_enabled(admin, "amoskys.exec_path", False)
        await d.publish([_exec(d.stamper, "/tmp/c", 3)])
        await eventually(
            lambda: d.metric("amoskys_detections_builtin_suppressed_total") == 1, what="the finding held back"
        )
        with pytest.raises(UnknownRuleError):
            await desk.set_rule_enabled(admin, "amoskys.no_such_detector", False)
    assert [r["count"] for r in rows] == [1, 1]


async def _n_alerts(d, rule_id: str, n: int):  # type: ignore[no-untyped-def]
    rows = await d.alerts(rule_id)
    return rows if len(rows) == n else None
