"""The dashboard in the test's loop, wired by amoskys.wiring: a real store in tmp_path, the bus, a running
supervisor, and the Starlette app driven through httpx (one client per source address)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from amoskys.app import appliance_credentials, appliance_name
from amoskys.collectors.context import ApplianceInfo
from amoskys.config import ApplianceConfig, Config, DetectionsConfig
from amoskys.detections.runtime import DetectionRuntime
from amoskys.events import EnvelopeStamper
from amoskys.health import Health
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.store import Store
from amoskys.web import passwords
from amoskys.web.context import WebContext
from amoskys.wiring import build_bus, build_collectors, build_web_app, build_web_context

VIEWER_PASSWORD = "viewer-password-123"


@dataclass
class Web:
    data: Path
    ctx: WebContext
    app: object
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    detections: DetectionRuntime | None = None
    detections_task: asyncio.Task[None] | None = None

    @property
    def admin_password(self) -> str:
        return (self.data / "admin-password").read_text().strip()

    def client(self, addr: str = "192.0.2.10") -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(addr, 40000)),  # type: ignore[arg-type]
            base_url="http://localhost",
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


async def make_web(
    tmp: Path, collectors: tuple[str, ...] = ("heartbeat",), *, detections: DetectionsConfig | None = None
) -> Web:
    """The dashboard wired by amoskys.wiring as the appliance wires it; only the heartbeat runs (or the
    registered `collectors` named, each with its default config); with `detections`, its Sigma rules
    run too (started before the dashboard, as in amoskys.app)."""
    data = tmp / "data"
    data.mkdir()
    layout = Layout(data)
    config = Config(appliance=ApplianceConfig(name="edge-test"))
    name = appliance_name(config)
    metrics = Metrics()
    health = Health(ready=True)
    stamper = EnvelopeStamper(name)  # the one stamper of the process, as in app.py
    store = await Store.open(layout.db, config.store, metrics, stamper=stamper)
    tasks = [asyncio.create_task(store.run())]
    bus, _ = build_bus(store, metrics, config.bus, stamper=stamper)
    supervisor = build_collectors(
        config.collectors,
        registry=_only(collectors),
        publish=bus.publish,
        stamper=stamper,
        metrics=metrics,
        data_dir=layout.root,
        appliance=ApplianceInfo(name, "test", "host", "appliance", 1),
    )
    tasks.append(asyncio.create_task(supervisor.run()))
    runtime = runtime_task = None
    if detections is not None:
        runtime = DetectionRuntime(detections, store=store, bus=bus, stamper=stamper, metrics=metrics)
        await runtime.start()
        runtime_task = asyncio.create_task(runtime.run())
    appliance_credentials(config, layout)
    ctx = await build_web_context(
        config,
        layout,
        name=name,
        store=store,
        bus=bus,
        supervisor=supervisor,
        metrics=metrics,
        health=health,
        stamper=stamper,
        detections=runtime,
    )
    await store.state.create_user("viewer", await passwords.hash_password(VIEWER_PASSWORD), "viewer")
    return Web(
        data=data,
        ctx=ctx,
        app=build_web_app(ctx),
        tasks=tasks,
        detections=runtime,
        detections_task=runtime_task,
    )


def _only(names: tuple[str, ...]) -> dict[str, type]:
    from amoskys.collectors import registry

    found = registry.discover()
    return {name: found[name].load() for name in names}


async def close_web(web: Web) -> None:
    for c in web.clients:
        await c.aclose()
    await web.ctx.supervisor.stop()
    if web.detections_task is not None:
        web.detections_task.cancel()
        await asyncio.gather(web.detections_task, return_exceptions=True)
    if web.detections is not None:
        await web.detections.close()
    await web.ctx.bus.close()
    await web.ctx.reads.close()
    await web.ctx.store.close()
    await asyncio.gather(*web.tasks)
