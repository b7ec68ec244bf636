"""SnmpCollector: polls the configured SNMP targets concurrently and publishes SnmpSample events."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from amoskys.collectors.base import NotConfigured
from amoskys.collectors.context import CollectorContext
from amoskys.collectors.snmp.config import SnmpConfig
from amoskys.collectors.snmp.credentials import SecretError
from amoskys.collectors.snmp.metrics import SnmpMetrics
from amoskys.collectors.snmp.series import SnmpSeries
from amoskys.errors import FatalCollectorError

if TYPE_CHECKING:
    from amoskys.collectors.snmp.schedule import TargetPoller


class SnmpCollector:
    """Every target on its own schedule (spread over the interval), at most `concurrency` at once,
    each poll within `deadline_seconds`; unreachable targets back off. See README.md."""

    name = "snmp"
    Config = SnmpConfig
    Metrics = SnmpMetrics
    mode = "polling"

    def __init__(
        self, config: SnmpConfig, ctx: CollectorContext, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.environ = environ if environ is not None else os.environ
        self.pollers: list[TargetPoller] = []

    def self_check(self) -> str | None:
        if not self.config.targets:
            return NotConfigured("no targets configured ([[collectors.snmp.targets]] in amoskys.toml)")
        return None

    def _first_due(self, index: int, count: int, start: float) -> float:
        if self.config.schedule == "aligned" or count <= 1:
            return start
        return start + index * self.config.interval_seconds / count

    @staticmethod
    def heavy_imports(config: SnmpConfig) -> tuple[str, ...]:
        """Modules the appliance imports in a worker thread before it is ready, so pysnmp's ~0.3 s
        import does not hold the event loop once it serves: none without targets (an appliance
        without SNMP targets does not pay its ~15 MB)."""
        return (f"{__package__}.client", f"{__package__}.schedule") if config.targets else ()

    async def run(self) -> None:
        # pysnmp is imported only when there is something to poll (see heavy_imports: the appliance
        # has already imported these, off the loop, before ready; a CLI or a test may not have)
        from amoskys.collectors.snmp.client import SnmpClient, auth_data, session_for
        from amoskys.collectors.snmp.schedule import Activity, TargetPoller

        config, ctx = self.config, self.ctx
        usable = []
        for target in config.targets:
            try:
                # secrets are files: read them off the loop
                usable.append((target, await asyncio.to_thread(auth_data, target, self.environ)))
            except SecretError as err:  # that target is misconfigured; the others still run
                ctx.count_error(err)
                ctx.log.error("snmp_target_misconfigured", target=target.name, error=str(err))
        if not usable:
            raise FatalCollectorError("no SNMP target can be polled: every target's secret is unreadable")
        client = SnmpClient()
        series = SnmpSeries(
            ctx.metrics.component(SnmpMetrics),
            ctx.log,
            per_interface=config.interface_metrics == "on",
            cap=config.max_interface_series,
        )
        limiter = asyncio.Semaphore(config.concurrency)
        activity = Activity(ctx)
        self.pollers = [
            TargetPoller(
                target,
                session_for(target, auth, timeout_seconds=config.timeout_seconds, retries=config.retries),
                config=config,
                ctx=ctx,
                client=client,
                limiter=limiter,
                activity=activity,
                series=series,
            )
            for target, auth in usable
        ]
        ctx.log.info(
            "snmp_polling_started",
            targets=len(self.pollers),
            interval_seconds=config.interval_seconds,
            concurrency=config.concurrency,
            deadline_seconds=config.deadline_seconds,
        )
        start = ctx.clock.monotonic()
        try:
            async with asyncio.TaskGroup() as group:
                for index, poller in enumerate(self.pollers):
                    group.create_task(poller.run(self._first_due(index, len(self.pollers), start)))
        finally:
            series.clear()
            await client.aclose()
