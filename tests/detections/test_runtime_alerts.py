"""The alert model in the store: triage, suppression and rule switches round-trip through the desk (each
audited); a triage that did not come from this appliance changes nothing; retention keeps unresolved
alerts and their evidence, and lets resolved ones go."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from amoskys.config import StoreConfig
from amoskys.control_service import Actor, BadRequestError
from amoskys.detections.desk import UnknownAlertError, UnknownRuleError, UnknownSuppressionError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store
from amoskys.store import alerts as rows

from .runtime_harness import CHATTR, DOWNLOAD, NAME, detections, download, exec_event
from support import eventually

ALICE = Actor("alice", "192.0.2.9")
S = 1_000_000_000
HOUR = 3600 * S


async def test_triage_and_suppression_round_trip_through_the_desk(tmp_path: Path) -> None:
    async with detections(tmp_path) as d:
        first = download(d.stamper, 100)
        await d.publish(first)
        [row] = await eventually(d.alerts, what="the alert")
        await d.desk.triage(ALICE, row["store_seq"], "acknowledged", "looking")
        [row] = await d.alerts()
        assert (row["state"], row["state_by"], row["state_note"]) == ("acknowledged", "alice", "looking")
        assert row["state_ns"] > 0

        # the same command line again, suppressed on this host: no count, one hit
        sid = await d.desk.suppress(
            ALICE,
            rule_id=DOWNLOAD,
            host=NAME,
            field="CommandLine",
            value="curl -s -o /tmp/p http://x/p",
            expires_ns=time.time_ns() + HOUR,
            reason="the nightly job",
        )
        await d.publish(download(d.stamper, 110))
        await eventually(lambda: _hits(d, sid, 1), what="the suppression to hold a match back")
        assert d.metric("amoskys_detections_suppressed_total") == 1
        other = download(d.stamper, 120, url="http://y/q")  # another command line: counted
        await d.publish(other)
        await eventually(lambda: _count_is(d, 2), what="the unsuppressed repeat")

        # resolved: the next match opens a new alert
        await d.desk.triage(ALICE, row["store_seq"], "resolved")
        await d.publish(download(d.stamper, 130, url="http://z/r"))
        got = await eventually(lambda: _n_rows(d, 2), what="a new alert after the resolution")
        assert [r["state"] for r in got] == ["resolved", "new"]

        # lifted: the suppressed command line counts again
        await d.desk.unsuppress(ALICE, sid)
        await d.publish(download(d.stamper, 140))
        await eventually(lambda: _count_is(d, 2, index=1), what="the match after the suppression was lifted")
        [active] = await d.desk.suppressions(active=False)
        assert active.removed_by == "alice" and active.hits == 1 and active.reason == "the nightly job"
        assert await d.desk.suppressions() == []

        # a rule switched off matches nothing until switched on again
        await d.desk.set_rule_enabled(ALICE, CHATTR, False)
        assert not next(r for r in d.desk.rules().items if r.rule_id == CHATTR).enabled
        assert d.metric("amoskys_detections_rules", status="disabled") == 1
        chattr = [exec_event(d.stamper, 150, 1, "/usr/bin/chattr", ["chattr", "-i", "/etc/x"])]
        await d.publish(chattr)
        await eventually(lambda: d.runtime.position >= d.store.last_seq, what="the pass over the chattr exec")
        await d.store.submit_ops(())  # what the pass published is committed by then
        assert not [r for r in await d.alerts() if r["rule_id"] == CHATTR]
        await d.desk.set_rule_enabled(ALICE, CHATTR, True)
        await d.publish([exec_event(d.stamper, 151, 1, "/usr/bin/chattr", ["chattr", "-i", "/etc/x"])])
        await eventually(lambda: _rule_rows(d, CHATTR), what="the chattr alert once switched on")

        # what the desk refuses, and nothing of it is audited
        with pytest.raises(BadRequestError):
            await d.desk.triage(ALICE, row["store_seq"], "closed")
        with pytest.raises(UnknownAlertError):
            await d.desk.triage(ALICE, 999_999, "resolved")
        with pytest.raises(BadRequestError):
            await d.desk.suppress(
                ALICE, rule_id=DOWNLOAD, host="", field="Image", value="/x", expires_ns=time.time_ns() - 1
            )
        with pytest.raises(BadRequestError):
            await d.desk.suppress(
                ALICE, rule_id=DOWNLOAD, host="", field="Image;--", value="/x", expires_ns=time.time_ns() + S
            )
        with pytest.raises(UnknownSuppressionError):
            await d.desk.unsuppress(ALICE, sid)
        with pytest.raises(UnknownRuleError):
            await d.desk.set_rule_enabled(ALICE, "no-such-rule", False)
        audit = await d.query("SELECT actor, action, remote_addr FROM audit ORDER BY store_seq")
    assert [a[1] for a in audit] == [
        "alert_triage",
        "alert_suppress",
        "alert_triage",
        "alert_unsuppress",
        "rule_disabled",
        "rule_enabled",
    ]
    assert {(a[0], a[2]) for a in audit} == {("alice", "192.0.2.9")}


async def test_a_triage_or_follow_up_from_another_source_changes_nothing(tmp_path: Path) -> None:
    async with detections(tmp_path) as d:
        await d.publish(download(d.stamper, 100))
        [row] = await eventually(d.alerts, what="the alert")
        forged = EnvelopeStamper("agent-7").stamp(
            ev.Envelope(
                audit=ev.AuditEvent(
                    actor="mallory",
                    action=rows.TRIAGE_ACTION,
                    target=f"alert:{row['store_seq']}",
                    success=True,
                    detail=json.dumps({"alert_id": row["alert_id"], "state": "resolved"}),
                )
            )
        )
        bumped = EnvelopeStamper("agent-7").stamp(
            ev.Envelope(alert=ev.Alert(rule_id=DOWNLOAD, alert_id=row["alert_id"], count=99, host=NAME))
        )
        await d.store.submit(
            [Record.from_envelope(e, origin="agent-7") for e in (forged, bumped)], local=True
        )
        [row] = await d.alerts()
    assert row["state"] == "new" and row["count"] == 1


async def test_retention_keeps_unresolved_alerts_and_their_evidence(tmp_path: Path) -> None:
    clock = _Clock()
    store = await Store.open(
        tmp_path / "events.db", StoreConfig(retention_hours=1), Metrics(), clock_ns=clock
    )
    task = asyncio.create_task(store.run())
    try:
        box = EnvelopeStamper("box")
        kept, resolved = download(box, 10, ts_ns=clock.now), download(box, 20, ts_ns=clock.now)
        alerts = [_opening(box, kept[1], "kept"), _opening(box, resolved[1], "resolved")]
        triage = box.stamp(
            ev.Envelope(
                audit=ev.AuditEvent(
                    actor="alice",
                    action=rows.TRIAGE_ACTION,
                    success=True,
                    detail=json.dumps({"alert_id": alerts[1].event_id, "state": "resolved"}),
                )
            ),
            ts_ns=clock.now,
        )
        await store.submit([Record.from_envelope(e) for e in [*kept, *resolved, *alerts, triage]], local=True)
        # a load test's alert (a loadgen identity's: synthetic) is never kept past retention
        loadgen = EnvelopeStamper("loadgen-1")
        load = download(loadgen, 30, ts_ns=clock.now)
        await store.submit(
            [Record.from_envelope(e, synthetic=True) for e in [*load, _opening(loadgen, load[1], "load")]],
            local=True,
        )
        clock.now += 2 * HOUR
        report = await store.maintain()
        assert report.retention_deleted >= 9  # the execs and the Alert events (the tip may stay)
        left, evidence, events = await asyncio.to_thread(_rows_left, tmp_path / "events.db")
        assert left == [(alerts[0].event_id, "new")] and events == 0
        [(source, event_id, envelope)] = evidence
        assert (source, event_id) == ("box", kept[1].event_id)
        assert ev.Envelope.FromString(envelope).process.argv == kept[1].process.argv
        # once resolved, the alert and its kept evidence go with the next retention pass
        resolve = box.stamp(
            ev.Envelope(audit=ev.AuditEvent(actor="alice", action=rows.TRIAGE_ACTION, success=True))
        )
        resolve.audit.detail = json.dumps({"alert_id": alerts[0].event_id, "state": "resolved"})
        await store.submit([Record.from_envelope(resolve)], local=True)
        clock.now += 2 * HOUR
        await store.maintain()
        assert await asyncio.to_thread(_rows_left, tmp_path / "events.db") == ([], [], 0)
    finally:
        await store.close()
        await task


def _rows_left(db: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, bytes]], int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        left = conn.execute("SELECT alert_id, state FROM alerts").fetchall()
        evidence = conn.execute("SELECT source, event_id, envelope FROM alert_evidence").fetchall()
        events = conn.execute("SELECT COUNT(*) FROM events WHERE kind != 'audit'").fetchone()[0]
    finally:
        conn.close()
    return left, evidence, events


# ---------------------------------------------------------------------------- helpers


class _Clock:
    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now


def _opening(stamper: EnvelopeStamper, evidence: ev.Envelope, title: str) -> ev.Envelope:
    envelope = stamper.stamp(
        ev.Envelope(
            alert=ev.Alert(
                rule=DOWNLOAD,
                rule_id=DOWNLOAD,
                title=title,
                level=ev.Alert.LEVEL_MEDIUM,
                count=1,
                host=evidence.source,
                related_event_ids=[evidence.event_id],
            )
        ),
        ts_ns=evidence.ts_ns,
    )
    envelope.alert.alert_id = envelope.event_id
    return envelope


async def _hits(d, sid: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    got = await d.query("SELECT hits FROM alert_suppressions WHERE id = ?", (sid,))
    return bool(got) and got[0][0] == n


async def _count_is(d, n: int, index: int = 0) -> bool:  # type: ignore[no-untyped-def]
    got = await d.alerts()
    return len(got) > index and int(got[index]["count"]) == n


async def _n_rows(d, n: int) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    got = await d.alerts()
    return got if len(got) == n else []


async def _rule_rows(d, rule_id: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return [r for r in await d.alerts() if r["rule_id"] == rule_id]
