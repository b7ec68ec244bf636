"""The dashboard in the test's loop: a real store in tmp_path, the bus, a running supervisor, and the
Starlette app driven through httpx (one client per source address)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from amoskys import pki
from amoskys.bus.core import Bus
from amoskys.collectors.context import ApplianceInfo
from amoskys.config import Config
from amoskys.events import EnvelopeStamper
from amoskys.health import Health
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2
from amoskys.store import Store
from amoskys.supervisor import Supervisor
from amoskys.web import passwords
from amoskys.web.app import build_app
from amoskys.web.auth import Auth
from amoskys.web.context import WebContext
from amoskys.web.firstrun import ensure_first_admin, load_secret
from amoskys.web.reads import WebReads

VIEWER_PASSWORD = "viewer-password-123"


@dataclass
class Web:
    data: Path
    ctx: WebContext
    app: object
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def admin_password(self) -> str:
        return (self.data / "admin-password").read_text().strip()

    def client(self, addr: str = "192.0.2.10") -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(addr, 40000)),  # type: ignore[arg-type]
            base_url="http://appliance.test",
        )
        self.clients.append(c)
        return c

    async def login(
        self, name: str, password: str, addr: str = "192.0.2.10"
    ) -> tuple[httpx.AsyncClient, str]:
        """A client with a session cookie, and its CSRF token."""
        c = self.client(addr)
        r = await c.post("/api/v1/login", json={"name": name, "password": password})
        assert r.status_code == 200, r.text
        me = await c.get("/api/v1/me")
        return c, me.json()["csrf_token"]


async def make_web(tmp: Path) -> Web:
    data = tmp / "data"
    data.mkdir()
    config = Config()
    metrics = Metrics()
    health = Health(ready=True)
    store = await Store.open(data / "events.db", config.store, metrics, source_name="edge-test")
    tasks = [asyncio.create_task(store.run())]
    bus = Bus(store, metrics, quota_events_per_second=10**6, quota_burst_events=10**6, ack_timeout_seconds=10)
    stamper = EnvelopeStamper("edge-test")
    info = ApplianceInfo("edge-test", "test", "host", "appliance", 1)
    supervisor = Supervisor.from_config(
        config.collectors,
        registry=_heartbeat_only(),
        publish=bus.publish,
        stamper=stamper,
        metrics=metrics,
        data_dir=data,
        appliance=info,
    )
    tasks.append(asyncio.create_task(supervisor.run()))
    await ensure_first_admin(store.state, data)
    await store.state.create_user("viewer", await passwords.hash_password(VIEWER_PASSWORD), "viewer")

    async def audit(event: events_pb2.AuditEvent) -> None:
        await bus.publish([stamper.stamp(events_pb2.Envelope(audit=event))])

    pki.ensure_appliance_pki(
        data / "pki",
        name="edge-test",
        trust_domain="amoskys.local",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
    )
    reads = WebReads(data / "events.db")
    await reads.open()
    ctx = WebContext(
        config=config,
        metrics=metrics,
        health=health,
        store=store,
        bus=bus,
        supervisor=supervisor,
        auth=Auth(store.state, secret=load_secret(data), audit=audit),
        pki_dir=data / "pki",
        name="edge-test",
        reads=reads,
    )
    return Web(data=data, ctx=ctx, app=build_app(metrics, health, ctx=ctx), tasks=tasks)


def _heartbeat_only() -> dict[str, type]:
    from amoskys.collectors import registry

    return {"heartbeat": registry.discover()["heartbeat"].load()}


async def close_web(web: Web) -> None:
    for c in web.clients:
        await c.aclose()
    await web.ctx.supervisor.stop()
    await web.ctx.bus.close()
    await web.ctx.reads.close()
    await web.ctx.store.close()
    await asyncio.gather(*web.tasks)
