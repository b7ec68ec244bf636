"""A real bus in the test's loop, built by amoskys.wiring as the appliance builds it: SQLite store in
tmp_path, grpc.aio server on port 0, real mTLS certs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from amoskys.app import appliance_credentials, appliance_name
from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.bus.core import Bus
from amoskys.bus.server import BusServer
from amoskys.config import ApplianceConfig, BusConfig, Config, StoreConfig
from amoskys.events import EnvelopeStamper
from amoskys.loadgen import SyntheticEvents
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.pki.enrolment import enroll_agent
from amoskys.pki.layout import ApplianceCredentials
from amoskys.proto import bus_pb2_grpc
from amoskys.store import Store
from amoskys.wiring import build_bus, build_bus_server

TRUST = "amoskys.local"


@dataclass
class BusEnv:
    tmp: Path
    creds: ApplianceCredentials
    metrics: Metrics
    store: Store
    bus: Bus
    server: BusServer
    port: int
    clients: list[BusClient] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def enroll(self, name: str, role: str = "agent") -> PublisherIdentity:
        out = self.tmp / "bundles" / name
        bundle = enroll_agent(
            self.creds,
            name=name,
            role=role,
            trust_domain=TRUST,
            bus_address=self.address,
            out_dir=out,  # type: ignore[arg-type]
        )
        await self.store.state.enroll_identity(name, role, bundle.public_key_raw, str(bundle.cert_serial))  # type: ignore[arg-type]
        return PublisherIdentity.from_bundle(out)

    def client(self, identity: PublisherIdentity, **kw) -> BusClient:  # type: ignore[no-untyped-def]
        c = BusClient(identity, self.address, **kw)
        self.clients.append(c)
        return c

    def stub(self, identity: PublisherIdentity) -> bus_pb2_grpc.EventBusStub:
        """A raw stub over an mTLS channel, for sending batches the client would never make."""
        creds = grpc.ssl_channel_credentials(identity.ca_cert, identity.client_key, identity.client_cert)
        channel = grpc.aio.secure_channel(self.address, creds)
        self._channels.append(channel)
        return bus_pb2_grpc.EventBusStub(channel)

    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def stored_ids(self, source: str) -> list[str]:
        out: list[str] = []
        after = 0
        while True:
            page = await self.store.events(source=source, after_seq=after, limit=1000)
            if not page:
                return out
            out += [e.event_id for e in page]
            after = page[-1].store_seq

    def counter(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def events_for(identity: PublisherIdentity, n: int) -> tuple[list[str], list[bytes]]:
    return SyntheticEvents(identity.name).make(n)


async def make_env(tmp: Path, store_config: StoreConfig | None = None, **bus_kw) -> BusEnv:  # type: ignore[no-untyped-def]
    """The appliance's bus (amoskys.wiring), with limits a test can reach and a short identity cache."""
    config = Config(
        appliance=ApplianceConfig(name="appliance"),
        bus=BusConfig(
            trust_domain=TRUST,
            server_ip_addresses=("127.0.0.1",),
            max_events_per_batch=bus_kw.pop("max_events_per_batch", 500),
            max_concurrent_rpcs=100,
            max_calls_per_identity=bus_kw.pop("max_calls_per_identity", 32),
            quota_events_per_second=bus_kw.pop("quota_events_per_second", 1_000_000),
            quota_burst_events=bus_kw.pop("quota_burst_events", 1_000_000),
        ),
        store=store_config or StoreConfig(),
    )
    layout = Layout(tmp)
    creds = appliance_credentials(config, layout)
    metrics = Metrics()
    stamper = EnvelopeStamper(appliance_name(config))  # the one stamper of the process, as in app.py
    store = await Store.open(layout.db, config.store, metrics, stamper=stamper)
    bus, service = build_bus(
        store,
        metrics,
        config.bus,
        stamper=stamper,
        identity_cache_seconds=bus_kw.pop("cache_seconds", 0.2),
    )
    server = build_bus_server(creds, config.bus, service)
    port = await server.start("127.0.0.1", 0, enrol=("127.0.0.1", 0) if bus_kw.pop("enrol", False) else None)
    return BusEnv(tmp=tmp, creds=creds, metrics=metrics, store=store, bus=bus, server=server, port=port)


@contextlib.asynccontextmanager
async def running_env(tmp_path: Path, **kwargs: Any) -> AsyncIterator[BusEnv]:
    """`make_env(tmp_path, **kwargs)` with its store writer running; everything closed afterwards."""
    env = await make_env(tmp_path, **kwargs)
    writer = asyncio.create_task(env.store.run())
    try:
        yield env
    finally:
        for c in env.clients:
            await c.close()
        for ch in env._channels:
            await ch.close()
        await env.bus.close()
        await env.server.stop(0)
        await env.store.close()
        await writer
