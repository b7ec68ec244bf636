"""A ControlService over a real store in tmp_path and a real Supervisor, for the control tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from amoskys.collectors.base import CollectorConfig
from amoskys.collectors.clock import FakeClock
from amoskys.collectors.context import ApplianceInfo, CollectorContext
from amoskys.config import StoreConfig
from amoskys.control_service import ControlService, Revoker
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2
from amoskys.store import Store
from amoskys.store.records import Record
from amoskys.supervisor import Supervisor

from support import ListSink


class Cfg(CollectorConfig, frozen=True):
    pass


class Waiter:
    name = "waiter"
    Config = Cfg
    mode = "waiting"

    def __init__(self, config: Cfg, ctx: CollectorContext) -> None:
        pass

    async def run(self) -> None:
        await asyncio.Event().wait()


class NeedsRaw(Waiter):
    name = "needs_raw"
    mode = "af_packet"

    def self_check(self) -> str | None:
        return "needs CAP_NET_RAW"


@dataclass
class ServiceEnv:
    data_dir: Path
    store: Store
    supervisor: Supervisor
    service: ControlService
    clock: FakeClock
    info: ApplianceInfo
    ended: list[list[bytes]] = field(default_factory=list)  # what sessions_ended was told, per call

    async def audit_rows(self) -> list[events_pb2.AuditEvent]:
        """The audit events committed to the store, in order."""
        return [e.parse().audit for e in await self.store.events(kind="audit")]


@contextlib.asynccontextmanager
async def service_env(tmp_path: Path, *, revoke_live: Revoker | None = None) -> AsyncIterator[ServiceEnv]:
    """A store in tmp_path (its writer running), a Supervisor running Waiter and NeedsRaw, and a
    ControlService whose audit events are committed to that store."""
    clock = FakeClock()
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    stamper = EnvelopeStamper("box-1")
    store = await Store.open(data_dir / "amoskys.db", StoreConfig(), Metrics(), stamper=stamper)
    writer = asyncio.create_task(store.run())
    info = ApplianceInfo("box-1", "0.1.0", "host-1", "appliance", clock.time_ns(), pid=4242)
    sup = Supervisor(
        [(Waiter, Cfg()), (NeedsRaw, Cfg())],
        publish=ListSink(),
        stamper=stamper,
        metrics=Metrics(),
        data_dir=data_dir,
        appliance=info,
        clock=clock,
    )

    async def audit(event: events_pb2.AuditEvent) -> None:
        await store.submit(
            [Record.from_envelope(stamper.stamp(events_pb2.Envelope(audit=event)))], local=True
        )

    ended: list[list[bytes]] = []

    def sessions_ended(ids: Sequence[bytes]) -> None:
        ended.append(list(ids))

    service = ControlService(
        store.state, audit, supervisor=sup, revoke_live=revoke_live, sessions_ended=sessions_ended
    )
    task = asyncio.create_task(sup.run())
    try:
        yield ServiceEnv(data_dir, store, sup, service, clock, info, ended)
    finally:
        async with asyncio.timeout(10):
            await sup.stop()
            await task
            await store.close()
            await writer
