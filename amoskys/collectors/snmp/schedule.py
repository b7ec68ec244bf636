"""TargetPoller: one target's schedule, deadline, backoff and state — so one slow device spoils nothing.

Each target runs its own loop on the collector's clock: due at its offset, then every interval. A
poll waits for a slot of the collector's concurrency limit, then must finish within
`deadline_seconds` (``asyncio.timeout``) or it is abandoned. A target that fails is retried after
interval × 2^(failures − 1), capped at `backoff_max_seconds`, each wait from the second failure on
stretched by a random 0–10 % (`amoskys.retry.Backoff`, jitter (1.0, 1.1)): never sooner than that
curve, and targets that died together (a site behind one dead uplink) spread their retries instead
of polling in lockstep. The first failure of a streak logs
``snmp_target_unreachable`` (no answer) or ``snmp_target_failing`` (it answered, wrongly) once, at
warning; the first success after it logs ``snmp_target_recovered`` once, at info. Every poll, good or
bad, publishes one SnmpSample.
"""

from __future__ import annotations

import asyncio
import math
import random
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from amoskys.collectors.snmp.errors import SnmpPollError
from amoskys.collectors.snmp.poller import fetch, lacks_hc
from amoskys.collectors.snmp.rows import TargetState, assemble
from amoskys.proto import events_pb2
from amoskys.retry import Backoff

if TYPE_CHECKING:
    from amoskys.collectors.context import CollectorContext
    from amoskys.collectors.snmp.client import Session, SnmpClient
    from amoskys.collectors.snmp.config import SnmpConfig, SnmpTargetConfig
    from amoskys.collectors.snmp.series import SnmpSeries

NO_ANSWER = ("timeout", "deadline", "resolve")


class Activity:
    """Busy time of the collector: the wall-clock time during which at least one poll runs."""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        self.running = 0
        self._busy: AbstractContextManager[None] | None = None

    def __enter__(self) -> None:
        self.running += 1
        if self.running == 1:
            self._busy = self.ctx.busy()
            self._busy.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.running -= 1
        if self.running == 0 and self._busy is not None:
            busy, self._busy = self._busy, None
            busy.__exit__(None, None, None)


#: How much a backoff wait is stretched at random: never sooner than the curve, at most 10 % later.
BACKOFF_JITTER = (1.0, 1.1)


class TargetPoller:
    """Polls one target on its schedule and publishes each result."""

    def __init__(
        self,
        target: SnmpTargetConfig,
        session: Session,
        *,
        config: SnmpConfig,
        ctx: CollectorContext,
        client: SnmpClient,
        limiter: asyncio.Semaphore,
        activity: Activity,
        series: SnmpSeries,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.session = session
        self.config = config
        self.ctx = ctx
        self.client = client
        self.limiter = limiter
        self.activity = activity
        self.series = series
        self.metrics = series.metrics
        self.profiles = config.profiles_of(target)
        self.state: TargetState | None = None
        self.expect_hc = True
        self.failures = 0
        self.failing_since = 0.0
        self.backoff = Backoff(
            config.interval_seconds,
            config.backoff_max_seconds,
            jitter=BACKOFF_JITTER,
            rng=rng or random.Random(),
            clock=ctx.clock,
        )

    async def run(self, first_due: float) -> None:
        """Poll at `first_due` (monotonic) and then on schedule, forever."""
        clock, interval = self.ctx.clock, self.config.interval_seconds
        due = first_due
        while True:
            await clock.sleep(due - clock.monotonic())
            async with self.limiter:
                await self.poll_once()
            wait, curve = self.wait_after_poll()
            if curve > interval:
                skipped = math.ceil(curve / interval) - 1
                self.metrics.snmp_polls_skipped.labels(self.target.name, "backoff").inc(skipped)
            due += wait
            now = clock.monotonic()
            if now > due:  # the slot or the poll came late: skip the ticks that passed, never bunch up
                missed = math.floor((now - due) / interval) + 1
                due += missed * interval
                self.ctx.count_skipped_ticks(missed)
                self.metrics.snmp_polls_skipped.labels(self.target.name, "late").inc(missed)

    def wait_after_poll(self) -> tuple[float, float]:
        """The wait until the next poll, and the curve it was drawn from (which counts the polls
        skipped): the interval while the target answers, then interval, 2×, 4×, ... up to
        `backoff_max_seconds`, jittered once the target is backed off (the first retry keeps the
        schedule)."""
        if self.failures <= 1:
            return self.config.interval_seconds, self.config.interval_seconds
        curve = self.backoff.curve(self.failures - 1)
        return self.backoff.delay(self.failures - 1), curve

    async def poll_once(self) -> events_pb2.SnmpSample:
        """One poll within the deadline; publishes and returns its SnmpSample."""
        clock, name = self.ctx.clock, self.target.name
        started, started_ns = clock.monotonic(), clock.time_ns()
        self.session.answered = False
        with self.activity:
            try:
                async with asyncio.timeout(self.config.deadline_seconds):
                    data = await fetch(
                        self.client,
                        self.session,
                        profiles=self.profiles,
                        max_repetitions=self.config.max_repetitions,
                        clock=clock,
                        expect_hc=self.expect_hc,
                    )
            except TimeoutError:
                deadline = self.config.deadline_seconds
                error = (
                    self.session.fail(
                        f"poll not finished after {deadline:g} s (deadline_seconds)", "deadline"
                    )
                    if self.session.answered
                    else self.session.fail(
                        f"no response after {deadline:g} s{self.session.timeout_hint}", "timeout"
                    )
                )
                return await self._failed(error, clock.monotonic() - started, started_ns)
            except SnmpPollError as err:
                return await self._failed(err, clock.monotonic() - started, started_ns)
        elapsed = clock.monotonic() - started
        done = assemble(name, self.target.endpoint, data, self.state, poll_seconds=round(elapsed, 6))
        self.state = done.state
        self.expect_hc = not lacks_hc(data.interfaces)
        m = self.metrics
        m.snmp_polls.labels(name, "ok").inc()
        m.snmp_poll_seconds.observe(elapsed)
        m.snmp_varbinds.labels(name).inc(data.varbinds)
        if done.counter_resets:
            m.snmp_counter_resets.labels(name).inc(done.counter_resets)
        if self.failures:
            self.ctx.log.info(
                "snmp_target_recovered",
                target=name,
                address=self.target.endpoint,
                failed_polls=self.failures,
                down_seconds=round(started - self.failing_since, 1),
            )
            self.failures = 0
        if done.sample.agent_restarted:
            self.ctx.log.info("snmp_agent_restarted", target=name, address=self.target.endpoint)
        seen_ns = started_ns + round((data.monotonic - started) * 1e9)
        await self._publish(done.sample, seen_ns)
        return done.sample

    async def _failed(self, error: SnmpPollError, elapsed: float, started_ns: int) -> events_pb2.SnmpSample:
        name = self.target.name
        m = self.metrics
        m.snmp_polls.labels(name, error.reason).inc()
        m.snmp_poll_seconds.observe(elapsed)
        self.ctx.count_error(str(error))
        if self.failures == 0:
            self.failing_since = self.ctx.clock.monotonic() - elapsed
            self.ctx.log.warning(
                "snmp_target_unreachable" if error.reason in NO_ANSWER else "snmp_target_failing",
                target=name,
                address=self.target.endpoint,
                reason=error.reason,
                error=str(error),
                retry_backoff_max_seconds=self.config.backoff_max_seconds,
            )
        self.failures += 1
        sample = events_pb2.SnmpSample(
            target=name,
            address=self.target.endpoint,
            reachable=False,
            error=str(error),
            poll_seconds=round(elapsed, 6),
        )
        await self._publish(sample, started_ns)
        return sample

    async def _publish(self, sample: events_pb2.SnmpSample, ts_ns: int) -> None:
        self.series.update(sample)
        envelope = events_pb2.Envelope(ts_ns=ts_ns)
        envelope.snmp.CopyFrom(sample)
        await self.ctx.publish(envelope)
