"""The configured alert sinks (`[[sinks.webhook]]`, `[[sinks.syslog]]`, `[[sinks.ecs_file]]`) as
forwarders over the store. Each sink's module is imported only when one of its kind is configured, in
a worker thread (httpx takes ~30 ms to import)."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from amoskys.collectors.clock import Clock
from amoskys.config import SinksConfig
from amoskys.forwarders.base import Forwarder, Sink
from amoskys.metrics import Metrics
from amoskys.sinks.metrics import SinkMetrics
from amoskys.store import Store

#: Alerts per batch (one webhook POST, one write), and how long the first waits for more: alerts are
#: rare, so a batch is mostly one alert sent within this many ms of its commit.
BATCH_EVENTS, BATCH_WAIT_MS = 100, 20
#: One batch at a time: alerts reach a receiver in the order they were stored.
MAX_IN_FLIGHT = 1
BACKOFF_BASE_SECONDS = 0.2


async def build_sinks(
    config: SinksConfig,
    store: Store,
    metrics: Metrics,
    *,
    clock: Clock | None = None,
    backoff_cap_seconds: float = 10.0,
) -> list[Forwarder]:
    """One forwarder per configured sink (not running yet). Raises ConfigError when a sink's files
    (webhook secret, TLS certificates) cannot be read."""
    series = metrics.component(SinkMetrics)
    kinds = [kind for kind in ("webhook", "syslog", "ecs_file") if getattr(config, kind)]
    await asyncio.to_thread(lambda: [importlib.import_module(f"amoskys.sinks.{kind}") for kind in kinds])
    built: list[tuple[Sink, dict[str, Any]]] = []
    if config.webhook:
        from amoskys.sinks.webhook import build_webhook_sink, display_url

        for i, hook in enumerate(config.webhook):
            sink = await build_webhook_sink(hook, series, key=f"sinks.webhook[{i}]")
            detail = {"type": "webhook", "url": display_url(hook.url), "signed": bool(hook.secret_file)}
            built.append((sink, detail))
    if config.syslog:
        from amoskys.sinks.syslog import build_syslog_sink

        for i, server in enumerate(config.syslog):
            syslog = await build_syslog_sink(server, series, key=f"sinks.syslog[{i}]")
            built.append(
                (syslog, {"type": "syslog", "address": server.address, "transport": server.transport})
            )
    if config.ecs_file:
        from amoskys.sinks.ecs_file import EcsFileSink

        for ecs_file in config.ecs_file:
            built.append((EcsFileSink(ecs_file, series), {"type": "ecs_file", "path": ecs_file.path}))
    return [
        Forwarder(
            sink,
            store,
            metrics,
            batch_events=BATCH_EVENTS,
            batch_wait_ms=BATCH_WAIT_MS,
            max_in_flight=MAX_IN_FLIGHT,
            backoff_base_seconds=BACKOFF_BASE_SECONDS,
            backoff_cap_seconds=backoff_cap_seconds,
            clock=clock,
            detail=detail,
        )
        for sink, detail in built
    ]
