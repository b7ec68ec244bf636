"""Hub mode: a durable pull consumer on the fleet's JetStream stream, committing every box's events
into this appliance's store through the bus core.

Each message is one box's event: the subject ``amoskys.<site>.<box>.<source>.<kind>`` names the box
(NATS permissions let a box publish only under its own subjects: they are the trust boundary, the
NATS path carries no signature chain), the payload is the serialized Envelope. A fetched batch is
split by box and each box's share goes through `Bus.ingest` as the sender ``nats:<box>`` (relay:
the box speaks for its agents too), so the bus's per-event validation, quotas per sender and store
space rules apply, and every row is stored with the origin ``nats:<box>`` (amoskys.sources.origin),
which keeps it from being forwarded back to NATS. Events carrying this hub's own name as their
source are refused by the bus (reserved_source); so are the names in `deny_sources` (as a source,
or as the box that sent it).

The next batch is fetched while the last one commits (one batch in hand at a time). After the commit
the hub acks with AckAll on the highest committed message (amoskys.sources.acks decides which one is
safe: never one past a message not committed); a RETRY from the bus becomes a NAK of that box's
messages with the bus's hint as the redelivery delay; a message refused for good (malformed, not a
fleet subject, denied) is terminated and counted, and the rest of the batch goes on. A source arriving through two boxes raises
an Alert once (amoskys.bus.via). Gaps in source_seq are counted per (source, boot_id) where the
subjects take every kind (amoskys.sources.gaps).

`run()` never returns on its own: it connects (reconnecting forever), binds the consumer (creating
or updating it) and consumes; while it cannot, it is degraded (a gauge, `status()`, one log line
per streak) and tries again after a backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from amoskys.bus.core import Bus, IngestResult
from amoskys.bus.via import ViaTracker
from amoskys.config import NatsSourceConfig
from amoskys.errors import AmoskysError
from amoskys.events import KINDS, EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.nats.connection import ConnectionState, connect, describe_error
from amoskys.nats.stream import subject_covers
from amoskys.nats.subjects import ROOT, escape, parse_subject
from amoskys.proto import bus_pb2, events_pb2
from amoskys.retry import Backoff
from amoskys.sources.acks import AckPlan
from amoskys.sources.gaps import GapCounter
from amoskys.sources.metrics import HubMetrics
from amoskys.sources.origin import nats_origin

log = structlog.get_logger(__name__)

#: Longest one fetch waits for messages before the hub looks at its consumer again.
FETCH_WAIT_SECONDS = 1.0
#: The first connect may take as long as it takes: after this long the hub says it is degraded.
CONNECT_GRACE_SECONDS = 3.0
#: How often an idle hub reads its consumer's info (lag on /metrics).
INFO_EVERY_SECONDS = 5.0
#: Per-box figures kept for `status()` at most (the store keeps the rest: the Agents page reads it).
MAX_BOXES = 10_000
#: Why a message was terminated, beyond the bus's own reasons (amoskys.bus.validate.REASONS).
BAD_SUBJECT, DENIED_SOURCE = "bad_subject", "denied_source"

Connect = Callable[..., Coroutine[Any, Any, NATS]]


@dataclass
class BoxStats:
    """What the hub saw of one box since it started."""

    messages: int = 0
    committed: int = 0
    rejected: int = 0
    gaps: int = 0
    last_ns: int = 0
    sources: set[str] = field(default_factory=set)


class NatsHub:
    """The `[sources.nats]` consumer of one appliance (see the module docstring)."""

    name = "nats"

    def __init__(
        self,
        config: NatsSourceConfig,
        bus: Bus,
        metrics: Metrics,
        *,
        appliance: str,
        stamper: EnvelopeStamper,
        connect_fn: Connect = connect,
    ) -> None:
        self.config = config
        self.bus = bus
        self.stamper = stamper
        self.appliance = appliance
        self.durable = config.durable_name(appliance)
        self.m = metrics.component(HubMetrics)
        self._connect = connect_fn
        self._deny = frozenset(n.lower() for n in config.deny_sources)
        self._deny_boxes = frozenset(escape(n).lower() for n in config.deny_sources if _token_ok(n))
        self._plan: AckPlan[Msg] = AckPlan()
        self._via = ViaTracker()
        self._gaps = GapCounter()
        self._full: dict[tuple[str, str, str], bool] = {}  # (site, box, source) → subjects take every kind
        self.boxes: dict[str, BoxStats] = {}
        self.state = "starting"
        self.reason = ""
        self.lag: int | None = None
        self._nc: NATS | None = None
        self._bound = False
        self._info_at = 0.0
        self._closing = False
        self._still_connecting = False  # the first connect outlived CONNECT_GRACE_SECONDS
        self._conn_error = ""  # the connection's last error while it is down (a refused login, say)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Consume until cancelled; reconnects and re-binds forever (see the module docstring)."""
        backoff = Backoff(base_seconds=0.5, cap_seconds=30.0)
        try:
            while True:
                try:
                    if self._nc is not None and self._nc.is_closed:
                        self._nc = None  # closed for good (it reconnects forever otherwise): connect anew
                    if self._nc is None:
                        self._nc = await self._connected()
                    await self._consume(self._nc.jetstream(), backoff)
                except (nats.errors.Error, OSError, AmoskysError) as err:
                    self._degrade(describe_error(err))
                    await asyncio.sleep(backoff.next_delay())
        finally:
            self._closing = True
            self.m.connected.set(0)
            nc, self._nc = self._nc, None
            if nc is not None:
                await _close_quietly(nc)

    async def _connected(self) -> NATS:
        """The connection (the first connect waits as long as it takes; degraded after a few seconds)."""
        cfg = self.config
        task = asyncio.create_task(
            self._connect(
                list(cfg.servers),
                tls_ca=cfg.tls_ca or None,
                tls_cert=cfg.tls_cert or None,
                tls_key=cfg.tls_key or None,
                credentials=cfg.credentials or None,
                name=f"amoskys-hub-{self.appliance}",
                on_state_change=self._on_state,
                on_error=self._on_error,
            ),
            name="hub-connect",
        )
        try:
            done, _ = await asyncio.wait({task}, timeout=CONNECT_GRACE_SECONDS)
            if not done:
                self._still_connecting = True
                self._degrade(self._connecting_reason())
            return await task
        finally:
            self._still_connecting = False
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _connecting_reason(self) -> str:
        """Degraded while the first connect goes on, with the server's last word when it gave one."""
        reason = f"NATS unreachable: still connecting to {', '.join(self.config.servers)}"
        return f"{reason}: {self._conn_error}" if self._conn_error else reason

    def _on_error(self, err: Exception) -> None:
        self._conn_error = describe_error(err)
        if self._still_connecting and not self._closing:
            self._degrade(self._connecting_reason())

    def _on_state(self, state: ConnectionState) -> None:
        if state in (ConnectionState.CONNECTED, ConnectionState.RECONNECTED):
            self._conn_error = ""
        if self._closing:
            return
        if state in (ConnectionState.DISCONNECTED, ConnectionState.CLOSED):
            self._plan.suspect()  # deliveries and acks on the dead socket are lost
            self._degrade(f"NATS connection {state.value}")
        elif self._bound:  # reconnected: the binding (a subscription) survives a reconnect
            self._recover()

    def _degrade(self, reason: str) -> None:
        self.m.degraded.set(1)
        self.m.connected.set(0)
        if self.state != "degraded" or self.reason != reason:
            log.warning("hub_degraded", reason=reason, stream=self.config.stream, durable=self.durable)
        self.state, self.reason = "degraded", reason

    def _recover(self) -> None:
        self.m.degraded.set(0)
        self.m.connected.set(1)
        if self.state != "consuming":
            log.info("hub_consuming", stream=self.config.stream, durable=self.durable, was=self.state)
        self.state, self.reason = "consuming", ""

    async def _consume(self, js: JetStreamContext, backoff: Backoff) -> None:
        self._bound = False
        await js.add_consumer(self.config.stream, self._consumer_config())  # creates, or updates filters
        sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.config.stream)
        handling: asyncio.Task[float] | None = None
        try:
            info = await sub.consumer_info()
            self._plan.bound(int(info.num_ack_pending or 0))
            self._show_info(info)
            self._bound = True
            self._recover()
            backoff.attempt = 0
            while True:
                # the next batch is fetched while the last one commits (one in hand at a time)
                try:
                    msgs = await sub.fetch(self.config.batch, timeout=FETCH_WAIT_SECONDS)
                except nats.errors.TimeoutError:
                    msgs = []
                if handling is not None:
                    pause = await handling
                    handling = None
                    if pause:
                        await asyncio.sleep(pause)
                if msgs:
                    handling = asyncio.create_task(self.handle(msgs), name="hub-batch")
                    self.lag = int(msgs[-1].metadata.num_pending)
                    self.m.lag.set(self.lag)
                if self._plan.blocked or time.monotonic() - self._info_at > INFO_EVERY_SECONDS:
                    info = await sub.consumer_info()
                    self._show_info(info)
                    if self._plan.blocked and self._plan.settle(int(info.num_ack_pending or 0)):
                        log.info("hub_acks_resumed", durable=self.durable)
                        await self._ack()
                if self.state != "consuming" and self._nc is not None and self._nc.is_connected:
                    self._recover()
        finally:
            self._bound = False
            if handling is not None:  # its messages come back after the ack wait
                handling.cancel()
                await asyncio.gather(handling, return_exceptions=True)
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass  # the connection is gone: so is the subscription

    def _consumer_config(self) -> api.ConsumerConfig:
        subjects = list(self.config.subjects)
        return api.ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            description=f"AMOSKYS hub {self.appliance}",
            ack_policy=api.AckPolicy.ALL,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.config.ack_wait_seconds,
            max_ack_pending=self.config.max_ack_pending,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )

    def _show_info(self, info: api.ConsumerInfo) -> None:
        self._info_at = time.monotonic()
        self.lag = int(info.num_pending or 0)
        self.m.lag.set(self.lag)
        self.m.ack_pending.set(int(info.num_ack_pending or 0))

    # ------------------------------------------------------------------ one batch
    async def handle(self, msgs: Sequence[Msg]) -> float:
        """Commit, NAK or terminate each message of one fetched batch, then ack what is safe. Returns
        how long to pause before the next fetch (> 0 when every box was told RETRY)."""
        groups: dict[str, list[Msg]] = {}
        sites: dict[str, str] = {}
        now_ns = time.time_ns()
        for msg in msgs:
            try:
                site, box, _, _ = parse_subject(msg.subject)
            except ValueError:
                await self._terminate(msg, BAD_SUBJECT, None)
                continue
            if box.lower() in self._deny_boxes:
                await self._terminate(msg, DENIED_SOURCE, self._box(box, now_ns))
                continue
            groups.setdefault(box, []).append(msg)
            sites[box] = site
        results = await asyncio.gather(
            *(self._ingest_box(box, sites[box], group, now_ns) for box, group in groups.items())
        )
        await self._ack()
        retried = [hint for hint in results if hint is not None]
        return min(retried) if retried and len(retried) == len(results) else 0.0

    async def _ingest_box(self, box: str, site: str, msgs: list[Msg], now_ns: int) -> float | None:
        """One box's messages through the bus; returns the retry hint (seconds) when told RETRY."""
        stats = self._box(box, now_ns)
        stats.messages += len(msgs)
        result = await self.bus.ingest(
            [m.data for m in msgs], sender=nats_origin(box), relay=True, denied_sources=self._deny
        )
        if result.status != bus_pb2.OK:
            delay = result.backoff_hint_ms / 1000
            for msg in msgs:
                await _quietly(msg.nak(delay=delay))
                self._plan.naked(msg.metadata.sequence.stream)
            self.m.naks.inc(len(msgs))
            self.m.messages.labels(outcome="retried").inc(len(msgs))
            return delay
        rejected = {r.index: r.reason for r in result.rejected}
        for i, msg in enumerate(msgs):
            reason = rejected.get(i)
            if reason is None:
                self._plan.committed(msg.metadata.sequence.stream, msg)
            else:
                await self._terminate(msg, reason, stats)
        self.m.messages.labels(outcome="committed").inc(result.accepted)
        self.m.messages.labels(outcome="duplicate").inc(result.duplicates)
        stats.committed += result.accepted
        await self._after_commit(box, site, result, stats)
        return None

    async def _after_commit(self, box: str, site: str, result: IngestResult, stats: BoxStats) -> None:
        """Sources seen, gaps counted, a source arriving through a second box reported."""
        sources = {r.source for r in result.committed}
        if len(stats.sources) < MAX_BOXES:
            stats.sources |= sources
        for record in result.committed:
            if self._takes_every_kind(site, box, record.source):
                gap = self._gaps.note(record.source, record.boot_id, record.source_seq)
                if gap:
                    stats.gaps += gap
                    self.m.gaps.inc(gap)
        for source, first in self._via.note(box, sources):
            await self._via_alert(source, first, box)

    def _takes_every_kind(self, site: str, box: str, source: str) -> bool:
        key = (site, box, source)
        full = self._full.get(key)
        if full is None:
            if not _token_ok(source):
                return False
            token = escape(source)
            full = all(
                any(subject_covers(f, f"{ROOT}.{site}.{box}.{token}.{kind}") for f in self.config.subjects)
                for kind in KINDS
            )
            if len(self._full) >= MAX_BOXES:
                self._full.clear()
            self._full[key] = full
        return full

    async def _via_alert(self, source: str, first: str, second: str) -> None:
        log.warning("hub_source_via_two_boxes", source=source, first_box=first, second_box=second)
        env = events_pb2.Envelope(
            alert=events_pb2.Alert(
                rule="hub.source_via_two_boxes",
                severity=events_pb2.Alert.WARNING,
                summary=f"events of {source!r} arrive through two boxes: {first!r} and {second!r}",
                attributes={"source": source, "first_box": first, "second_box": second},
            )
        )
        await self.bus.publish([self.stamper.stamp(env)])

    async def _terminate(self, msg: Msg, reason: str, stats: BoxStats | None) -> None:
        await _quietly(msg.term())
        self._plan.terminated(msg.metadata.sequence.stream)
        self.m.rejected.labels(reason=reason).inc()
        self.m.messages.labels(outcome="rejected").inc()
        if stats is not None:
            stats.rejected += 1

    async def _ack(self) -> None:
        target = self._plan.target()
        if target is None:
            return
        seq, msg = target
        await _quietly(msg.ack())
        self._plan.acked(seq)
        self.m.acks.inc()

    def _box(self, box: str, now_ns: int) -> BoxStats:
        stats = self.boxes.get(box)
        if stats is None:
            if len(self.boxes) >= MAX_BOXES:
                self.boxes.pop(next(iter(self.boxes)))
            stats = self.boxes[box] = BoxStats()
            self.m.boxes.set(len(self.boxes))
        stats.last_ns = now_ns
        return stats

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """JSON-ready, for `amoskys status`."""
        return {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "stream": self.config.stream,
            "durable": self.durable,
            "lag_messages": self.lag,
            "ack_blocked": self._plan.blocked,
            "boxes": {
                box: {
                    "messages": s.messages,
                    "committed": s.committed,
                    "rejected": s.rejected,
                    "sequence_gaps": s.gaps,
                    "sources": sorted(s.sources)[:100],
                    "last_ns": s.last_ns,
                }
                for box, s in sorted(self.boxes.items())[:1000]
            },
        }


def _token_ok(name: str) -> bool:
    try:
        escape(name)
    except ValueError:
        return False
    return True


async def _quietly(ack: Awaitable[None]) -> None:
    """An ack, NAK or term: one lost with the connection changes nothing (the message comes back
    after the ack wait, and the store drops it as a duplicate)."""
    try:
        await ack
    except nats.errors.Error as err:
        log.debug("hub_ack_not_sent", error=repr(err))


async def _close_quietly(nc: NATS) -> None:
    try:
        await nc.close()
    except nats.errors.Error:
        pass
