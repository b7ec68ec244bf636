"""The configured forwarders of one process, run together: what `amoskys.app` starts and asks about."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from amoskys.forwarders.base import Forwarder, worst_lag
from amoskys.store import Store
from amoskys.store.errors import SubmitRefusedError
from amoskys.store.outbox import RegisterSinks

log = structlog.get_logger(__name__)


class Forwarders:
    """Every configured sink's forwarder over one store."""

    def __init__(self, store: Store, forwarders: Sequence[Forwarder]) -> None:
        self._store = store
        self.forwarders = list(forwarders)

    async def run(self) -> None:
        """Register the configured sinks (every other cursor stops holding retention back), then run
        each forwarder until cancelled. Returns at once when none is configured."""
        sinks = {f.name: f.sink.kinds for f in self.forwarders}
        try:
            await self._store.submit_outbox([RegisterSinks(sinks)])
        except SubmitRefusedError:
            return  # the store is closing: so is the process
        if not self.forwarders:
            return
        async with asyncio.TaskGroup() as tg:
            for f in self.forwarders:
                tg.create_task(_run_one(f), name=f"forwarder-{f.name}")

    def status(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per forwarder (for `amoskys status`)."""
        return [f.status() for f in self.forwarders]

    def outbox_lag(self) -> tuple[int, float]:
        """(events, seconds) the worst sink is behind ((0, 0.0) when none is configured)."""
        return worst_lag(self.forwarders)


async def _run_one(forwarder: Forwarder) -> None:
    """A forwarder's loop, with its companion task (if any) for exactly as long as the loop runs."""
    if forwarder.companion is None:
        await forwarder.run()
        return
    companion = asyncio.create_task(forwarder.companion(), name=f"forwarder-{forwarder.name}-companion")
    companion.add_done_callback(_log_failure)
    try:
        await forwarder.run()
    finally:
        companion.cancel()
        await asyncio.gather(companion, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("forwarder_companion_failed", task=task.get_name(), error=repr(task.exception()))
