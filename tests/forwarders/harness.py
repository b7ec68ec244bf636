"""Real parts for the forwarder tests: a receiving appliance's bus (amoskys.wiring, SQLite in tmp_path,
grpc.aio with real mTLS on a port it keeps across a stop and a restart), an outbox store, and the bus
forwarder built by amoskys.wiring from its config section."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amoskys.app import appliance_credentials
from amoskys.bus.core import Bus
from amoskys.bus.server import BusServer
from amoskys.bus.service import EventBusService
from amoskys.collectors.clock import Clock
from amoskys.config import (
    ApplianceConfig,
    BusConfig,
    BusForwarderConfig,
    Config,
    ForwardersConfig,
    StoreConfig,
)
from amoskys.events import EnvelopeStamper
from amoskys.forwarders.group import Forwarders
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.pki.enrolment import enroll_agent
from amoskys.pki.layout import ApplianceCredentials
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store
from amoskys.store.records import StoredEvent
from amoskys.wiring import build_bus, build_bus_server, build_forwarders

TRUST = "amoskys.local"
BOOT = "0b0b0b0b-0000-4000-8000-00000000000b"


#: When this test process's agent events happened (recent: the time series keep them).
T0_NS = time.time_ns()


def agent_event(source: str, i: int) -> Record:
    """Event number i of `source`: the same id and bytes every time this process makes it."""
    envelope = ev.Envelope(
        event_id=f"00000000-0000-7000-8000-{i:012x}",
        source=source,
        boot_id=BOOT,
        source_seq=i + 1,
        ts_ns=T0_NS + i,
        flow=ev.FlowRecord(
            src_addr=f"10.0.{i % 250}.1", dst_addr="10.9.9.9", src_port=i % 65536, dst_port=443
        ),
    )
    return Record.from_envelope(envelope)


def agent_events(source: str, n: int, start: int = 0) -> list[Record]:
    return [agent_event(source, i) for i in range(start, start + n)]


@dataclass
class Upstream:
    """The receiving appliance: its store, bus and bus server."""

    tmp: Path
    config: Config
    creds: ApplianceCredentials
    metrics: Metrics
    store: Store
    bus: Bus
    service: EventBusService
    port: int
    server: BusServer | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def enroll(self, name: str, role: str = "agent") -> Path:
        """An enrolment bundle for `name` (as `amoskys agents enroll --out` writes), recorded here."""
        out = self.tmp / "bundles" / name
        bundle = await asyncio.to_thread(
            enroll_agent,
            self.creds,
            name=name,
            role=role,  # type: ignore[arg-type]
            trust_domain=TRUST,
            bus_address=self.address,
            out_dir=out,
        )
        await self.store.state.enroll_identity(name, role, bundle.public_key_raw, str(bundle.cert_serial))
        return out

    async def start_server(self) -> None:
        self.server = build_bus_server(self.creds, self.config.bus, self.service)
        self.port = await self.server.start("127.0.0.1", self.port)

    async def stop_server(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None

    async def stored(self, source: str) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        after = 0
        while True:
            page = await self.store.events(source=source, after_seq=after, limit=5000)
            if not page:
                return out
            out += page
            after = page[-1].store_seq

    def counter(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def close(self) -> None:
        await self.stop_server()
        await self.bus.close()
        await self.store.close()
        for task in self.tasks:
            await task


async def upstream(tmp: Path, *, name: str = "appliance", **bus: Any) -> Upstream:
    """A receiving appliance built by amoskys.wiring, its writer running and its bus server listening."""
    config = Config(
        appliance=ApplianceConfig(name=name),
        bus=BusConfig(
            trust_domain=TRUST,
            server_ip_addresses=("127.0.0.1",),
            max_concurrent_rpcs=100,
            quota_events_per_second=bus.pop("quota_events_per_second", 1_000_000),
            quota_burst_events=bus.pop("quota_burst_events", 1_000_000),
            **bus,
        ),
    )
    layout = Layout(tmp)
    await asyncio.to_thread(layout.ensure)
    creds = await asyncio.to_thread(appliance_credentials, config, layout)
    metrics = Metrics()
    stamper = EnvelopeStamper(name)
    store = await Store.open(layout.db, config.store, metrics, stamper=stamper)
    bus_, service = build_bus(store, metrics, config.bus, stamper=stamper, identity_cache_seconds=0.2)
    up = Upstream(tmp, config, creds, metrics, store, bus_, service, port=0)
    up.tasks.append(asyncio.create_task(store.run()))
    await up.start_server()
    return up


async def open_outbox(path: Path, metrics: Metrics | None = None, *, name: str = "", **store: Any) -> Store:
    """An agent's outbox; `name`: the agent's, which the store's own events (LossReports) carry."""
    return await Store.open(
        path,
        StoreConfig(max_batch_wait_ms=2, **store),
        metrics or Metrics(),
        stamper=EnvelopeStamper(name) if name else None,
    )


def forwarder_config(bundle: Path, address: str, **keys: Any) -> ForwardersConfig:
    return ForwardersConfig(
        bus=BusForwarderConfig(enabled=True, identity=str(bundle), address=address, **keys)
    )


async def bus_forwarders(
    store: Store, bundle: Path, address: str, metrics: Metrics, *, clock: Clock | None = None, **keys: Any
) -> Forwarders:
    """The bus forwarder as amoskys.wiring builds it from `[forwarders.bus]`."""
    keys.setdefault("batch_wait_ms", 5)
    keys.setdefault("call_timeout_seconds", 1.0)
    return await build_forwarders(forwarder_config(bundle, address, **keys), store, metrics, clock=clock)


class RecordingClock:
    """The real clock, remembering every sleep it was asked for (the backoff's delays)."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(max(0.0, seconds))
