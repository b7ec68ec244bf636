"""The detections at run time: Sigma rules evaluated on the committed log, never missing an event.

Position: every event up to `position` (a store_seq, saved in `detection_cursor` through the writer's
group commit) was evaluated. Live, events come from the bus fan-out (already parsed) and are evaluated
at once; a confirmation pass then walks the log's keys after the position — only rows committed a tick
ago or earlier, so the fan-out had its chance — and evaluates, from the store, any row the fan-out did
not deliver. When the runtime is behind — after a restart, from its saved position, or once the
fan-out dropped records because it lagged — live records are left alone until the pass, reading the
log in order, has reached the tip it saw then (the process table learns parents before children). The position moves past a row only once it
was evaluated and its alerts were handed to the bus, ahead of the cursor's own write in the writer's
queue: a crash loses no evaluation, and one between evaluating and saving repeats some (Alert event
ids are derived from what they describe, so the store keeps them once).

Which events: process and flow events from this appliance's collectors and from directly connected
agents (origin "" or the source itself); those that came through a relay or the NATS hub only with
`[detections] relayed = "on"` (their own box evaluated them). The Alert events are this appliance's
(its stamper), published through the bus's in-process path.

Evaluation runs in one worker thread (amoskys.detections.evaluate); pySigma is imported, and rules are
loaded, off the loop before ready (`start`), and reloaded when the rule files change.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

from amoskys.bus.core import Bus
from amoskys.bus.fanout import Subscription
from amoskys.config import DetectionsConfig
from amoskys.detections import logread
from amoskys.detections.alerts import AlertBook
from amoskys.detections.evaluate import Evaluator, Outcome, Suppressions
from amoskys.detections.metrics import DetectionMetrics
from amoskys.errors import BusError, StoreError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2
from amoskys.store import Store
from amoskys.store import alerts as rows
from amoskys.store.errors import SubmitRefusedError
from amoskys.store.records import Record
from amoskys.store.writer import StoreOp

log = structlog.get_logger(__name__)

#: The name of the detections' row in `detection_cursor`.
CURSOR = "detections"
#: How often the confirmation pass runs (and how long a committed row waits for the fan-out first).
CONFIRM_TICK_S = 0.25
#: Keys read per confirmation step.
CONFIRM_LIMIT = 5000
#: The position is saved at most this often while it moves (and at every stop).
SAVE_EVERY_S = 1.0
#: Keys of events evaluated from the store, remembered so that a late fan-out delivery is not evaluated twice.
RECENT_CATCHUP = 50_000
#: The fan-out subscription's bound (events); beyond it the oldest are dropped and caught up from the store.
SUBSCRIPTION_EVENTS = 50_000
_KINDS = frozenset(logread.KINDS)
_NS = 1_000_000_000
ENGINE_MODULE = "amoskys.detections.sigma.engine"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    rule_id: str
    title: str
    level: str
    tags: tuple[str, ...]
    path: str
    status: str  # loaded, unsupported, invalid
    reason: str  # why not loaded ('' when loaded)
    enabled: bool  # loaded and not disabled at runtime


@dataclass(frozen=True, slots=True)
class RulesView:
    loaded: int
    unsupported: int
    invalid: int
    enabled: int
    items: tuple[RuleInfo, ...]


EMPTY_VIEW = RulesView(0, 0, 0, 0, ())


def direct(origin: str, source: str) -> bool:
    """Whether an event came from this appliance (origin "") or straight from the agent that made it."""
    return not origin or origin == source


class DetectionRuntime:
    """Rules, position and alerts of one appliance. `start()` before ready, `run()` as a task,
    `close()` at shutdown while the bus still takes events."""

    def __init__(
        self,
        config: DetectionsConfig,
        *,
        store: Store,
        bus: Bus,
        stamper: EnvelopeStamper,
        metrics: Metrics,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        subscription_events: int = SUBSCRIPTION_EVENTS,
    ) -> None:
        self.config = config
        self._subscription_events = subscription_events
        self.paths = [Path(p) for p in config.sigma_paths]
        self.active = config.enabled and bool(config.sigma_paths)
        self._store = store
        self._bus = bus
        self._clock_ns = clock_ns
        self._mono = monotonic
        self._relayed = config.relayed == "on"
        self.m = metrics.component(DetectionMetrics)
        self.evaluator = Evaluator()
        self.book = AlertBook(stamper, window_seconds=config.alert_window_seconds, monotonic=monotonic)
        self._engine: ModuleType | None = None
        self._ruleset: Any = None  # the engine's RuleSet
        self.view = EMPTY_VIEW
        self.position = 0
        self._saved = 0
        self._saved_at = 0.0
        self._pending_live: set[tuple[str, str]] = set()
        self._recent_catchup: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = asyncio.Lock()
        self._sub: Subscription[Record] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lag_seconds = 0.0
        self._started = False
        # While the position is below this, live records are left to the confirmation pass: it reads the
        # log in order, so the process table sees parents before children (after a restart, or once the
        # fan-out dropped records because this runtime fell behind).
        self._behind_until = 0
        self._dropped_seen = 0
        self.m.lag_events.set_function(
            lambda: max(0, self._store.last_seq - self.position) if self.active else 0
        )
        self.m.lag_seconds.set_function(lambda: self._lag_seconds)
        for status in ("loaded", "disabled", "unsupported", "invalid"):
            self.m.rules.labels(status).set(0)

    # ------------------------------------------------------------------ start, stop

    async def start(self) -> None:
        """Import the engine and load the rules (off the loop), take up the saved position, the open
        alerts and the runtime switches, and subscribe to the fan-out. A no-op when inactive."""
        if not self.active:
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="detections")
        self._engine = await asyncio.to_thread(importlib.import_module, ENGINE_MODULE)
        await self._load_rules()
        await self.refresh_state()
        saved = await self._store.read(partial(rows.cursor, name=CURSOR))
        if saved is None:  # first start with rules: from now on (the past is not evaluated)
            self.position = self._store.last_seq
            self._save(force=True)
        else:
            self.position = saved
        self._saved = self.position
        since = self._clock_ns() - self.config.alert_window_seconds * _NS
        open_alerts = await self._store.read(partial(rows.open_alerts, seen_since_ns=since))
        titles = {r.id: (r.title, r.level, r.tags) for r in self._rules()}
        self.book.load(
            [a for a in open_alerts if a.rule_id in titles], titles
        )  # the built-in ones have their own
        self._sub = self._bus.subscribe("detections", self._subscription_events)
        if self.position < self._store.last_seq:  # behind: the store first, in order
            self._behind_until = self._store.last_seq
        self._started = True
        log.info(
            "detections_started",
            rules=self.view.loaded,
            unsupported=self.view.unsupported,
            invalid=self.view.invalid,
            position=self.position,
            behind=max(0, self._store.last_seq - self.position),
            open_alerts=len(self.book),
        )

    async def run(self) -> None:
        """Follow the log until cancelled (returns at once when inactive)."""
        if not self.active:
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._live(), name="detections-live")
            tg.create_task(self._confirm(), name="detections-confirm")
            tg.create_task(self._follow_ups(), name="detections-follow-ups")
            tg.create_task(self._watch(), name="detections-watch")

    async def close(self) -> None:
        """Send the pending follow-ups, save the position, let the evaluation thread go."""
        if not self._started:
            return
        if self._sub is not None:
            self._sub.close()
        async with self._lock:
            await self._publish(self.book.flush())
            self._save(force=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ rules and switches

    def _rules(self) -> tuple[Any, ...]:
        return tuple(self._ruleset.rules) if self._ruleset is not None else ()

    async def _load_rules(self) -> None:
        engine = self._engine
        if engine is None:
            return
        try:
            ruleset = await asyncio.to_thread(engine.load_rules, self.paths)
        except OSError as err:  # the engine reports bad files itself; this is the disk failing
            self.m.reloads.labels("failed").inc()
            log.error("detections_rules_not_loaded", error=str(err))
            return
        self._ruleset = ruleset
        self.evaluator.rules = ruleset
        self.m.reloads.labels("ok").inc()
        self._update_view()
        for bad in (*ruleset.unsupported, *ruleset.invalid):
            log.warning("detections_rule_not_loaded", path=str(bad.path), reason=bad.reason)

    def _update_view(self) -> None:
        ruleset = self._ruleset
        if ruleset is None:
            self.view = EMPTY_VIEW
            return
        disabled = self.evaluator.disabled
        items = [
            RuleInfo(r.id, r.title, r.level, tuple(r.tags), str(r.path), "loaded", "", r.id not in disabled)
            for r in ruleset.rules
        ]
        items += [
            RuleInfo(u.id, u.title, "", (), str(u.path), "unsupported", u.reason, False)
            for u in ruleset.unsupported
        ]
        items += [RuleInfo("", "", "", (), str(i.path), "invalid", i.reason, False) for i in ruleset.invalid]
        enabled = sum(1 for i in items if i.enabled)
        loaded = len(ruleset.rules)
        self.view = RulesView(loaded, len(ruleset.unsupported), len(ruleset.invalid), enabled, tuple(items))
        m = self.m.rules
        m.labels("loaded").set(enabled)
        m.labels("disabled").set(loaded - enabled)
        m.labels("unsupported").set(len(ruleset.unsupported))
        m.labels("invalid").set(len(ruleset.invalid))

    def loaded_rule(self, rule_id: str) -> bool:
        return any(r.id == rule_id for r in self._rules())

    async def refresh_state(self) -> None:
        """Read the rules switched off and the active suppressions again."""
        disabled = await self._store.read(rows.disabled_rules)
        active = await self._store.read(partial(rows.suppressions, active_at_ns=self._clock_ns()))
        self.evaluator.disabled = disabled
        self.evaluator.suppressions = Suppressions(active)
        self._update_view()

    async def alert_closed(self, alert_id: str) -> None:
        """An alert was resolved or called a false positive: its next match opens a new one."""
        if self.active:
            await self._publish(self.book.close(alert_id))

    async def _watch(self) -> None:
        """Reload the rules when their files change; re-read the switches at each check (suppressions
        expire; the desk re-reads them itself after a change)."""
        interval = self.config.reload_interval_seconds or 5.0
        engine = self._engine
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_state()
            except StoreError as err:
                log.warning("detections_state_not_read", error=str(err))
            if self.config.reload_interval_seconds and engine is not None and self._ruleset is not None:
                stamp = await asyncio.to_thread(engine.fingerprint, self.paths)
                if stamp != self._ruleset.fingerprint:
                    await self._load_rules()
                    log.info(
                        "detections_rules_reloaded", rules=self.view.loaded, unsupported=self.view.unsupported
                    )

    # ------------------------------------------------------------------ evaluating

    async def _evaluate(self, items: Sequence[events_pb2.Envelope | bytes]) -> Outcome:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        outcome = await loop.run_in_executor(self._pool, self.evaluator.evaluate, items)
        self.m.eval_seconds.observe(time.perf_counter() - t0)
        return outcome

    async def _raise(self, outcome: Outcome) -> None:
        """Matches into alerts: publish their events, queue their row updates (after the events)."""
        for match in outcome.matches:
            self.m.matches.labels(match.rule.level or "unknown").inc()
        events, seen = self.book.add(outcome.matches)
        ops: list[StoreOp] = list(seen)
        if outcome.suppressed:
            self.m.suppressed.inc(sum(n for n, _ in outcome.suppressed.values()))
            ops.append(rows.CountSuppressed(tuple((i, n, t) for i, (n, t) in outcome.suppressed.items())))
        await self._publish(events)
        if ops:
            with contextlib.suppress(SubmitRefusedError):  # closing: the next start counts again
                self._store.submit_ops(ops)

    async def _publish(self, events: list[events_pb2.Envelope]) -> None:
        if not events:
            return
        try:
            await self._bus.publish(events)
        except BusError as err:
            log.warning("detections_alerts_not_published", count=len(events), error=str(err))
            return
        for e in events:
            first = e.alert.alert_id == e.event_id
            self.m.alert_events.labels("opened" if first else "follow_up").inc()
            if first:
                log.info(
                    "alert_opened",
                    rule_id=e.alert.rule_id,
                    title=e.alert.title,
                    host=e.alert.host,
                    alert_id=e.event_id,
                )

    def _admit(self, origin: str, source: str) -> bool:
        return self._relayed or direct(origin, source)

    async def _live(self) -> None:
        sub = self._sub
        if sub is None:
            return
        while True:
            records = await sub.get_many(2000)
            if not records:
                if sub.closed:
                    return
                continue
            async with self._lock:
                if sub.dropped != self._dropped_seen:  # fell behind: catch up from the store, in order
                    self._dropped_seen = sub.dropped
                    if self.position >= self._behind_until:  # once per episode
                        log.info("detections_catching_up", dropped=sub.dropped, position=self.position)
                    self._behind_until = max(self._behind_until, self._store.last_seq)
                if self.position < self._behind_until:
                    continue  # committed: the confirmation pass evaluates them from the store
                items: list[events_pb2.Envelope | bytes] = []
                recent = self._recent_catchup
                for r in records:
                    if r.kind not in _KINDS or not self._admit(r.origin, r.source):
                        continue
                    key = (r.source, r.event_id)
                    if key in recent or key in self._pending_live:
                        continue
                    self._pending_live.add(key)
                    items.append(r.parsed if r.parsed is not None else r.envelope)
                if not items:
                    continue
                outcome = await self._evaluate(items)
                self.m.evaluated.labels("live").inc(outcome.evaluated)
                await self._raise(outcome)

    async def _confirm(self) -> None:
        """Every tick: walk the keys committed up to the previous tick's tip; evaluate what the fan-out
        did not deliver; move and save the position."""
        target = self._store.last_seq
        failing = False
        while True:
            try:
                caught_up = await self.confirm_step(target)
            except StoreError as err:  # the next tick tries again from the same position
                if not failing:
                    log.warning("detections_log_not_read", error=str(err), position=self.position)
                failing, caught_up = True, True
            else:
                if failing:
                    log.info("detections_log_read_again", position=self.position)
                failing = False
            if caught_up:
                target = self._store.last_seq
                await asyncio.sleep(CONFIRM_TICK_S)

    async def confirm_step(self, target: int) -> bool:
        """One step toward `target` (at most CONFIRM_LIMIT keys); True once the position reached it."""
        if self.position >= target:
            self._lag_seconds = 0.0
            self._save()
            return True
        async with self._lock:
            read = await self._store.read(
                partial(logread.read_keys, after_seq=self.position, upto_seq=target, limit=CONFIRM_LIMIT)
            )
            if read.first_seq and self.position < read.first_seq - 1:
                pruned = read.first_seq - 1 - self.position
                self.m.skipped.labels("pruned").inc(pruned)
                log.warning("detections_events_pruned_unevaluated", count=pruned, position=self.position)
            missed: list[int] = []
            missed_keys: list[tuple[str, str]] = []
            recent = self._recent_catchup
            for key in read.keys:
                k = (key.source, key.event_id)
                if k in self._pending_live:
                    self._pending_live.discard(k)
                    continue
                if k in recent:
                    continue
                if not self._admit(key.origin, key.source):
                    self.m.skipped.labels("relayed").inc()
                    continue
                missed.append(key.store_seq)
                missed_keys.append(k)
            if missed:  # the live path waits for the lock: it cannot take these meanwhile
                envelopes = await self._store.read(partial(logread.read_envelopes, seqs=missed))
                outcome = await self._evaluate(envelopes)
                self.m.evaluated.labels("catchup").inc(outcome.evaluated)
                await self._raise(outcome)
                recent.update(dict.fromkeys(missed_keys))  # a late fan-out delivery of them is skipped
                while len(recent) > RECENT_CATCHUP:
                    recent.popitem(last=False)
            self.position = max(self.position, read.scanned_to)
            if read.keys and self.position < target:
                self._lag_seconds = max(0.0, (self._clock_ns() - read.keys[-1].received_ns) / _NS)
            self._save()
        return self.position >= target

    def _save(self, *, force: bool = False) -> None:
        """Queue the position's write behind what was published before it (throttled)."""
        if self.position == self._saved and not force:
            return
        now = self._mono()
        if not force and now - self._saved_at < SAVE_EVERY_S:
            return
        try:
            self._store.submit_ops([rows.SaveCursor(CURSOR, self.position)])
        except SubmitRefusedError:
            return
        self._saved, self._saved_at = self.position, now

    async def _follow_ups(self) -> None:
        while True:
            due = self.book.next_due()
            wait = 1.0 if due is None else min(1.0, max(0.0, due - self._mono()))
            await asyncio.sleep(wait)
            events = self.book.due(self._clock_ns())
            if events:
                async with self._lock:
                    await self._publish(events)
