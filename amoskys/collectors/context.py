"""CollectorContext: what a running collector is given — publish, logger, metrics, clock, data dir."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from amoskys.collectors import capabilities
from amoskys.collectors.clock import Clock, SystemClock
from amoskys.collectors.taps import PacketTaps
from amoskys.events import EnvelopeStamper, kind_of
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2

#: Where stamped envelopes go: ``Bus.publish`` in the appliance, a list's append in tests.
PublishFn = Callable[[Sequence[events_pb2.Envelope]], Awaitable[object]]


@dataclass(frozen=True)
class ApplianceInfo:
    """Who is running the collectors: shown by `amoskys status`, carried by the heartbeat."""

    name: str
    version: str
    hostname: str
    mode: Literal["appliance", "agent"]
    started_ns: int
    pid: int = field(default_factory=os.getpid)
    #: the outbox's lag upstream as (events, seconds): set when forwarders run; None: (0, 0.0)
    outbox_lag: Callable[[], tuple[int, float]] | None = None

    def snapshot(self, clock: Clock) -> dict[str, Any]:
        """A JSON-ready view, with the uptime as of now on `clock`."""
        return {
            "name": self.name,
            "version": self.version,
            "hostname": self.hostname,
            "mode": self.mode,
            "pid": self.pid,
            "started_ns": self.started_ns,
            "uptime_seconds": round(max(0, clock.time_ns() - self.started_ns) / 1e9, 3),
        }


class CollectorContext:
    """One collector's handle on the appliance; it lives across restarts, so its counts accumulate.

    ``publish()`` stamps identity (source, boot_id, source_seq, event_id; ts_ns from the clock when
    the collector left it unset) with the appliance's one shared EnvelopeStamper, hands the envelope to
    the sink, and counts it. Everything else a collector needs is an attribute: ``log`` (bound with
    ``collector=<name>``), ``metrics``, ``clock``, ``data_dir``, ``appliance``, ``has_capability``.
    """

    def __init__(
        self,
        name: str,
        *,
        publish: PublishFn,
        stamper: EnvelopeStamper,
        metrics: Metrics,
        data_dir: Path,
        appliance: ApplianceInfo,
        clock: Clock | None = None,
        has_capability: Callable[[str], bool] = capabilities.has_capability,
        collectors_running: Callable[[], int] = lambda: 0,
        packet_taps: PacketTaps | None = None,
    ) -> None:
        self.name = name
        # where passive watchers (discovery) meet the capture path (flow); one per appliance
        self.packet_taps = packet_taps
        self.log = structlog.get_logger(f"amoskys.collectors.{name}").bind(collector=name)
        self.metrics = metrics
        self.clock: Clock = clock or SystemClock()
        self.data_dir = data_dir
        self.appliance = appliance
        self.has_capability = has_capability
        self.collectors_running = collectors_running
        self._publish = publish
        self._stamper = stamper
        self._events_metric = metrics.collector_events.labels(name)
        self._errors_metric = metrics.collector_errors.labels(name)
        self._busy_metric = metrics.collector_busy.labels(name)
        self._skipped_metric = metrics.collector_ticks_skipped.labels(name)
        self.events = 0
        self.errors = 0
        self.last_error = ""
        self.last_error_ns = 0
        self.busy_seconds = 0.0
        self.ticks_skipped = 0

    async def publish(self, envelope: events_pb2.Envelope) -> None:
        """Stamp one envelope whose body is set, and publish it."""
        await self.publish_many((envelope,))

    async def publish_many(self, envelopes: Sequence[events_pb2.Envelope]) -> None:
        """Stamp and publish several envelopes in one call to the sink (cheaper for snapshots)."""
        if not envelopes:
            return
        for envelope in envelopes:
            if not kind_of(envelope):
                raise ValueError(f"collector {self.name!r} published an envelope without a body")
            self._stamper.stamp(envelope, ts_ns=envelope.ts_ns or self.clock.time_ns())
        await self._publish(envelopes)
        self.events += len(envelopes)
        self._events_metric.inc(len(envelopes))

    def count_error(self, error: BaseException | str) -> None:
        """Count an error of this collector and remember it as the last one (logging is the caller's)."""
        text = error if isinstance(error, str) else describe_error(error)
        self.errors += 1
        self.last_error = text
        self.last_error_ns = self.clock.time_ns()
        self._errors_metric.inc()

    def count_skipped_ticks(self, count: int) -> None:
        self.ticks_skipped += count
        self._skipped_metric.inc(count)

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Measure the wall-clock time of a block of collecting work into busy seconds."""
        started = self.clock.monotonic()
        try:
            yield
        finally:
            elapsed = max(0.0, self.clock.monotonic() - started)
            self.busy_seconds += elapsed
            self._busy_metric.inc(elapsed)

    def poll(
        self, interval_seconds: float, collect: Callable[[], Awaitable[None]]
    ) -> Coroutine[Any, Any, None]:
        """``await ctx.poll(interval, collect)``: run collect() every interval (see amoskys.collectors.poll)."""
        from amoskys.collectors.poll import poll

        return poll(self, interval_seconds, collect)


def describe_error(error: BaseException) -> str:
    """``Type: message``; for an exception group (a TaskGroup's), its first leaf and how many more."""
    leaves: list[BaseException] = []

    def walk(err: BaseException) -> None:
        if isinstance(err, BaseExceptionGroup):
            for sub in err.exceptions:
                walk(sub)
        else:
            leaves.append(err)

    walk(error)
    first = leaves[0] if leaves else error
    text = f"{type(first).__name__}: {first}"
    return text + (f" (and {len(leaves) - 1} more)" if len(leaves) > 1 else "")
