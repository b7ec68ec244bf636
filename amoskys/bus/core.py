"""The bus core: one publish path for local collectors and remote publishers, acking only after commit.

Remote batches: per-event validation with reasons (its size: `max_event_bytes`; who may say what:
validate.check) → the store's space (above its high-water mark only publishers below their fair share
of recent ingest are taken, up to the hard cap: quota.FairShare) → per-source quotas in events and in
bytes → store.submit, each event recorded with its origin (the authenticated sender it came through)
→ await the commit (bounded) → ack. Local collectors publish in-process (no gRPC, no
re-serialization) and are told to slow down, not refused, when the writer is behind. Committed
events fan out to subscribers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from amoskys.bus.fanout import Fanout, Subscription
from amoskys.bus.quota import FairShare, TokenBuckets
from amoskys.bus.validate import EVENT_TOO_LARGE, MAX_FUTURE_SKEW_NS, Rejection, check_fields, parse_event
from amoskys.errors import BusError, StoreError
from amoskys.metrics import Metrics
from amoskys.proto import bus_pb2, events_pb2
from amoskys.retry import Backoff
from amoskys.store import Store
from amoskys.store.errors import SubmitRefusedError
from amoskys.store.records import Outcome, Record
from amoskys.store.space import SpaceState
from amoskys.store.state import ChainAnchor

log = structlog.get_logger(__name__)


@dataclass
class IngestResult:
    status: int
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    backoff_hint_ms: int = 0
    message: str = ""
    reason: str = ""  # why RETRY (bounded: labels a metric)
    committed: list[Record] = field(default_factory=list)

    def to_ack(self, digest: bytes = b"") -> bus_pb2.PublishAck:
        return bus_pb2.PublishAck(
            status=self.status,  # type: ignore[arg-type]
            accepted=self.accepted,
            duplicates=self.duplicates,
            rejected=[bus_pb2.RejectedEvent(index=r.index, reason=r.reason) for r in self.rejected],
            backoff_hint_ms=self.backoff_hint_ms,
            message=self.message,
            digest=digest,
        )


#: The retry hint for a publisher refused above the store's high-water mark (what the store itself says).
HIGH_WATER_HINT_MS = 5000


def retry(hint_ms: int, reason: str, message: str) -> IngestResult:
    return IngestResult(status=bus_pb2.RETRY, backoff_hint_ms=max(1, hint_ms), message=message, reason=reason)


class Bus:
    """Validates, rate-limits, hands events to the store writer and acks only after the commit."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        appliance_name: str,
        quota_events_per_second: float,
        quota_burst_events: float,
        ack_timeout_seconds: float,
        max_event_bytes: int,
        quota_bytes_per_second: float,
        quota_burst_bytes: float,
        clock: Callable[[], float] = time.monotonic,
        ack_before_commit_ms: int = 0,
    ) -> None:
        if not appliance_name:
            raise ValueError("Bus: appliance_name is required (no remote event may use it as its source)")
        self.store = store
        self.metrics = metrics
        self.appliance_name = appliance_name
        self.quota = TokenBuckets(quota_events_per_second, quota_burst_events, clock=clock)
        self.byte_quota = TokenBuckets(quota_bytes_per_second, quota_burst_bytes, clock=clock)
        self.max_event_bytes = max_event_bytes
        self.fair_share = FairShare(clock=clock)
        self.ack_timeout = ack_timeout_seconds
        self.fanout: Fanout[Record] = Fanout(on_drop=self._count_dropped)
        self.closing = False
        self._ack_before_commit_ms = ack_before_commit_ms  # test-only fault (AMOSKYS_FAULTS)
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, name: str, maxlen: int = 10_000) -> Subscription[Record]:
        """`name` is "kind" or "kind:detail"; only the kind (a fixed word of the caller's) becomes a
        metric label: the detail may name a user and belongs in logs only."""
        return self.fanout.subscribe(name, maxlen)

    def _count_dropped(self, name: str, n: int) -> None:
        self.metrics.bus_subscriber_dropped.labels(subscriber=name.partition(":")[0]).inc(n)

    # ------------------------------------------------------------------ remote path
    async def ingest(
        self,
        raws: Sequence[bytes],
        *,
        sender: str,
        relay: bool,
        synthetic: bool = False,
        anchor: ChainAnchor | None = None,
        on_submit: Callable[[], None] | None = None,
        denied_sources: frozenset[str] = frozenset(),
    ) -> IngestResult:
        """Judge each serialized envelope on its own, store the good ones, ack after the commit.

        `sender` is the authenticated identity; `relay` says it was enrolled with the relay role,
        `synthetic` with the loadgen role (its events are stored marked synthetic and counted apart).
        Every stored event records `sender` as its origin (never empty: empty means in-process).
        `anchor` (the sender's new chain position) is committed in the same transaction;
        `on_submit` is called once the store has taken the batch (before its commit). An event whose
        source (lowercased) is in `denied_sources` is rejected as "denied_source" (the hub's deny list).
        """
        if self.closing:
            return retry(1000, "closing", "appliance is shutting down")
        records: list[Record] = []
        rejected: list[Rejection] = []
        future_limit = time.time_ns() + MAX_FUTURE_SKEW_NS
        skewed = 0
        for i, raw in enumerate(raws):
            record, reason = self._judge_event(raw, sender=sender, relay=relay, synthetic=synthetic)
            if (
                reason is None
                and denied_sources
                and record is not None
                and record.source.lower() in denied_sources
            ):
                reason = "denied_source"
            if reason is not None or record is None:
                rejected.append(Rejection(i, reason or "malformed_envelope"))
                self.metrics.bus_events.labels(
                    outcome="rejected", reason=reason or "malformed_envelope"
                ).inc()
                if synthetic:
                    self.metrics.bus_synthetic_events.labels(outcome="rejected").inc()
                continue
            if record.ts_ns > future_limit:
                skewed += 1  # accepted and flagged, never rejected: the publisher's clock is off
            records.append(record)
        if skewed:
            self.metrics.bus_events_skewed.inc(skewed)
        result = IngestResult(status=bus_pb2.OK, rejected=rejected)
        if not records:
            if on_submit is not None:
                on_submit()
            if anchor is not None:
                await self.store.state.set_chain_anchor(anchor)
            return result
        space = self.store.space_state
        if space is SpaceState.HIGH_WATER and self.fair_share.above_fair_share(sender):
            return retry(
                HIGH_WATER_HINT_MS,
                "store_high_water",
                f"store above its high-water mark and {sender!r} is at or above its fair share of recent ingest",
            )
        nbytes = sum(len(r.envelope) for r in records)
        refused = self._over_quota(sender, len(records), nbytes)
        if refused is not None:
            return refused
        if self._ack_before_commit_ms:
            return self._ack_early(records, result)
        try:
            # Between high water and the hard cap the bus has judged the fair share above: the store
            # takes these events as it takes local ones (at the hard cap it refuses every remote one).
            future = self.store.submit(records, local=space is SpaceState.HIGH_WATER, anchor=anchor)
        except SubmitRefusedError as err:
            return retry(err.backoff_hint_ms, f"store_{err.reason}", f"store refused: {err.reason}")
        self.fair_share.add(sender, nbytes)
        if on_submit is not None:
            on_submit()
        try:
            outcomes = await asyncio.wait_for(asyncio.shield(future), self.ack_timeout)
        except TimeoutError:
            # The commit may still land; the publisher re-sends the same ids and dedup absorbs it.
            return retry(1000, "commit_timeout", f"commit not done within {self.ack_timeout:g} s")
        except StoreError as err:
            self.metrics.bus_store_failures.inc()
            return retry(1000, "store_error", f"store failed: {err}")
        return self._tally(records, outcomes, result)

    def _judge_event(
        self, raw: bytes, *, sender: str, relay: bool, synthetic: bool
    ) -> tuple[Record | None, str | None]:
        """The event's Record (stored as received, its identity fields read once), or None and why it is
        rejected."""
        if len(raw) > self.max_event_bytes:
            return None, EVENT_TOO_LARGE  # never parsed
        env = parse_event(raw)
        if env is None:
            return None, "malformed_envelope"
        event_id, source, boot_id, source_seq = env.event_id, env.source, env.boot_id, env.source_seq
        kind, ts_ns = env.WhichOneof("body"), env.ts_ns
        reason = check_fields(
            event_id,
            source,
            boot_id,
            source_seq,
            kind,
            ts_ns,
            sender=sender,
            relay=relay,
            reserved_source=self.appliance_name,
        )
        if reason is not None or kind is None:
            return None, reason
        record = Record(
            source=source,
            event_id=event_id,
            boot_id=boot_id,
            source_seq=source_seq,
            kind=kind,
            ts_ns=ts_ns,
            envelope=raw,
            parsed=env,
            origin=sender,
            synthetic=synthetic,
        )
        return record, None

    def _over_quota(self, sender: str, events: int, nbytes: int) -> IngestResult | None:
        """RETRY when `sender` is over its events or its bytes quota; else take both (all or nothing)."""
        wait_events = self.quota.wait(sender, events)
        wait_bytes = self.byte_quota.wait(sender, nbytes)
        if wait_events > 0 or wait_bytes > 0:
            self.metrics.bus_quota_exceeded.inc()
            hint_ms = int(max(wait_events, wait_bytes) * 1000) + 1
            if wait_bytes > wait_events:
                return retry(
                    hint_ms, "quota_bytes", f"byte quota for {sender!r} exceeded ({nbytes} bytes offered)"
                )
            return retry(hint_ms, "quota", f"quota for {sender!r} exceeded")
        self.quota.take(sender, events)
        self.byte_quota.take(sender, nbytes)
        return None

    def _tally(self, records: list[Record], outcomes: list[Outcome], result: IngestResult) -> IngestResult:
        committed = [r for r, o in zip(records, outcomes, strict=True) if o is Outcome.COMMITTED]
        result.accepted = len(committed)
        result.duplicates = len(records) - len(committed)
        result.committed = committed
        self.metrics.bus_events.labels(outcome="accepted", reason="").inc(result.accepted)
        self.metrics.bus_events.labels(outcome="duplicate", reason="").inc(result.duplicates)
        if records and records[0].synthetic:  # one ingest is one sender's: all synthetic or none
            self.metrics.bus_synthetic_events.labels(outcome="accepted").inc(result.accepted)
            self.metrics.bus_synthetic_events.labels(outcome="duplicate").inc(result.duplicates)
        self.fanout.publish(committed)
        return result

    def _ack_early(self, records: list[Record], result: IngestResult) -> IngestResult:
        """FAULT (tests only): ack OK now, commit after a delay — what a lying bus does."""

        async def later() -> None:
            await asyncio.sleep(self._ack_before_commit_ms / 1000)
            try:
                await self.store.submit(records, local=False)
            except StoreError:
                pass  # the fault's whole point: the publisher was already told OK

        task = asyncio.get_running_loop().create_task(later())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        result.accepted = len(records)
        return result

    # ------------------------------------------------------------------ local path
    async def publish(self, envelopes: Sequence[events_pb2.Envelope]) -> None:
        """Local collectors: hand stamped envelopes to the writer without waiting for the commit.

        When the writer is behind, this waits (backpressure) rather than dropping; it raises
        BusError only once the appliance is shutting down.
        """
        records = [Record.from_envelope(env) for env in envelopes]
        backoff = Backoff(base_seconds=0.005, cap_seconds=0.5)
        while True:
            if self.closing:
                raise BusError("bus is shutting down: local events not accepted")
            try:
                future = self.store.submit(records, local=True)
                break
            except SubmitRefusedError as err:
                if err.reason == "closing":
                    raise BusError("store is closing: local events not accepted") from err
                await asyncio.sleep(backoff.next_delay(err.backoff_hint_ms / 1000))
        future.add_done_callback(lambda f: self._local_done(records, f))

    def _local_done(self, records: list[Record], future: asyncio.Future[list[Outcome]]) -> None:
        if future.cancelled():
            return
        err = future.exception()
        if err is not None:
            self.metrics.bus_local_lost.inc(len(records))
            log.error("local_events_lost", count=len(records), error=str(err))
            return
        self._tally(records, future.result(), IngestResult(status=bus_pb2.OK))

    async def close(self) -> None:
        """Refuse new work (remote publishers get RETRY) and let background work finish."""
        self.closing = True
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
