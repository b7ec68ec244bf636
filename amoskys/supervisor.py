"""The collector supervisor: restart policy, backoff with jitter, and each collector's state.

Each collector runs in a task the supervisor owns (in its own TaskGroup, itself a task of the
appliance's). A crash is restarted after an exponential, jittered delay; after `max_fast_failures`
crashes in a row, each within `healthy_after_seconds` of its start, the collector is disabled with
the reason. A collector whose ``self_check()`` names something missing ("needs CAP_NET_RAW") is
disabled without ever running. Operators start, stop and restart collectors by name at runtime.

Which operator actions each state allows (`allowed_actions`; anything else raises
CollectorRefusedError naming the state and its reason, and changes nothing):

- ``running``: stop, restart (start: "already running")
- ``backoff``, ``degraded``: start (now, skipping the wait), stop, restart
- ``stopped``: start (stop: "already stopped"; restart: nothing to restart)
- ``disabled``: start, except when its self-check disabled it ("needs CAP_NET_RAW", "no interface
  configured"): starting it again would only fail the same check, so no action is offered. Stop is
  refused ("already disabled: needs CAP_NET_RAW"), which keeps the reason that says how to fix it.

A start that ends with the collector disabled (its self-check fails again, or it fails fatally at
once) is a refusal naming the reason, never a success.

A failure caused by the machine running short of a resource (EMFILE, ENFILE, ENOMEM, ENOBUFS, or a
MemoryError) is not a crash: the collector is ``degraded: retrying (EMFILE)`` while it waits (backoff
capped at `resource_retry_max_seconds`), such failures never count toward `max_fast_failures`, and it
comes back by itself once the resource does.

Logging follows Home Assistant's coordinators: one error when a collector starts failing, one info
line when it has run healthy again for `healthy_after_seconds` — never one line per crash.

This is the one module allowed ``except Exception``: a collector's bug must never take the
appliance down.
"""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from amoskys.collectors import capabilities
from amoskys.collectors import registry as collector_registry
from amoskys.collectors.base import Collector, CollectorConfig, NotConfigured
from amoskys.collectors.clock import Clock, SystemClock
from amoskys.collectors.context import ApplianceInfo, CollectorContext, PublishFn
from amoskys.collectors.taps import PacketTaps
from amoskys.errors import AmoskysError, CollectorError, FatalCollectorError, StartupError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.retry import Backoff

if TYPE_CHECKING:
    from amoskys.config import CollectorsConfig

log = structlog.get_logger(__name__)

State = Literal["running", "stopped", "backoff", "degraded", "disabled"]
STATES: tuple[State, ...] = ("running", "stopped", "backoff", "degraded", "disabled")

#: errno values meaning the machine (or this process) ran short of something: not the collector's bug.
RESOURCE_ERRNOS = {
    errno.EMFILE: "EMFILE",
    errno.ENFILE: "ENFILE",
    errno.ENOMEM: "ENOMEM",
    errno.ENOBUFS: "ENOBUFS",
}


class UnknownCollectorError(AmoskysError, LookupError):
    """A collector name that no registered collector has (from the control socket or the CLI)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"unknown collector {name!r} (known: {', '.join(self.known) or 'none'})")


@dataclass(frozen=True)
class RestartPolicy:
    """When and how often a crashed collector is started again."""

    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    healthy_after_seconds: float = 60.0
    max_fast_failures: int = 5
    stop_timeout_seconds: float = 5.0  # a runtime stop waits this long for the collector to end
    resource_retry_max_seconds: float = 30.0  # retries after a resource shortage wait at most this long

    @classmethod
    def from_config(cls, config: CollectorsConfig) -> RestartPolicy:
        return cls(
            initial_backoff_seconds=config.restart_initial_seconds,
            max_backoff_seconds=config.restart_max_seconds,
            healthy_after_seconds=config.healthy_after_seconds,
            max_fast_failures=config.max_fast_failures,
        )

    def backoff(self, rng: random.Random) -> Backoff:
        """The restart delays (see `amoskys.retry`): ±`jitter` around the curve."""
        return Backoff(
            self.initial_backoff_seconds,
            self.max_backoff_seconds,
            factor=self.multiplier,
            jitter=(1 - self.jitter, 1 + self.jitter),
            rng=rng,
        )

    def resource_backoff(self, rng: random.Random) -> Backoff:
        """The delays after resource shortages: the same curve, capped lower, so a collector is back
        soon after the resource is."""
        cap = min(self.max_backoff_seconds, self.resource_retry_max_seconds)
        return replace(self.backoff(rng), cap_seconds=cap)


@dataclass(frozen=True)
class CollectorStatus:
    """One collector as `amoskys status`, the dashboard and the control socket show it."""

    name: str
    state: State
    reason: str  # why it is stopped, backing off, degraded or disabled ("" while running)
    mode: str
    events: int
    errors: int
    restarts: int
    last_error: str
    last_error_ns: int
    busy_seconds: float
    since_ns: int  # when it entered this state
    actions: tuple[str, ...] = ()  # the operator actions this state allows (see the module docstring)

    @property
    def state_text(self) -> str:
        """``running``, or the state with its reason: ``disabled: needs CAP_NET_RAW``."""
        return f"{self.state}: {self.reason}" if self.reason else self.state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"busy_seconds": round(self.busy_seconds, 6), "actions": list(self.actions)}


class CollectorRefusedError(CollectorError):
    """An operator action that the collector's state does not allow, or a start that ended with the
    collector disabled: nothing was done (or nothing started). The message names the reason."""

    def __init__(self, name: str, message: str, *, nothing_to_do: bool = False) -> None:
        self.name = name
        self.nothing_to_do = nothing_to_do  # already in the state asked for: nothing to act on
        super().__init__(message)


class _Slot:
    """The supervisor's record of one collector: its class, config, context, task and state."""

    def __init__(self, cls: type[Collector], config: CollectorConfig, ctx: CollectorContext) -> None:
        self.name = cls.name
        self.cls = cls
        self.config = config
        self.ctx = ctx
        self.state: State = "stopped"
        self.reason = "not started yet"
        self.mode = ""
        self.collector: Collector | None = None  # the running instance: its mode may change as it runs
        self.restarts = 0
        self.since_ns = 0
        self.task: asyncio.Task[None] | None = None
        self.fast_failures = 0  # crashes in a row, each soon after its start
        self.shortages = 0  # resource shortages in a row (never counted as crashes)
        self.failing = False  # "collector_failed" or "_degraded" was logged; "collector_recovered" is due
        self.stop_reason = ""  # set by whoever cancels the task
        self.failed_check = False  # disabled by its self-check: starting it again would fail the same way

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()


class Supervisor:
    """Runs collectors as supervised tasks: ``run()`` until ``stop()``; start/stop/restart by name."""

    def __init__(
        self,
        collectors: Iterable[tuple[type[Collector], CollectorConfig]],
        *,
        publish: PublishFn,
        stamper: EnvelopeStamper,
        metrics: Metrics,
        data_dir: Path,
        appliance: ApplianceInfo,
        policy: RestartPolicy | None = None,
        clock: Clock | None = None,
        has_capability: Callable[[str], bool] = capabilities.has_capability,
        rng: random.Random | None = None,
        packet_taps: PacketTaps | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics
        rng = rng or random.Random()
        self._restart_delays = self.policy.backoff(rng)
        self._shortage_delays = self.policy.resource_backoff(rng)
        self._slots: dict[str, _Slot] = {}
        for cls, config in collectors:
            if cls.name in self._slots:
                raise ValueError(f"two collectors are named {cls.name!r}")
            if not isinstance(config, cls.Config):
                raise TypeError(
                    f"collector {cls.name!r} needs a {cls.Config.__name__} config, got {type(config).__name__}"
                )
            ctx = CollectorContext(
                cls.name,
                publish=publish,
                stamper=stamper,
                metrics=metrics,
                data_dir=data_dir,
                appliance=appliance,
                clock=self.clock,
                has_capability=has_capability,
                collectors_running=self.running_count,
                packet_taps=packet_taps,
            )
            if getattr(cls, "Metrics", None) is not None:
                metrics.component(cls.Metrics)  # its series show from the start, at zero
            slot = _Slot(cls, config, ctx)
            self._slots[cls.name] = slot
            metrics.collector_restarts.labels(cls.name)
            self._set(slot, "stopped", "not started yet")
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._started = False

    @classmethod
    def from_config(
        cls,
        config: CollectorsConfig,
        registry: dict[str, type[Collector]] | None = None,
        **kwargs: Any,
    ) -> Supervisor:
        """Every registered collector with its section of `config`, and the policy from `config`."""
        if registry is None:
            registry = collector_registry.classes()
        pairs = [(c, config.section_named(name)) for name, c in sorted(registry.items())]
        kwargs.setdefault("policy", RestartPolicy.from_config(config))
        return cls(pairs, **kwargs)

    # ------------------------------------------------------------------ status
    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def running_count(self) -> int:
        return sum(1 for s in self._slots.values() if s.state == "running")

    def status_of(self, name: str) -> CollectorStatus:
        slot = self._slot(name)
        ctx = slot.ctx
        return CollectorStatus(
            name=slot.name,
            state=slot.state,
            reason=slot.reason,
            mode=str(getattr(slot.collector, "mode", slot.mode)) if slot.collector is not None else slot.mode,
            events=ctx.events,
            errors=ctx.errors,
            restarts=slot.restarts,
            last_error=ctx.last_error,
            last_error_ns=ctx.last_error_ns,
            busy_seconds=ctx.busy_seconds,
            since_ns=slot.since_ns,
            actions=self._allowed(slot),
        )

    def status(self) -> list[CollectorStatus]:
        return [self.status_of(name) for name in self._slots]

    def allowed_actions(self, name: str) -> tuple[str, ...]:
        """The operator actions (start, stop, restart) the collector's current state allows."""
        return self._allowed(self._slot(name))

    @staticmethod
    def _allowed(slot: _Slot) -> tuple[str, ...]:
        if slot.state == "running":
            return ("stop", "restart")
        if slot.state in ("backoff", "degraded"):
            return ("start", "stop", "restart")
        if slot.state == "disabled" and slot.failed_check:
            return ()
        return ("start",)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Start every enabled collector, supervise until ``stop()``, then cancel them all."""
        if self._started:
            raise RuntimeError("Supervisor.run() was already called")
        self._started = True
        try:
            if self._stopping.is_set():
                return
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for slot in self._slots.values():
                    if slot.config.enabled:
                        self._spawn(slot)
                    else:
                        self._set(slot, "disabled", "enabled = false in the config")
                try:
                    await self._stopping.wait()
                finally:  # also when run() itself is cancelled: say why before the group cancels
                    for slot in self._slots.values():
                        if slot.task is not None and not slot.task.done():
                            slot.stop_reason = "appliance stopping"
                            slot.task.cancel()
        finally:
            self._tg = None
            self._done.set()

    async def stop(self) -> None:
        """Cancel every collector and return once ``run()`` has returned (bound it with a timeout:
        a collector that ignores cancellation holds this up)."""
        self._stopping.set()
        if self._started:
            await self._done.wait()

    async def start_collector(self, name: str) -> CollectorStatus:
        """Start a stopped, backing-off or disabled collector now (a fresh failure count).

        Raises CollectorRefusedError when it is already running, or when it ends up disabled (its
        self-check failed again: the message names the reason)."""
        slot = self._slot(name)
        self._require_running(name)
        if slot.state == "running":
            raise CollectorRefusedError(name, f"collector {name!r} is already running", nothing_to_do=True)
        if slot.alive():  # backing off or degraded: skip the wait
            await self._cancel(slot, "starting again now")
        return await self._start(slot)

    async def stop_collector(self, name: str) -> CollectorStatus:
        """Stop a collector until it is started again (by an operator or the next appliance start).

        Raises CollectorRefusedError when it is already stopped or disabled: a disabled collector keeps
        the reason it was disabled for (which says how to fix it)."""
        slot = self._slot(name)
        self._require_running(name)
        if "stop" not in self._allowed(slot):
            raise CollectorRefusedError(
                name, f"collector {name!r} is already {self.status_of(name).state_text}", nothing_to_do=True
            )
        if slot.alive():
            await self._cancel(slot, "stopped by operator")
        else:  # not expected (only running, backoff and degraded may be stopped, and they have a task)
            self._set(slot, "stopped", "stopped by operator")
        log.info("collector_stopped", collector=name, reason="stopped by operator")
        return self.status_of(name)

    async def restart_collector(self, name: str) -> CollectorStatus:
        """Stop and start a running, backing-off or degraded collector again.

        Raises CollectorRefusedError when it is stopped or disabled (nothing to restart: start it), or
        when it ends up disabled."""
        slot = self._slot(name)
        self._require_running(name)
        if "restart" not in self._allowed(slot):
            raise CollectorRefusedError(
                name,
                f"collector {name!r} is {self.status_of(name).state_text}: nothing to restart"
                + ("; start it instead" if "start" in self._allowed(slot) else ""),
            )
        if slot.alive():
            await self._cancel(slot, "restarted by operator")
            self._count_restart(slot)
        return await self._start(slot)

    async def _start(self, slot: _Slot) -> CollectorStatus:
        slot.fast_failures = 0
        self._spawn(slot)
        await asyncio.sleep(0)  # let it get as far as its first await: running, backing off or disabled
        status = self.status_of(slot.name)
        if status.state == "disabled":
            raise CollectorRefusedError(
                slot.name, f"collector {slot.name!r} did not start: {status.state_text}"
            )
        return status

    # ------------------------------------------------------------------ internals
    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise UnknownCollectorError(name, self._slots) from None

    def _require_running(self, name: str) -> None:
        if self._tg is None or self._stopping.is_set():
            raise CollectorError(f"collector {name!r}: the supervisor is not running (starting or stopping)")

    def _spawn(self, slot: _Slot) -> None:
        if self._tg is None:
            raise RuntimeError("the supervisor is not running")
        slot.stop_reason = ""
        slot.failed_check = False
        task = self._tg.create_task(self._supervise(slot), name=f"collector:{slot.name}")
        task.add_done_callback(lambda t: self._task_done(slot, t))
        slot.task = task

    def _task_done(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        # also covers a task cancelled before it ever ran (its except clause never saw the cancel)
        if task is slot.task and task.cancelled() and slot.state != "stopped":
            self._set(slot, "stopped", slot.stop_reason or "cancelled")

    async def _cancel(self, slot: _Slot, reason: str) -> None:
        task = slot.task
        if task is None:
            return
        slot.stop_reason = reason
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.policy.stop_timeout_seconds)
        if not done:
            raise CollectorError(
                f"collector {slot.name!r} did not stop within {self.policy.stop_timeout_seconds} s "
                f"of being cancelled"
            )

    def _set(self, slot: _Slot, state: State, reason: str) -> None:
        slot.state, slot.reason = state, reason
        slot.since_ns = self.clock.time_ns()
        self.metrics.collector_up.labels(slot.name).set(1 if state == "running" else 0)
        for s in STATES:
            self.metrics.collector_state.labels(slot.name, s).set(1 if s == state else 0)
        # disabled although the config wants it running: not "enabled = false", not "nothing configured"
        failed = state == "disabled" and slot.config.enabled and not isinstance(reason, NotConfigured)
        self.metrics.collector_failed.labels(slot.name).set(1 if failed else 0)

    def _count_restart(self, slot: _Slot) -> None:
        slot.restarts += 1
        self.metrics.collector_restarts.labels(slot.name).inc()

    async def _supervise(self, slot: _Slot) -> None:
        """The life of one collector task: (re)start it until it is disabled, returns or is cancelled."""
        try:
            while True:
                started = self.clock.monotonic()
                try:
                    collector = slot.cls(slot.config, slot.ctx)
                    reason = _self_check(collector)
                    if reason:
                        slot.failed_check = True
                        self._set(slot, "disabled", reason)
                        level = log.info if isinstance(reason, NotConfigured) else log.warning
                        level("collector_disabled", collector=slot.name, reason=reason)
                        return
                    slot.mode = str(getattr(collector, "mode", ""))
                    slot.collector = collector
                    self._set(slot, "running", "")
                    # while failing, restarts are not news: the failure and the recovery are
                    (log.debug if slot.failing else log.info)(
                        "collector_started", collector=slot.name, mode=slot.mode
                    )
                    await self._run_collector(slot, collector)
                except Exception as err:
                    if slot.stop_reason:
                        # it raised while being cancelled (its cleanup failed): still a cancellation.
                        # (Task.cancelling() cannot tell: on 3.11 a TaskGroup inside the collector
                        # may leave it raised after a plain crash.)
                        raise asyncio.CancelledError from err
                    delay = self._failed(slot, err, ran_seconds=self.clock.monotonic() - started)
                    if delay is None:
                        return
                    await self.clock.sleep(delay)
                    self._count_restart(slot)
                    continue
                if slot.stop_reason:  # it swallowed our cancellation and returned
                    raise asyncio.CancelledError
                self._set(slot, "stopped", "run() returned")
                log.warning("collector_returned", collector=slot.name)
                return
        except asyncio.CancelledError:
            self._set(slot, "stopped", slot.stop_reason or "cancelled")
            raise

    async def _run_collector(self, slot: _Slot, collector: Collector) -> None:
        """Await collector.run(); while the collector is failing, time its recovery alongside."""
        timer = None
        if slot.failing and self._tg is not None:
            timer = self._tg.create_task(self._recover_after(slot), name=f"collector:{slot.name}:recovery")
        try:
            await collector.run()
        finally:
            if timer is not None:
                timer.cancel()

    async def _recover_after(self, slot: _Slot) -> None:
        await self.clock.sleep(self.policy.healthy_after_seconds)
        slot.failing = False
        slot.fast_failures = 0
        slot.shortages = 0
        log.info(
            "collector_recovered",
            collector=slot.name,
            healthy_seconds=self.policy.healthy_after_seconds,
            restarts=slot.restarts,
        )

    def _failed(self, slot: _Slot, err: Exception, *, ran_seconds: float) -> float | None:
        """Count a crash; disable the collector (→ None) or return the delay before its restart."""
        policy = self.policy
        slot.ctx.count_error(err)
        error = slot.ctx.last_error
        shortage = resource_shortage(err)
        if shortage is not None:
            return self._short_of(slot, shortage, error)
        if isinstance(err, FatalCollectorError) or (isinstance(err, StartupError) and not err.retry):
            self._set(slot, "disabled", str(err))
            log.error("collector_disabled", collector=slot.name, reason=str(err))
            return None
        if ran_seconds >= policy.healthy_after_seconds:
            slot.fast_failures = 0
        slot.fast_failures += 1
        if slot.fast_failures >= policy.max_fast_failures:
            reason = (
                f"crashed {slot.fast_failures} times in a row, each within "
                f"{policy.healthy_after_seconds:g} s of starting; last error: {error}"
            )
            self._set(slot, "disabled", reason)
            log.error("collector_disabled", collector=slot.name, reason=reason)
            return None
        delay = self._restart_delays.delay(slot.fast_failures - 1)
        self._set(slot, "backoff", f"restarting in {delay:.1f} s after: {error}")
        if not slot.failing:
            slot.failing = True
            log.error(
                "collector_failed",
                collector=slot.name,
                error=error,
                retry_in_seconds=round(delay, 3),
                exc_info=err,
            )
        else:
            log.debug(
                "collector_failed_again", collector=slot.name, error=error, retry_in_seconds=round(delay, 3)
            )
        return delay

    def _short_of(self, slot: _Slot, shortage: str, error: str) -> float:
        """A resource shortage: degraded, retried with a capped backoff, never disabled for it."""
        slot.shortages += 1
        delay = self._shortage_delays.delay(slot.shortages - 1)
        self._set(slot, "degraded", f"retrying ({shortage})")
        if not slot.failing:
            slot.failing = True
            log.warning(
                "collector_degraded",
                collector=slot.name,
                resource=shortage,
                error=error,
                retry_in_seconds=round(delay, 3),
            )
        else:
            log.debug(
                "collector_degraded_again",
                collector=slot.name,
                resource=shortage,
                error=error,
                retry_in_seconds=round(delay, 3),
            )
        return delay


def resource_shortage(err: BaseException) -> str | None:
    """The errno name ("EMFILE") when `err`, an exception it was raised from or during, or one in its
    group, says the machine ran short of a resource; None for any other failure."""
    todo: list[BaseException] = [err]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in RESOURCE_ERRNOS:
            return RESOURCE_ERRNOS[e.errno]
        if isinstance(e, MemoryError):
            return "ENOMEM"
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return None


def _self_check(collector: Collector) -> str | None:
    check = getattr(collector, "self_check", None)
    return check() if check is not None else None
