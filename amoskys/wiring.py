"""The appliance's object graph: one factory per part, called by `amoskys.app` and by the test harnesses.

Each factory takes its part's config section and the parts built before it, and returns the part built
but not started: binding sockets, running tasks and stopping them is `amoskys.app`'s lifecycle. What
only a test changes (an identity cache that expires sooner, the collectors to register, a clock) is an
argument, so a harness never re-creates the wiring by hand.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from amoskys.bus.auth import Authenticator
from amoskys.bus.chain import ChainTracker
from amoskys.bus.core import Bus
from amoskys.bus.enrolment import ENROL_METHOD, EnrolmentService
from amoskys.bus.gate import CallGate
from amoskys.bus.identities import identity_loader
from amoskys.bus.server import BusServer
from amoskys.bus.service import EventBusService
from amoskys.collectors import capabilities
from amoskys.collectors.clock import Clock
from amoskys.collectors.context import ApplianceInfo, PublishFn
from amoskys.collectors.taps import PacketTaps
from amoskys.config import BusConfig, CollectorsConfig, Config, ForwardersConfig, SinksConfig, SourcesConfig
from amoskys.control_service import ControlService, Revoker
from amoskys.detections.builtin.runner import BuiltinDetections
from amoskys.detections.desk import AlertDesk
from amoskys.detections.runtime import DetectionRuntime
from amoskys.events import EnvelopeStamper
from amoskys.forwarders.bus import build_bus_forwarder
from amoskys.forwarders.group import Forwarders
from amoskys.health import Health
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.pki.layout import ApplianceCredentials
from amoskys.proto import bus_pb2_grpc, events_pb2
from amoskys.store import Store
from amoskys.store.queries.reader import Reader
from amoskys.supervisor import Supervisor
from amoskys.web.app import build_app
from amoskys.web.auth import Auth
from amoskys.web.context import WebContext
from amoskys.web.firstrun import ensure_first_admin, load_secret
from amoskys.web.metrics import WebMetrics

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.applications import Starlette

    from amoskys.collectors.base import Collector
    from amoskys.sources.nats import NatsHub

#: How long the bus trusts a looked-up publisher identity before reading the store again (a change made
#: through the control socket, as `amoskys agents revoke` does, is applied at once).
IDENTITY_CACHE_SECONDS = 1.0


def build_bus(
    store: Store,
    metrics: Metrics,
    config: BusConfig,
    *,
    stamper: EnvelopeStamper,
    faults: Mapping[str, int] | None = None,
    identity_cache_seconds: float = IDENTITY_CACHE_SECONDS,
) -> tuple[Bus, EventBusService]:
    """The bus in front of `store`, and the gRPC servicer that authenticates publishers to it."""
    bus = Bus(
        store,
        metrics,
        appliance_name=stamper.source,
        quota_events_per_second=config.quota_events_per_second,
        quota_burst_events=config.quota_burst_events,
        max_event_bytes=min(config.max_event_bytes, config.max_message_bytes),
        quota_bytes_per_second=config.quota_bytes_per_second,
        quota_burst_bytes=config.quota_burst_bytes,
        ack_timeout_seconds=config.ack_timeout_ms / 1000,
        ack_before_commit_ms=(faults or {}).get("ack_before_commit_ms", 0),
    )
    service = EventBusService(
        bus,
        Authenticator(
            config.trust_domain, identity_loader(store.state), cache_seconds=identity_cache_seconds
        ),
        ChainTracker(),
        metrics,
        store_state=store.state,
        max_events_per_batch=config.max_events_per_batch,
        stamper=stamper,
    )
    return bus, service


def build_bus_server(
    creds: ApplianceCredentials, config: BusConfig, service: EventBusService, *, max_connections: int = 0
) -> BusServer:
    """The mTLS gRPC server serving `service` (not listening yet: ``await server.start(host, port)``).

    `max_connections` is the appliance's descriptor budget for the bus (amoskys.fd_budget); 0 takes
    ``[bus] max_connections`` as it is (0 there too: no limit, as in the test harnesses)."""
    server = BusServer(
        creds,
        gate=CallGate(
            service.auth,
            service.metrics,
            max_calls_per_identity=config.max_calls_per_identity,
            open_methods=frozenset({ENROL_METHOD}),
        ),
        max_message_bytes=config.max_message_bytes,
        max_concurrent_rpcs=config.max_concurrent_rpcs,
        max_connections=max_connections or config.max_connections,
    )
    server.add_servicer(bus_pb2_grpc.add_EventBusServicer_to_server, service)
    server.add_servicer(bus_pb2_grpc.add_EnrolmentServicer_to_server, build_enrolment(creds, service))
    return server


def build_enrolment(creds: ApplianceCredentials, service: EventBusService) -> EnrolmentService:
    """Enrolment by one-time token and certificate renewal, audited through the bus like the rest."""
    bus, stamper = service.bus, service.stamper

    async def audit(event: events_pb2.AuditEvent) -> None:
        await bus.publish([stamper.stamp(events_pb2.Envelope(audit=event))])

    return EnrolmentService(creds, service.state, service.auth, service.metrics, audit)


async def build_forwarders(
    config: ForwardersConfig,
    store: Store,
    metrics: Metrics,
    *,
    clock: Clock | None = None,
    box: str = "",
    sinks: SinksConfig | None = None,
) -> Forwarders:
    """The enabled sinks of `[forwarders]` over `store` (not running yet: ``await forwarders.run()``,
    which registers them as the store's sinks even when there is none). `box` is this appliance's
    name (the NATS sink publishes under it). `sinks`: the alert sinks of `[sinks]` (an appliance's),
    run beside them. Raises ConfigError when an enabled sink's identity cannot be loaded, `box`
    cannot name a NATS subject token, or an alert sink's files cannot be read."""
    built = []
    if config.bus.enabled:
        built.append(await build_bus_forwarder(config.bus, store, metrics, clock=clock))
    if config.nats.enabled:
        # nats-py (~70 ms) is imported only when the NATS sink is on, and off the loop (importing reads files)
        await asyncio.to_thread(importlib.import_module, "amoskys.forwarders.nats")
        from amoskys.forwarders.nats import build_nats_forwarder

        built.append(build_nats_forwarder(config.nats, store, metrics, box=box, clock=clock))
    if sinks is not None and sinks.all():
        from amoskys.sinks.build import build_sinks  # httpx for webhooks: only when one is configured

        built += await build_sinks(sinks, store, metrics, clock=clock)
    return Forwarders(store, built)


async def build_hub(
    config: SourcesConfig, bus: Bus, metrics: Metrics, *, appliance: str, stamper: EnvelopeStamper
) -> NatsHub | None:
    """The hub's consumer of the fleet's NATS stream (`[sources.nats]`), or None when it is off (not
    running yet: ``await hub.run()``)."""
    if not config.nats.enabled:
        return None
    # nats-py is imported only by a hub, and off the loop (importing reads files)
    await asyncio.to_thread(importlib.import_module, "amoskys.sources.nats")
    from amoskys.sources.nats import NatsHub

    return NatsHub(config.nats, bus, metrics, appliance=appliance, stamper=stamper)


def build_collectors(
    config: CollectorsConfig,
    *,
    publish: PublishFn,
    stamper: EnvelopeStamper,
    metrics: Metrics,
    data_dir: Path,
    appliance: ApplianceInfo,
    packet_taps: PacketTaps | None = None,
    registry: Mapping[str, type[Collector]] | None = None,
    clock: Clock | None = None,
    has_capability: Callable[[str], bool] = capabilities.has_capability,
) -> Supervisor:
    """Every registered collector (or those of `registry`) under one supervisor, its policy from
    `config`; every context holds the one PacketTaps (a new one unless given)."""
    return Supervisor.from_config(
        config,
        registry=dict(registry) if registry is not None else None,
        publish=publish,
        stamper=stamper,
        metrics=metrics,
        data_dir=data_dir,
        appliance=appliance,
        packet_taps=packet_taps if packet_taps is not None else PacketTaps(),
        clock=clock,
        has_capability=has_capability,
    )


def build_control_service(
    store: Store, bus: Bus, stamper: EnvelopeStamper, supervisor: Supervisor
) -> ControlService:
    """The control service of a process without a dashboard (an agent): the control socket's collector
    actions, each audited as an event of its own store."""

    async def audit(event: events_pb2.AuditEvent) -> None:
        await bus.publish([stamper.stamp(events_pb2.Envelope(audit=event))])

    return ControlService(store.state, audit, supervisor=supervisor)


async def build_web_context(
    config: Config,
    layout: Layout,
    *,
    name: str,
    store: Store,
    bus: Bus,
    supervisor: Supervisor,
    metrics: Metrics,
    health: Health,
    stamper: EnvelopeStamper,
    revoke_live: Revoker | None = None,
    detections: DetectionRuntime | None = None,
    builtin: BuiltinDetections | None = None,
) -> WebContext:
    """The dashboard's view of the appliance (first admin and CSRF secret made on first start), with
    the one ControlService its actions go through; `revoke_live` applies an agent's revocation in the
    running bus (the bus gate's ``revoke``), so its calls in progress end before the answer; the alert
    actions (``ctx.detections``) act on `detections`, the running rules (None: none run here), and on
    `builtin`, the built-in detectors (amoskys.detections.builtin; None: none run here).

    Its read connection is open: the caller closes it with ``await ctx.reads.close()``.
    """
    web_cfg = config.web
    await ensure_first_admin(store.state, layout.root)
    secret = await asyncio.to_thread(load_secret, layout.root)

    async def audit(event: events_pb2.AuditEvent) -> None:
        await bus.publish([stamper.stamp(events_pb2.Envelope(audit=event))])

    auth = Auth(
        store.state,
        secret=secret,
        audit=audit,
        idle_timeout_s=web_cfg.session_idle_minutes * 60,
        absolute_timeout_s=web_cfg.session_absolute_hours * 3600,
        metrics=metrics.component(WebMetrics),
    )
    control = ControlService(
        store.state,
        audit,
        supervisor=supervisor,
        revoke_live=revoke_live,
        sessions_ended=lambda ids: auth._forget(*ids),
    )
    reads = Reader(layout.db, max_concurrent=web_cfg.max_concurrent_reads)
    await reads.open()
    return WebContext(
        config=config,
        metrics=metrics,
        health=health,
        store=store,
        bus=bus,
        supervisor=supervisor,
        auth=auth,
        pki_dir=layout.pki,
        name=name,
        reads=reads,
        control=control,
        secure_cookies=web_cfg.tls == "on",
        detections=AlertDesk(store, bus, stamper, runtime=detections, builtin=builtin),
    )


def build_web_app(ctx: WebContext, *, metrics_token: str = "") -> Starlette:
    """The dashboard's ASGI app over `ctx` (HSTS when the web port speaks TLS)."""
    return build_app(
        ctx.metrics, ctx.health, metrics_token=metrics_token, ctx=ctx, hsts=ctx.config.web.tls == "on"
    )
