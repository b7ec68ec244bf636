"""The appliance's view of its agents: an agent's heartbeat (outbox lag, version, OS, addresses) crosses the
real bus (mTLS, signed batch) into the real store and shows on the Agents page and API, which marks an
agent silent after `[bus] silent_after_heartbeats` of its intervals (only the clock is faked); and the
Processes, Events and Host views filter by source."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from amoskys import __version__
from amoskys.collectors.context import ApplianceInfo
from amoskys.collectors.heartbeat.collector import HeartbeatCollector, host_addresses, os_description
from amoskys.collectors.heartbeat.config import HeartbeatConfig
from amoskys.config import ApplianceConfig, BusConfig, Config
from amoskys.events import EnvelopeStamper
from amoskys.health import Health
from amoskys.paths import Layout
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.web import passwords
from amoskys.web.context import WebContext
from amoskys.wiring import build_collectors, build_web_app, build_web_context

from support import make_context

sys.path.insert(0, str(Path(__file__).parent / "bus"))
from bus_harness import TRUST, BusEnv, running_env

PASSWORD = "viewer-password-123"
NS = 1_000_000_000


@dataclass
class Appliance:
    env: BusEnv
    ctx: WebContext
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def appliance(tmp_path: Path) -> AsyncIterator[Appliance]:
    """The bus harness's appliance (real store, bus and mTLS gRPC server) with its dashboard wired by
    amoskys.wiring over the same store and bus, and a viewer logged in."""
    async with running_env(tmp_path) as env:
        config = Config(
            appliance=ApplianceConfig(name="appliance"),
            bus=BusConfig(trust_domain=TRUST, silent_after_heartbeats=3),
        )
        supervisor = build_collectors(
            config.collectors,
            registry={},
            publish=env.bus.publish,
            stamper=EnvelopeStamper("appliance"),
            metrics=env.metrics,
            data_dir=tmp_path,
            appliance=ApplianceInfo("appliance", __version__, "host", "appliance", 1),
        )
        ctx = await build_web_context(
            config,
            Layout(tmp_path),
            name="appliance",
            store=env.store,
            bus=env.bus,
            supervisor=supervisor,
            metrics=env.metrics,
            health=Health(ready=True),
            stamper=EnvelopeStamper("appliance"),
        )
        await env.store.state.create_user("viewer", await passwords.hash_password(PASSWORD), "viewer")
        transport = httpx.ASGITransport(app=build_web_app(ctx), client=("192.0.2.10", 40000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            r = await client.post("/api/v1/login", json={"name": "viewer", "password": PASSWORD})
            assert r.status_code == 200, r.text
            try:
                yield Appliance(env, ctx, client)
            finally:
                await ctx.reads.close()


async def agents_by_name(app: Appliance) -> dict[str, dict]:  # type: ignore[type-arg]
    r = await app.client.get("/api/v1/agents")
    assert r.status_code == 200, r.text
    return {a["name"]: a for a in r.json()["items"]}


async def test_an_agents_heartbeat_crosses_the_bus_and_shows_on_the_agents_page(tmp_path: Path) -> None:
    async with appliance(tmp_path) as app:
        identity = await app.env.enroll("branch-7")
        await app.env.enroll("never-seen")
        client = app.env.client(identity)

        async def send(envelopes: Sequence[ev.Envelope]) -> None:  # the agent's side: one signed batch
            await client.publish_raw([e.SerializeToString() for e in envelopes])

        info = ApplianceInfo(
            "branch-7", __version__, "ep-7", "agent", time.time_ns(), outbox_lag=lambda: (321, 4.5)
        )
        ctx = make_context("heartbeat", tmp_path, publish=send, source="branch-7", appliance=info)
        await HeartbeatCollector(HeartbeatConfig(interval_seconds=10), ctx).beat()

        stored = await app.env.store.events(source="branch-7", after_seq=0, limit=10)
        assert [e.kind for e in stored] == ["heartbeat"]
        received_ns = stored[0].received_ns
        app.ctx.clock_ns = lambda: received_ns + 30 * NS  # three intervals: not yet silent
        agents = await agents_by_name(app)
        seen = agents["branch-7"]
        assert seen["version"] == __version__ and seen["os"] == os_description()
        assert seen["addresses"] == host_addresses() and seen["hostname"] == "ep-7"
        assert (seen["outbox_lag_events"], seen["outbox_lag_seconds"]) == (321, 4.5)
        assert seen["heartbeat_interval_seconds"] == 10.0 and seen["last_heartbeat_ns"] == received_ns
        assert seen["silent"] is False and seen["last_seen_ns"] == received_ns
        assert agents["never-seen"]["silent"] is None and agents["never-seen"]["version"] is None

        page = await app.client.get("/agents")
        assert page.status_code == 200
        row = page.text.split('data-name="branch-7"')[1].split("</tr>")[0]
        assert "321 ev / 4 s" in row and __version__ in row and os_description() in row
        assert ">active<" in row and "silent" not in row
        for header in ("Events/s", "Outbox lag", "Version", "OS", "Addresses"):
            assert f"<th>{header}</th>" in page.text

        app.ctx.clock_ns = lambda: received_ns + 30 * NS + 1  # past three of its 10 s intervals
        assert (await agents_by_name(app))["branch-7"]["silent"] is True
        row = (await app.client.get("/agents")).text.split('data-name="branch-7"')[1].split("</tr>")[0]
        assert 'class="badge silent"' in row

        await HeartbeatCollector(HeartbeatConfig(interval_seconds=10), ctx).beat()  # it speaks again
        latest = (await app.env.store.events(source="branch-7", after_seq=0, limit=10))[-1]
        app.ctx.clock_ns = lambda: latest.received_ns + NS
        assert (await agents_by_name(app))["branch-7"]["silent"] is False


def _record(stamper: EnvelopeStamper, ts_ns: int, **body: object) -> Record:
    return Record.from_envelope(stamper.stamp(ev.Envelope(**body), ts_ns=ts_ns))  # type: ignore[arg-type]


async def test_the_agents_events_per_second_come_from_its_recent_minutes(tmp_path: Path) -> None:
    async with appliance(tmp_path) as app:
        await app.env.enroll("branch-7")
        now = time.time_ns()
        end = now - now % (60 * NS)  # the last five whole minutes: 600 events, and 50 older ones
        stamper = EnvelopeStamper("branch-7")
        audit = ev.AuditEvent(actor="x", action="y")
        recent = [_record(stamper, end - 1 - i * 500_000_000, audit=audit) for i in range(600)]
        older = [_record(stamper, end - 301 * NS - i, audit=audit) for i in range(50)]
        await app.env.store.submit(recent + older)
        app.ctx.clock_ns = lambda: now
        assert (await agents_by_name(app))["branch-7"]["events_per_second"] == 2.0


async def test_processes_events_and_host_filter_by_source(tmp_path: Path) -> None:
    async with appliance(tmp_path) as app:
        now = time.time_ns() - 120 * NS
        records = []
        for source, pid in (("appliance", 100), ("branch-7", 200)):
            stamper = EnvelopeStamper(source)
            proc = ev.ProcessEvent(kind=ev.ProcessEvent.EXEC, pid=pid, exe=f"/bin/{source}", argv=[source])
            host = ev.HostMetrics(hostname=source, cpu_percent=pid / 10, memory_total_bytes=1 << 30)
            records += [_record(stamper, now, process=proc), _record(stamper, now, host=host)]
        await app.env.store.submit(records)
        c = app.client

        events = (await c.get("/api/v1/events", params={"source": "branch-7"})).json()["items"]
        assert len(events) == 2 and {e["source"] for e in events} == {"branch-7"}
        table = (await c.get("/api/v1/processes", params={"source": "branch-7"})).json()["items"]
        assert [(p["source"], p["pid"]) for p in table] == [("branch-7", 200)]
        execs = (await c.get("/api/v1/processes/execs", params={"source": "branch-7"})).json()["items"]
        assert [(e["source"], e["body"]["pid"]) for e in execs] == [("branch-7", 200)]
        hosts = (await c.get("/api/v1/host", params={"source": "branch-7"})).json()
        assert [(h["source"], h["cpu_percent"]) for h in hosts["items"]] == [("branch-7", 20.0)]
        assert [p["source"] for p in hosts["series"]] == ["branch-7"]
        assert {"appliance", "branch-7"} <= set(hosts["sources"])
        both = (await c.get("/api/v1/host")).json()["items"]
        assert [h["source"] for h in both] == ["appliance", "branch-7"]

        # the pages: a source control, and only that source's rows
        page = (await c.get("/processes", params={"source": "branch-7"})).text
        assert '<select name="source"' in page and "<option selected>branch-7</option>" in page
        assert "/bin/branch-7" in page and "/bin/appliance" not in page
        page = (await c.get("/host", params={"source": "branch-7"})).text
        assert "<option selected>branch-7</option>" in page
        assert 'data-source="branch-7"' in page and 'data-source="appliance"' not in page
        page = (await c.get("/events", params={"source": "branch-7"})).text
        assert 'list="sources"' in page and '<option value="branch-7">' in page
        assert (
            page.count('<span class="source">branch-7</span>') == 2
            and '<span class="source">appliance' not in page
        )
