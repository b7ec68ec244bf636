"""The built-in detectors at run time: fed the bus's live fan-out, the capture's flow starts and a
one-second clock, their findings raised as alerts through an AlertBook (amoskys.detections.alerts:
one alert per rule and host while findings keep coming within [detections] alert_window_seconds).

Everything a detector does runs in one worker thread (decoding envelopes too), never on the loop.
Flows are judged once: a flow seen by this appliance's capture at its start (amoskys.collectors.
flow_starts), within about a second of its first packet; the FlowRecords of this appliance are then
not judged again. Other sources' flows (agents' captures) are judged on their first FlowRecord.

What it does not do (yet): the detectors read the live fan-out, not the committed log with a saved
position as the Sigma runtime does, so an event the fan-out dropped (this runner a full subscription
behind: counted in ``amoskys_detections_builtin_events_dropped_total``) is not judged; and their
windows are in memory (a restart forgets a scan half-counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

import aiosqlite
import structlog
from google.protobuf.message import DecodeError

from amoskys.bus.core import Bus
from amoskys.bus.fanout import Subscription
from amoskys.collectors.flow_starts import FlowStartNote, FlowStarts
from amoskys.config import DetectionsConfig
from amoskys.detections.alerts import AlertBook
from amoskys.detections.builtin.finding import CATEGORY, Detector, Finding, from_note, from_record
from amoskys.detections.builtin.metrics import BuiltinMetrics
from amoskys.detections.builtin.silent import Silent
from amoskys.detections.evaluate import Match, Suppressions
from amoskys.errors import BusError, StoreError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2
from amoskys.store import Store
from amoskys.store import alerts as rows
from amoskys.store.errors import SubmitRefusedError
from amoskys.store.records import Record

log = structlog.get_logger(__name__)

SUBSCRIPTION_EVENTS = 50_000
TICK_SECONDS = 1.0
#: How often the rules switched off and the suppressions are read again.
STATE_SECONDS = 5.0
#: Flows of other sources already judged (by source and Community ID), remembered at most.
JUDGED_FLOWS = 65_536
FLOW_STARTS_PER_TURN = 10_000
_NS = 1_000_000_000

_LATEST_HEARTBEATS = """
WITH names AS (SELECT DISTINCT source FROM source_marks),
latest AS (
    SELECT n.source,
           (SELECT e.store_seq FROM events e WHERE e.source = n.source AND +e.kind = 'heartbeat'
            ORDER BY e.event_id DESC LIMIT 1) AS seq
    FROM names n
)
SELECT e.source, e.received_ns, e.event_id, e.envelope FROM latest l JOIN events e ON e.store_seq = l.seq
"""


async def latest_heartbeats(conn: aiosqlite.Connection) -> list[tuple[str, int, str, bytes]]:
    """(source, received_ns, event_id, envelope) of every source's newest heartbeat."""
    found = await conn.execute_fetchall(_LATEST_HEARTBEATS)
    return [(str(s), int(r), str(i), bytes(e)) for s, r, i, e in found]


def _admit(origin: str, source: str) -> bool:
    return not origin or origin == source


class BuiltinDetections:
    """The built-in detectors of one appliance: `start()` before ready, `run()` as a task, `close()` at
    shutdown while the bus still takes events."""

    def __init__(
        self,
        config: DetectionsConfig,
        detectors: Sequence[Detector],
        *,
        store: Store,
        bus: Bus,
        stamper: EnvelopeStamper,
        metrics: Metrics,
        appliance: str,
        flow_starts: FlowStarts | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.config = config
        self.detectors = list(detectors)
        self.active = bool(self.detectors)
        self.appliance = appliance
        self._store = store
        self._bus = bus
        self._clock_ns = clock_ns
        self._tick_s = tick_seconds
        self._relayed = config.relayed == "on"
        self.m = metrics.component(BuiltinMetrics)
        self.book = AlertBook(stamper, window_seconds=config.alert_window_seconds, monotonic=monotonic)
        self.rule_ids = frozenset(r.id for d in self.detectors for r in d.rules)
        self._by_kind: dict[str, list[Detector]] = {}
        for d in self.detectors:
            for kind in d.kinds:
                self._by_kind.setdefault(kind, []).append(d)
        self._flow_detectors = [d for d in self.detectors if d.flows]
        if self._flow_detectors:
            self._by_kind.setdefault("flow", [])
        # this appliance's flows are judged at their start when its capture hands them over
        self.flow_starts = flow_starts if self._flow_detectors else None
        self._judged: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.disabled: frozenset[str] = frozenset()
        self.suppressions = Suppressions()
        self._pool: ThreadPoolExecutor | None = None
        self._sub: Subscription[Record] | None = None
        self._state_changed = asyncio.Event()
        self._seen_dropped = 0
        self._seen_starts_dropped = 0
        self.raised = 0  # findings handed to the alert book

    # ------------------------------------------------------------------ start, stop

    async def start(self) -> None:
        if not self.active:
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="detections-builtin")
        self._sub = self._bus.subscribe("detections_builtin", SUBSCRIPTION_EVENTS)
        if self.flow_starts is not None:
            self.flow_starts.subscribe()
        await self.refresh_state()
        since = self._clock_ns() - self.config.alert_window_seconds * _NS
        open_alerts = await self._store.read(partial(rows.open_alerts, seen_since_ns=since))
        titles = {r.id: (r.title, r.level, r.tags) for d in self.detectors for r in d.rules}
        self.book.load([a for a in open_alerts if a.rule_id in self.rule_ids], titles)
        silent = next((d for d in self.detectors if isinstance(d, Silent)), None)
        if silent is not None:
            beats = await self._store.read(latest_heartbeats)
            await self._in_thread(_seed_silent, silent, beats)
        findings = await self._in_thread(self._tick, self._clock_ns())  # IOC lists, certificates
        await self._raise(findings)
        log.info(
            "detections_builtin_started",
            detectors=[d.name for d in self.detectors],
            flow_starts=self.flow_starts is not None,
            open_alerts=len(self.book),
        )

    async def run(self) -> None:
        if not self.active:
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._events(), name="detections-builtin-events")
            if self.flow_starts is not None:
                tg.create_task(self._flows(self.flow_starts), name="detections-builtin-flows")
            tg.create_task(self._ticks(), name="detections-builtin-ticks")
            tg.create_task(self._follow_ups(), name="detections-builtin-follow-ups")

    async def close(self) -> None:
        if not self.active:
            return
        if self._sub is not None:
            self._sub.close()
        if self.flow_starts is not None:
            self.flow_starts.unsubscribe()
        await self._publish(self.book.flush())
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def alert_closed(self, alert_id: str) -> None:
        """An alert was resolved or called a false positive: its next finding opens a new one."""
        await self._publish(self.book.close(alert_id))

    def state_changed(self) -> None:
        """A suppression or a rule switch changed: read them again now."""
        self._state_changed.set()

    # ------------------------------------------------------------------ the worker thread

    async def _in_thread(self, fn: Callable[..., list[Finding]], *args: object) -> list[Finding]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _judge_events(self, items: list[events_pb2.Envelope | bytes], now_ns: int) -> list[Finding]:
        out: list[Finding] = []
        by_kind = self._by_kind
        for item in items:
            if isinstance(item, bytes):
                try:
                    envelope = events_pb2.Envelope.FromString(item)
                except DecodeError:
                    continue
            else:
                envelope = item
            kind = envelope.WhichOneof("body") or ""
            if kind == "flow" and self._flow_detectors:
                out += self._judge_record(envelope)
            for d in by_kind.get(kind, ()):
                out += d.event(envelope, now_ns)
        return out

    def _judge_record(self, envelope: events_pb2.Envelope) -> list[Finding]:
        """A FlowRecord of a capture not in this process: its flow is judged on its first record."""
        if self.flow_starts is not None and envelope.source == self.appliance:
            return []  # judged at its start
        f = envelope.flow
        key = (
            envelope.source,
            f.community_id or f"{f.src_addr}|{f.dst_addr}|{f.src_port}|{f.dst_port}|{f.protocol}",
        )
        judged = self._judged
        if key in judged:
            judged.move_to_end(key)
            return []
        judged[key] = None
        if len(judged) > JUDGED_FLOWS:
            judged.popitem(last=False)
        start = from_record(envelope)
        out: list[Finding] = []
        for d in self._flow_detectors:
            out += d.flow(start)
        return out

    def _judge_starts(self, notes: list[FlowStartNote]) -> list[Finding]:
        out: list[Finding] = []
        detectors = self._flow_detectors
        for note in notes:
            start = from_note(note, self.appliance)
            for d in detectors:
                out += d.flow(start)
        return out

    def _tick(self, now_ns: int) -> list[Finding]:
        out: list[Finding] = []
        for d in self.detectors:
            out += d.tick(now_ns)
        return out

    # ------------------------------------------------------------------ the loop's side

    async def _events(self) -> None:
        sub = self._sub
        if sub is None:
            return
        kinds = self._by_kind
        while True:
            records = await sub.get_many(2000)
            if sub.dropped != self._seen_dropped:
                self.m.dropped.inc(sub.dropped - self._seen_dropped)
                self._seen_dropped = sub.dropped
            if not records:
                if sub.closed:
                    return
                continue
            items: list[events_pb2.Envelope | bytes] = [
                r.parsed if r.parsed is not None else r.envelope
                for r in records
                if r.kind in kinds and (r.kind == "heartbeat" or self._relayed or _admit(r.origin, r.source))
            ]
            if items:
                await self._raise(await self._in_thread(self._judge_events, items, self._clock_ns()))

    async def _flows(self, starts: FlowStarts) -> None:
        while True:
            await starts.wait()
            notes = starts.take(FLOW_STARTS_PER_TURN)
            self.m.flow_starts.inc(len(notes))
            if starts.dropped != self._seen_starts_dropped:
                self.m.flow_starts_dropped.inc(starts.dropped - self._seen_starts_dropped)
                self._seen_starts_dropped = starts.dropped
            if notes:
                await self._raise(await self._in_thread(self._judge_starts, notes))

    async def _ticks(self) -> None:
        next_state = time.monotonic() + STATE_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), self._tick_s)
            if self._state_changed.is_set() or time.monotonic() >= next_state:
                self._state_changed.clear()
                next_state = time.monotonic() + STATE_SECONDS
                try:
                    await self.refresh_state()
                except StoreError as err:
                    log.warning("detections_builtin_state_not_read", error=str(err))
            await self._raise(await self._in_thread(self._tick, self._clock_ns()))

    async def refresh_state(self) -> None:
        """Read the rules switched off and the active suppressions (of built-in rules) again."""
        self.disabled = await self._store.read(rows.disabled_rules)
        active = await self._store.read(partial(rows.suppressions, active_at_ns=self._clock_ns()))
        self.suppressions = Suppressions([s for s in active if s.rule_id in self.rule_ids])

    async def _follow_ups(self) -> None:
        while True:
            due = self.book.next_due()
            wait = 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))
            await asyncio.sleep(wait)
            await self._publish(self.book.due(self._clock_ns()))

    # ------------------------------------------------------------------ alerts

    def matches(self, findings: Sequence[Finding]) -> list[Match]:
        """Findings as the alert book takes them (those of rules switched off or suppressed left out);
        findings of one rule shown by the same event (two interfaces down in one SNMP sample) become
        one, as the book counts an event once."""
        out: list[Match] = []
        now = self._clock_ns()
        for f in _merge(findings):
            rule = f.rule
            self.m.findings.labels(rule.id).inc()
            if rule.id in self.disabled or self.suppressions.find(rule.id, f.host, f.attributes, now):
                self.m.suppressed.inc()
                continue
            out.append(
                Match(
                    rule,
                    f.host,
                    f.evidence or f"{rule.id}:{f.key}",
                    f.ts_ns,
                    CATEGORY,
                    dict(f.attributes),
                    summary=f.summary,
                    evidence=bool(f.evidence),
                )
            )
        return out

    async def _raise(self, findings: Sequence[Finding]) -> None:
        if not findings:
            return
        matches = self.matches(findings)
        if not matches:
            return
        self.raised += len(matches)
        events, seen = self.book.add(matches)
        await self._publish(events)
        if seen:
            with contextlib.suppress(SubmitRefusedError):
                self._store.submit_ops(seen)

    async def _publish(self, events: list[events_pb2.Envelope]) -> None:
        if not events:
            return
        try:
            await self._bus.publish(events)
        except BusError as err:
            log.warning("detections_builtin_alerts_not_published", count=len(events), error=str(err))


def _merge(findings: Sequence[Finding]) -> list[Finding]:
    """One finding per rule, host and evidence event: the first's attributes, every summary."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for i, f in enumerate(findings):
        groups.setdefault((f.rule.id, f.host, f.evidence or f"#{i}"), []).append(f)
    out: list[Finding] = []
    for group in groups.values():
        first = group[0]
        if len(group) > 1:
            first = replace(
                first,
                summary="; ".join(f.summary for f in group),
                attributes={**first.attributes, "findings": str(len(group))},
            )
        out.append(first)
    return out


def _seed_silent(silent: Silent, beats: list[tuple[str, int, str, bytes]]) -> list[Finding]:
    """What the store knew of every source's heartbeats at start (decoded in the worker thread)."""
    for source, received_ns, event_id, data in beats:
        try:
            interval = events_pb2.Envelope.FromString(data).heartbeat.interval_seconds
        except DecodeError:
            interval = 0.0
        silent.seen(source, received_ns, interval, event_id)
    return []
