"""The supervisor: restart with growing jittered delays, disable with the reason, runtime control,
self-check, shutdown. Time is a FakeClock the tests drive; nothing else is faked."""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog
from structlog.testing import capture_logs

from amoskys.collectors.base import CollectorConfig, NotConfigured
from amoskys.collectors.clock import FakeClock
from amoskys.collectors.context import ApplianceInfo, CollectorContext
from amoskys.errors import FatalCollectorError, StartupError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.supervisor import (
    CollectorRefusedError,
    CollectorStatus,
    RestartPolicy,
    Supervisor,
    UnknownCollectorError,
    resource_shortage,
)

from support import ListSink, eventually

POLICY = RestartPolicy(
    initial_backoff_seconds=1.0,
    max_backoff_seconds=300.0,
    jitter=0.2,
    healthy_after_seconds=60.0,
    max_fast_failures=4,
)


class Cfg(CollectorConfig, frozen=True):
    pass


class Crashy:
    """Raises at once, every time; counts its starts."""

    name = "crashy"
    Config = Cfg
    mode = "test"
    starts = 0

    def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        type(self).starts += 1
        raise RuntimeError(f"boom {type(self).starts}")


class Blocker:
    """Waits forever (until cancelled), and notes that it was cancelled."""

    name = "blocker"
    Config = Cfg
    mode = "waiting"
    cancelled = 0

    def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            type(self).cancelled += 1


class NeedsRaw:
    """Needs CAP_NET_RAW; run() must never be reached without it."""

    name = "needs_raw"
    Config = Cfg
    mode = "af_packet"
    ran = False

    def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
        self.ctx = ctx

    def self_check(self) -> str | None:
        return None if self.ctx.has_capability("CAP_NET_RAW") else "needs CAP_NET_RAW"

    async def run(self) -> None:
        type(self).ran = True
        await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def _reset_counters() -> Iterator[None]:
    Crashy.starts = 0
    Blocker.cancelled = 0
    NeedsRaw.ran = False
    yield


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    structlog.reset_defaults()
    with capture_logs() as captured:
        yield captured


def make(
    collectors: Sequence[type[Any]],
    tmp_path: Path,
    clock: FakeClock,
    *,
    enabled: bool = True,
    has_capability: Callable[[str], bool] = lambda cap: True,
) -> Supervisor:
    return Supervisor(
        [(c, Cfg(enabled=enabled)) for c in collectors],
        publish=ListSink(),
        stamper=EnvelopeStamper("test-box"),
        metrics=Metrics(),
        data_dir=tmp_path,
        appliance=ApplianceInfo("test-box", "0.0", "host", "appliance", clock.time_ns()),
        policy=POLICY,
        clock=clock,
        has_capability=has_capability,
        rng=random.Random(7),
    )


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Supervisor], Any]]:
    """Run supervisors in tasks; stop them (within a deadline) at the end of the test."""
    started: list[tuple[Supervisor, asyncio.Task[None]]] = []

    def start(sup: Supervisor) -> asyncio.Task[None]:
        task = asyncio.create_task(sup.run())
        started.append((sup, task))
        return task

    yield start
    for sup, task in started:
        async with asyncio.timeout(5):
            await sup.stop()
            await task


def state(sup: Supervisor, name: str) -> str:
    return sup.status_of(name).state_text


def metric(sup: Supervisor, name: str, labels: dict[str, str]) -> float | None:
    return sup.metrics.registry.get_sample_value(name, labels)


async def test_crashing_collector_restarts_with_growing_delays_then_is_disabled_with_reason(
    tmp_path: Path, logs: list[dict[str, Any]], running: Any
) -> None:
    clock = FakeClock()
    sup = make([Crashy], tmp_path, clock)
    running(sup)
    delays = []
    for n in range(1, POLICY.max_fast_failures):
        (delay,) = await clock.wait_sleeping()
        assert sup.status_of("crashy").state == "backoff"
        assert f"boom {n}" in sup.status_of("crashy").reason
        delays.append(delay)
        clock.advance(delay)
    await eventually(lambda: sup.status_of("crashy").state == "disabled", what="crashy to be disabled")

    # 1, 2, 4 s, each within ±20 %: strictly growing
    for n, delay in enumerate(delays):
        assert 0.8 * 2**n <= delay <= 1.2 * 2**n
    assert delays == sorted(delays) and len(set(delays)) == len(delays)
    st = sup.status_of("crashy")
    assert Crashy.starts == POLICY.max_fast_failures
    assert st.restarts == POLICY.max_fast_failures - 1 and st.errors == POLICY.max_fast_failures
    assert st.last_error == "RuntimeError: boom 4" and st.last_error_ns == clock.time_ns()
    assert st.state_text == (
        "disabled: crashed 4 times in a row, each within 60 s of starting; last error: RuntimeError: boom 4"
    )
    assert clock.pending() == []  # no crash loop: nothing waits to restart it
    labels = {"collector": "crashy"}
    assert metric(sup, "amoskys_collector_restarts_total", labels) == 3
    assert metric(sup, "amoskys_collector_errors_total", labels) == 4
    assert metric(sup, "amoskys_collector_up", labels) == 0
    assert metric(sup, "amoskys_collector_state", labels | {"state": "disabled"}) == 1
    assert metric(sup, "amoskys_collector_state", labels | {"state": "backoff"}) == 0

    # logged once when it started failing, once when it was given up: not once per crash
    levels = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("collector_")]
    assert levels.count(("collector_failed", "error")) == 1
    assert levels.count(("collector_disabled", "error")) == 1
    assert ("collector_failed_again", "debug") in levels


async def test_healthy_run_resets_backoff_and_logs_recovery_once(
    tmp_path: Path, logs: list[dict[str, Any]], running: Any
) -> None:
    class Flaky:
        """Crashes at once twice, then runs 100 s, then crashes."""

        name = "flaky"
        Config = Cfg
        mode = "test"
        starts = 0

        def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
            self.ctx = ctx

        async def run(self) -> None:
            type(self).starts += 1
            if type(self).starts == 3:
                await self.ctx.clock.sleep(100)
            raise RuntimeError(f"flake {type(self).starts}")

    clock = FakeClock()
    sup = make([Flaky], tmp_path, clock)
    running(sup)
    (d1,) = await clock.wait_sleeping()
    clock.advance(d1)
    await eventually(lambda: Flaky.starts == 2, what="second start")
    (d2,) = await clock.wait_sleeping()
    assert d2 > d1
    clock.advance(d2)
    # third run: the collector sleeps 100 s, the supervisor's recovery timer 60 s
    assert sorted(await clock.wait_sleeping(2)) == [60.0, 100.0]
    clock.advance(60)
    await eventually(lambda: any(e["event"] == "collector_recovered" for e in logs), what="recovery log")
    assert sup.status_of("flaky").state == "running"
    clock.advance(40)
    (d3,) = await clock.wait_sleeping()
    assert 0.8 <= d3 <= 1.2  # the healthy run reset the backoff
    events = [e["event"] for e in logs if e["event"] in ("collector_failed", "collector_recovered")]
    assert events == ["collector_failed", "collector_recovered", "collector_failed"]


async def test_runtime_stop_start_and_restart(tmp_path: Path, running: Any) -> None:
    clock = FakeClock()
    sup = make([Blocker], tmp_path, clock)
    running(sup)
    await eventually(lambda: state(sup, "blocker") == "running", what="blocker to run")
    assert sup.status_of("blocker").mode == "waiting"

    st = await sup.stop_collector("blocker")
    assert st.state_text == "stopped: stopped by operator"
    assert Blocker.cancelled == 1
    assert metric(sup, "amoskys_collector_up", {"collector": "blocker"}) == 0

    st = await sup.start_collector("blocker")
    assert st.state_text == "running" and st.restarts == 0
    assert metric(sup, "amoskys_collector_up", {"collector": "blocker"}) == 1

    with pytest.raises(CollectorRefusedError, match=r"^collector 'blocker' is already running$"):
        await sup.start_collector("blocker")  # refused: nothing happens
    assert state(sup, "blocker") == "running" and Blocker.cancelled == 1

    st = await sup.restart_collector("blocker")
    assert st.state_text == "running" and st.restarts == 1 and Blocker.cancelled == 2
    assert metric(sup, "amoskys_collector_restarts_total", {"collector": "blocker"}) == 1

    with pytest.raises(UnknownCollectorError, match=r"unknown collector 'nope' \(known: blocker\)"):
        await sup.stop_collector("nope")


async def test_operator_can_start_a_collector_disabled_by_repeated_crashes(
    tmp_path: Path, running: Any
) -> None:
    clock = FakeClock()
    sup = make([Crashy], tmp_path, clock)
    running(sup)
    for _ in range(POLICY.max_fast_failures - 1):
        (delay,) = await clock.wait_sleeping()
        clock.advance(delay)
    await eventually(lambda: sup.status_of("crashy").state == "disabled", what="crashy disabled")
    await sup.start_collector("crashy")
    # a fresh failure count: it backs off from the first delay again
    (delay,) = await clock.wait_sleeping()
    assert 0.8 <= delay <= 1.2
    assert Crashy.starts == POLICY.max_fast_failures + 1


async def test_start_during_backoff_starts_at_once(tmp_path: Path, running: Any) -> None:
    clock = FakeClock()
    sup = make([Crashy], tmp_path, clock)
    running(sup)
    await clock.wait_sleeping()
    assert sup.status_of("crashy").state == "backoff"
    await sup.start_collector("crashy")
    await eventually(lambda: Crashy.starts == 2, what="a second start without advancing the clock")


async def test_missing_privilege_disables_without_running(
    tmp_path: Path, logs: list[dict[str, Any]], running: Any
) -> None:
    clock = FakeClock()
    asked: list[str] = []

    def has_capability(cap: str) -> bool:
        asked.append(cap)
        return False

    sup = make([NeedsRaw], tmp_path, clock, has_capability=has_capability)
    running(sup)
    await eventually(lambda: sup.status_of("needs_raw").state == "disabled", what="needs_raw disabled")
    st = sup.status_of("needs_raw")
    assert st.state_text == "disabled: needs CAP_NET_RAW"
    assert asked == ["CAP_NET_RAW"] and not NeedsRaw.ran
    assert st.errors == 0 and st.restarts == 0 and clock.pending() == []
    disabled = [(e["reason"], e["log_level"]) for e in logs if e["event"] == "collector_disabled"]
    assert disabled == [("needs CAP_NET_RAW", "warning")]


async def test_start_of_a_collector_disabled_by_its_self_check_is_refused_with_the_reason(
    tmp_path: Path, logs: list[dict[str, Any]], running: Any
) -> None:
    sup = make([NeedsRaw], tmp_path, FakeClock(), has_capability=lambda cap: False)
    running(sup)
    await eventually(lambda: sup.status_of("needs_raw").state == "disabled", what="needs_raw disabled")
    assert sup.allowed_actions("needs_raw") == () and sup.status_of("needs_raw").actions == ()

    with pytest.raises(CollectorRefusedError) as refused:
        await sup.start_collector("needs_raw")  # tried again: the self-check fails again
    assert str(refused.value) == "collector 'needs_raw' did not start: disabled: needs CAP_NET_RAW"
    assert state(sup, "needs_raw") == "disabled: needs CAP_NET_RAW" and not NeedsRaw.ran

    with pytest.raises(CollectorRefusedError) as refused:
        await sup.stop_collector("needs_raw")  # the reason (how to fix it) is kept
    assert str(refused.value) == "collector 'needs_raw' is already disabled: needs CAP_NET_RAW"
    assert state(sup, "needs_raw") == "disabled: needs CAP_NET_RAW"

    with pytest.raises(CollectorRefusedError) as refused:
        await sup.restart_collector("needs_raw")
    assert str(refused.value) == "collector 'needs_raw' is disabled: needs CAP_NET_RAW: nothing to restart"
    assert (
        state(sup, "needs_raw") == "disabled: needs CAP_NET_RAW" and sup.status_of("needs_raw").restarts == 0
    )


async def test_each_state_allows_only_its_actions(tmp_path: Path, running: Any) -> None:
    clock = FakeClock()
    sup = make([Blocker, Crashy], tmp_path, clock)
    running(sup)
    await eventually(lambda: state(sup, "blocker") == "running", what="blocker to run")
    assert sup.allowed_actions("blocker") == ("stop", "restart")
    assert sup.status_of("blocker").to_dict()["actions"] == ["stop", "restart"]
    await clock.wait_sleeping()
    assert sup.status_of("crashy").state == "backoff"
    assert sup.allowed_actions("crashy") == ("start", "stop", "restart")

    await sup.stop_collector("blocker")
    assert sup.allowed_actions("blocker") == ("start",)
    with pytest.raises(CollectorRefusedError) as refused:
        await sup.stop_collector("blocker")
    assert str(refused.value) == "collector 'blocker' is already stopped: stopped by operator"
    with pytest.raises(CollectorRefusedError) as refused:
        await sup.restart_collector("blocker")
    assert str(refused.value) == (
        "collector 'blocker' is stopped: stopped by operator: nothing to restart; start it instead"
    )
    assert state(sup, "blocker") == "stopped: stopped by operator" and Blocker.cancelled == 1

    st = await sup.stop_collector("crashy")  # backing off: stopped, the pending restart dropped
    assert st.state_text == "stopped: stopped by operator" and st.actions == ("start",)


async def test_disabled_in_config_or_by_crashes_may_still_be_started(tmp_path: Path, running: Any) -> None:
    sup = make([Blocker], tmp_path, FakeClock(), enabled=False)
    running(sup)
    await eventually(lambda: sup.status_of("blocker").state == "disabled", what="blocker disabled")
    assert sup.allowed_actions("blocker") == ("start",)
    with pytest.raises(CollectorRefusedError, match=r"already disabled: enabled = false in the config$"):
        await sup.stop_collector("blocker")
    st = await sup.start_collector("blocker")
    assert st.state_text == "running" and st.actions == ("stop", "restart")


async def test_a_start_that_fails_fatally_at_once_is_refused(tmp_path: Path, running: Any) -> None:
    class Fatal(Blocker):
        name = "fatal"

        async def run(self) -> None:
            raise FatalCollectorError("interface 'eth9' does not exist")

    sup = make([Fatal], tmp_path, FakeClock())
    running(sup)
    await eventually(lambda: sup.status_of("fatal").state == "disabled", what="fatal disabled")
    assert sup.allowed_actions("fatal") == ("start",)  # not its self-check: the operator may retry
    with pytest.raises(CollectorRefusedError) as refused:
        await sup.start_collector("fatal")
    assert str(refused.value) == "collector 'fatal' did not start: disabled: interface 'eth9' does not exist"


class Unconfigured:
    """Has nothing to do until configured: disabled with the reason, logged at info."""

    name = "unconfigured"
    Config = Cfg
    mode = ""

    def __init__(self, config: Cfg, ctx: Any) -> None:
        pass

    def self_check(self) -> str | None:
        return NotConfigured("no interface configured (set `interface`)")

    async def run(self) -> None:
        raise AssertionError("an unconfigured collector never runs")


async def test_a_collector_not_configured_is_disabled_with_its_reason_at_info(
    tmp_path: Path, logs: list[dict[str, Any]], running: Any
) -> None:
    sup = make([Unconfigured], tmp_path, FakeClock())
    running(sup)
    await eventually(lambda: sup.status_of("unconfigured").state == "disabled", what="disabled")
    assert sup.status_of("unconfigured").state_text == "disabled: no interface configured (set `interface`)"
    disabled = [(e["reason"], e["log_level"]) for e in logs if e["event"] == "collector_disabled"]
    assert disabled == [("no interface configured (set `interface`)", "info")]
    assert sup.allowed_actions("unconfigured") == ()
    with pytest.raises(CollectorRefusedError) as refused:
        await sup.start_collector("unconfigured")
    assert str(refused.value) == (
        "collector 'unconfigured' did not start: disabled: no interface configured (set `interface`)"
    )
    with pytest.raises(CollectorRefusedError) as refused:
        await sup.stop_collector("unconfigured")
    assert str(refused.value) == (
        "collector 'unconfigured' is already disabled: no interface configured (set `interface`)"
    )


async def test_self_check_passes_when_the_capability_is_held(tmp_path: Path, running: Any) -> None:
    sup = make([NeedsRaw], tmp_path, FakeClock(), has_capability=lambda cap: cap == "CAP_NET_RAW")
    running(sup)
    await eventually(lambda: NeedsRaw.ran, what="needs_raw to run")
    assert state(sup, "needs_raw") == "running"


async def test_fatal_error_disables_at_once(tmp_path: Path, running: Any) -> None:
    class Fatal:
        name = "fatal"
        Config = Cfg
        mode = "test"

        def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
            pass

        async def run(self) -> None:
            raise FatalCollectorError("interface 'eth9' does not exist")

    clock = FakeClock()
    sup = make([Fatal], tmp_path, clock)
    running(sup)
    await eventually(lambda: sup.status_of("fatal").state == "disabled", what="fatal disabled")
    assert state(sup, "fatal") == "disabled: interface 'eth9' does not exist"
    assert sup.status_of("fatal").restarts == 0 and clock.pending() == []


async def test_disabled_in_config_is_not_started(tmp_path: Path, running: Any) -> None:
    sup = make([Blocker], tmp_path, FakeClock(), enabled=False)
    running(sup)
    await eventually(lambda: sup.status_of("blocker").state == "disabled", what="blocker disabled")
    assert state(sup, "blocker") == "disabled: enabled = false in the config"
    await sup.start_collector("blocker")  # the operator may still start it
    await eventually(lambda: state(sup, "blocker") == "running", what="blocker running")


async def test_shutdown_cancels_every_collector_within_the_deadline(tmp_path: Path) -> None:
    class SlowCleanup(Blocker):
        """Blocks in await; on cancel, awaits its cleanup, which then fails."""

        name = "slow_cleanup"

        async def run(self) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)
                raise OSError("socket already closed")

    clock = FakeClock()
    sup = make([Blocker, SlowCleanup, Crashy], tmp_path, clock)
    task = asyncio.create_task(sup.run())
    await eventually(
        lambda: (
            state(sup, "blocker") == state(sup, "slow_cleanup") == "running"
            and sup.status_of("crashy").state == "backoff"
        ),
        what="all three started",
    )
    async with asyncio.timeout(2):
        await sup.stop()
    assert task.done() and task.exception() is None
    assert {s.name: s.state_text for s in sup.status()} == {
        "blocker": "stopped: appliance stopping",
        "slow_cleanup": "stopped: appliance stopping",
        "crashy": "stopped: appliance stopping",
    }
    assert sup.status_of("slow_cleanup").errors == 0  # a failed cleanup on cancel is no crash
    assert Crashy.starts == 1


async def test_cancelling_the_supervisor_task_propagates(tmp_path: Path) -> None:
    sup = make([Blocker], tmp_path, FakeClock())
    task = asyncio.create_task(sup.run())
    await eventually(lambda: state(sup, "blocker") == "running", what="blocker running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Blocker.cancelled == 1 and sup.status_of("blocker").state == "stopped"


async def test_stop_before_run_returns_at_once(tmp_path: Path) -> None:
    sup = make([Blocker], tmp_path, FakeClock())
    await sup.stop()
    async with asyncio.timeout(1):
        await sup.run()
    assert Blocker.cancelled == 0


async def test_status_to_dict_is_json_ready(tmp_path: Path, running: Any) -> None:
    sup = make([Blocker], tmp_path, FakeClock())
    running(sup)
    await eventually(lambda: state(sup, "blocker") == "running", what="blocker running")
    d = sup.status_of("blocker").to_dict()
    assert d["name"] == "blocker" and d["state"] == "running" and d["mode"] == "waiting"
    assert set(d) == set(CollectorStatus.__dataclass_fields__)


async def test_crash_inside_a_collectors_own_taskgroup_is_restarted_not_taken_for_a_stop(
    tmp_path: Path, running: Any
) -> None:
    class Grouped:
        """Runs its work in a TaskGroup whose child crashes (on 3.11 that leaves the task 'cancelling')."""

        name = "grouped"
        Config = Cfg
        mode = "test"
        starts = 0

        def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
            pass

        async def run(self) -> None:
            type(self).starts += 1

            async def child() -> None:
                raise ValueError("bad packet")

            async with asyncio.TaskGroup() as tg:
                tg.create_task(child())
                await asyncio.Event().wait()

    clock = FakeClock()
    sup = make([Grouped], tmp_path, clock)
    running(sup)
    (delay,) = await clock.wait_sleeping()
    assert sup.status_of("grouped").state == "backoff"
    assert "bad packet" in sup.status_of("grouped").last_error
    clock.advance(delay)
    await eventually(lambda: Grouped.starts == 2, what="a restart")


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (StartupError("needs /dev/net/tun", retry=False), "disabled: needs /dev/net/tun"),
        (StartupError("interface eth1 is down", retry=True), "backoff"),
        (None, "stopped: run() returned"),
    ],
)
async def test_startup_errors_and_a_returning_run(
    tmp_path: Path, running: Any, error: Exception | None, state: str
) -> None:
    class Starter:
        name = "starter"
        Config = Cfg
        mode = "test"

        def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
            pass

        async def run(self) -> None:
            if error is not None:
                raise error

    sup = make([Starter], tmp_path, FakeClock())
    running(sup)
    await eventually(lambda: matches(sup.status_of("starter").state_text, state), what=f"state {state!r}")


def matches(text: str, expected: str) -> bool:
    return text == expected or (expected == "backoff" and text.startswith("backoff: restarting in "))


class Starved:
    """Fails with `errors[n]` on its n-th start while there are any left, then runs until cancelled."""

    name = "starved"
    Config = Cfg
    mode = "test"
    starts = 0
    errors: ClassVar[list[BaseException]] = []

    def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
        pass

    async def run(self) -> None:
        type(self).starts += 1
        if type(self).errors:
            raise type(self).errors.pop(0)
        await asyncio.Event().wait()


def _emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files")


async def test_resource_shortage_degrades_never_disables_and_recovers_by_itself(
    tmp_path: Path, logs: list[dict[str, Any]], running: Any
) -> None:
    shortages = 3 * POLICY.max_fast_failures  # far more than would disable a crashing collector
    Starved.starts, Starved.errors = 0, [_emfile() for _ in range(shortages)]
    clock = FakeClock()
    sup = make([Starved], tmp_path, clock)
    running(sup)
    labels = {"collector": "starved"}
    delays = []
    for _ in range(shortages):
        (delay,) = await clock.wait_sleeping()
        assert state(sup, "starved") == "degraded: retrying (EMFILE)"
        assert metric(sup, "amoskys_collector_state", labels | {"state": "degraded"}) == 1
        assert metric(sup, "amoskys_collector_state", labels | {"state": "disabled"}) == 0
        delays.append(delay)
        clock.advance(delay)
    await eventually(lambda: state(sup, "starved") == "running", what="starved to run again")

    # the usual growing backoff, capped low so the collector is back soon after the resource is
    assert 0.8 <= delays[0] <= 1.2 and delays[1] > delays[0]
    assert max(delays) <= POLICY.resource_retry_max_seconds * 1.2
    assert min(delays[-3:]) >= POLICY.resource_retry_max_seconds * 0.8
    st = sup.status_of("starved")
    assert st.errors == shortages and st.restarts == shortages
    assert st.last_error == "OSError: [Errno 24] Too many open files"

    (healthy,) = await clock.wait_sleeping()  # the recovery timer
    assert healthy == POLICY.healthy_after_seconds
    clock.advance(healthy)
    await eventually(lambda: any(e["event"] == "collector_recovered" for e in logs), what="recovery log")
    # logged once when it degraded, once when it recovered: no error, never disabled
    events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("collector_")]
    assert events.count(("collector_degraded", "warning")) == 1
    assert events.count(("collector_recovered", "info")) == 1
    assert not [e for e in events if e[0] in ("collector_failed", "collector_disabled")]


async def test_resource_shortages_never_count_toward_max_fast_failures(tmp_path: Path, running: Any) -> None:
    crashes = POLICY.max_fast_failures - 1
    Starved.starts = 0
    Starved.errors = [
        *(RuntimeError(f"bug {n}") for n in range(crashes)),
        *(_emfile() for _ in range(2 * POLICY.max_fast_failures)),
        RuntimeError("bug again"),
    ]
    clock = FakeClock()
    sup = make([Starved], tmp_path, clock)
    running(sup)
    for _ in range(len(Starved.errors) - 1):  # the last error disables it: no wait after that one
        (delay,) = await clock.wait_sleeping()
        assert sup.status_of("starved").state in ("backoff", "degraded")
        clock.advance(delay)
    # the crash after the shortages is the max_fast_failures-th: only crashes were counted
    await eventually(lambda: sup.status_of("starved").state == "disabled", what="starved disabled")
    assert state(sup, "starved").startswith(f"disabled: crashed {POLICY.max_fast_failures} times in a row")


@pytest.mark.parametrize(
    ("error", "shortage"),
    [
        (OSError(errno.EMFILE, "Too many open files"), "EMFILE"),
        (OSError(errno.ENFILE, "Too many open files in system"), "ENFILE"),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), "ENOMEM"),
        (OSError(errno.ENOBUFS, "No buffer space available"), "ENOBUFS"),
        (MemoryError(), "ENOMEM"),
        (ExceptionGroup("tasks", [ValueError("x"), OSError(errno.EMFILE, "Too many open files")]), "EMFILE"),
        (OSError(errno.ENOENT, "No such file or directory"), None),
        (PermissionError(errno.EACCES, "Permission denied"), None),
        (RuntimeError("a bug"), None),
    ],
)
def test_resource_shortage_is_told_by_errno(error: BaseException, shortage: str | None) -> None:
    assert resource_shortage(error) == shortage


def test_resource_shortage_is_found_behind_a_wrapping_error() -> None:
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as err:
            raise StartupError("cannot open the capture socket", retry=True) from err
    except StartupError as wrapped:
        assert resource_shortage(wrapped) == "EMFILE"


async def test_collector_failed_is_1_only_for_an_enabled_collector_that_cannot_run(
    tmp_path: Path, running: Any
) -> None:
    """amoskys_collector_failed (what AmoskysCollectorFailed alerts on): a missing capability is a
    failure; nothing configured, enabled = false and an operator's stop are not."""
    sup = make([NeedsRaw, Unconfigured, Blocker], tmp_path, FakeClock(), has_capability=lambda cap: False)
    running(sup)
    await eventually(lambda: state(sup, "blocker") == "running", what="blocker running")
    await eventually(lambda: sup.status_of("needs_raw").state == "disabled", what="needs_raw disabled")
    await eventually(lambda: sup.status_of("unconfigured").state == "disabled", what="unconfigured disabled")
    failed = {
        name: metric(sup, "amoskys_collector_failed", {"collector": name})
        for name in ("needs_raw", "unconfigured", "blocker")
    }
    assert failed == {"needs_raw": 1, "unconfigured": 0, "blocker": 0}
    await sup.stop_collector("blocker")
    assert sup.status_of("blocker").state == "stopped"
    assert metric(sup, "amoskys_collector_failed", {"collector": "blocker"}) == 0
    off = make([Blocker], tmp_path, FakeClock(), enabled=False)
    running(off)
    await eventually(lambda: off.status_of("blocker").state == "disabled", what="blocker disabled")
    assert metric(off, "amoskys_collector_failed", {"collector": "blocker"}) == 0
