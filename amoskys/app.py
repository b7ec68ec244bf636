"""The appliance: builds the object graph, owns the one TaskGroup, handles signals and shutdown.

Lifecycle (after uvicorn's): startup → serve until SIGTERM/SIGINT → graceful stop within
STOP_DEADLINE_SECONDS → cancel what is left. A second signal forces exit at once.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import importlib
import json
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from amoskys import __version__, faults, fd_budget, memory
from amoskys.bus.core import Bus
from amoskys.bus.server import BusServer
from amoskys.collectors import registry as collector_registry
from amoskys.collectors.clock import SystemClock
from amoskys.collectors.context import ApplianceInfo
from amoskys.collectors.flow_starts import FlowStarts
from amoskys.collectors.taps import PacketTaps
from amoskys.config import Config, enrol_listen_address, format_listen, parse_listen
from amoskys.control import ControlServer
from amoskys.control_service import ControlService
from amoskys.detections.builtin import registry as builtin_detectors
from amoskys.detections.builtin.runner import BuiltinDetections
from amoskys.detections.runtime import DetectionRuntime
from amoskys.errors import AmoskysError, BusError, ConfigError, ListenError, PkiError, first_error
from amoskys.events import EnvelopeStamper
from amoskys.files import write_atomic
from amoskys.forwarders.group import Forwarders
from amoskys.health import Health
from amoskys.loophealth import LoopLag, measure_lag, time_callbacks_when_debug
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.pki.enrolment import agent_cert_paths
from amoskys.pki.issuance import cert_not_after, ensure_appliance_pki
from amoskys.pki.layout import ApplianceCredentials
from amoskys.pki.names import same_name
from amoskys.profile import APPLIANCE, Profile
from amoskys.store import Store
from amoskys.supervisor import Supervisor
from amoskys.web.app import build_app
from amoskys.web.live import count_rates
from amoskys.web.login_audit import LoginAudit
from amoskys.web.server import WebServer, bind
from amoskys.wiring import (
    build_bus,
    build_bus_server,
    build_collectors,
    build_control_service,
    build_forwarders,
    build_hub,
    build_web_app,
    build_web_context,
)

if TYPE_CHECKING:
    from amoskys.sources.nats import NatsHub  # imported only by a hub (amoskys.wiring.build_hub)

log = structlog.get_logger(__name__)

STOP_DEADLINE_SECONDS = 5.0
#: with log level debug, loop callbacks running longer are logged by name (amoskys.loophealth)
SLOW_CALLBACK_SECONDS = 0.1
CERT_EXPIRY_REFRESH_SECONDS = 300.0

#: The config key and the flag that choose each listening address, for start-up errors.
_LISTEN_SETTINGS = {"web": "[web] listen / --web-listen", "bus": "[bus] listen / --bus-listen"}


@dataclass(frozen=True)
class RunOptions:
    config: Config
    data_dir: Path
    data_dir_reason: str
    env: Mapping[str, str]
    profile: Profile = APPLIANCE


def appliance_name(config: Config) -> str:
    return config.appliance.name or socket.gethostname().split(".")[0] or "appliance"


def cannot_listen(service: str, host: str, port: int, err: OSError | None) -> ListenError:
    """The ListenError for `service` ("web" or "bus") failing to listen on host:port because of `err`
    (None: the reason is unknown), naming the address and the setting to change."""
    address = format_listen(host, port)
    setting = _LISTEN_SETTINGS[service]
    if err is not None and err.errno == errno.EADDRINUSE:
        message = f"{service} port {address} is in use ({setting})"
    else:
        reason = (err.strerror or str(err)) if err is not None else "address in use or not available"
        message = f"{service} cannot listen on {address}: {reason} ({setting})"
    return ListenError(message, address=address, setting=setting)


def _bind_error(host: str, port: int) -> OSError | None:
    """Why binding host:port fails now (None if it would succeed): grpc does not tell."""
    try:
        bind(host, port).close()
    except OSError as err:
        return err
    return None


def appliance_credentials(config: Config, layout: Layout) -> ApplianceCredentials:
    """The appliance's CA, bus server certificate and identity in the data dir, made when missing."""
    return ensure_appliance_pki(
        layout.pki,
        name=appliance_name(config),
        trust_domain=config.bus.trust_domain,
        dns_names=config.bus.server_dns_names,
        ip_addresses=config.bus.server_ip_addresses,
    )


class Appliance:
    """One running appliance: every task it starts belongs to its TaskGroup."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.config = options.config
        self.layout = Layout(options.data_dir)
        self.profile = options.profile  # an agent: no bus server (so no CA), no dashboard
        self.name = appliance_name(self.config)
        self.metrics = Metrics()
        self.health = Health()
        self.faults = faults.parse(options.env)
        self.started_ns = time.time_ns()
        self.stamper = EnvelopeStamper(self.name)  # the one stamper of this process
        self._stop = asyncio.Event()
        self._signals = 0
        self.web: WebServer | None = None
        self.bus_server: BusServer | None = None
        self.bus: Bus | None = None
        self.store: Store | None = None
        self.supervisor: Supervisor | None = None
        self.control: ControlServer | None = None
        self.control_service: ControlService | None = None
        self.login_audit: LoginAudit | None = None  # counted refused logins, audited before the bus closes
        self.fds: fd_budget.FdBudget | None = None
        self.forwarders: Forwarders | None = None  # [forwarders]: the store forwarded upstream
        self.detections: DetectionRuntime | None = None  # [detections]: Sigma rules (appliance only)
        self.builtin: BuiltinDetections | None = None  # [detections.*]: the built-in detectors (likewise)
        self.hub: NatsHub | None = None  # [sources.nats]: the fleet's NATS stream consumed (hub mode)
        self._background: list[asyncio.Task[None]] = []  # cancelled at shutdown
        self._tasks: list[asyncio.Task[None]] = []  # cancelled if they outlive the stop deadline

    # -- signals
    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "stop_requested", signal=signal.Signals(signum).name, deadline_seconds=STOP_DEADLINE_SECONDS
            )
            self._stop.set()
            return
        log.warning("forced_exit", signal=signal.Signals(signum).name)
        os._exit(128 + signum)

    def request_stop(self) -> None:
        self._stop.set()

    # -- lifecycle
    async def run(self) -> None:
        """Start everything, serve until a stop is requested, then stop gracefully.

        A start-up failure stops whatever had started and raises its AmoskysError (the first one
        found when the TaskGroup reports several)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.slow_callback_duration = SLOW_CALLBACK_SECONDS  # asyncio's own check, in its debug mode
        if time_callbacks_when_debug(SLOW_CALLBACK_SECONDS):
            log.debug("slow_callbacks_logged", over_ms=SLOW_CALLBACK_SECONDS * 1000)
        try:
            await self._run()
        except BaseExceptionGroup as group:
            err = first_error(group, AmoskysError)
            if err is None:
                raise
            raise err from group
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _run(self) -> None:
        started = time.monotonic()
        self.metrics.start_time.set(self.started_ns / 1e9)
        for name, value in self.faults.items():
            log.warning("fault_injection_active", fault=name, value=value)
        if memory.limit_arenas():
            log.debug("malloc_arenas_limited", arenas=memory.ARENAS)
        await asyncio.to_thread(self.layout.ensure)
        log.info("data_dir", path=str(self.layout.root), chosen_by=self.options.data_dir_reason)
        creds = await asyncio.to_thread(self._ensure_pki) if self.profile.serves_bus else None
        if creds is not None:
            await asyncio.to_thread(self._export_cert_expiry, creds)
        self.fds = self._plan_fds()

        web_host, web_port = parse_listen(self.config.web.listen)
        if self.profile.dashboard and self.config.web.plain_http_off_loopback:
            log.warning(
                "web_plain_http_off_loopback",
                listen=self.config.web.listen,
                fix='set [web] tls = "on": passwords and session cookies now cross the network in clear',
            )
        bus_host, bus_port = parse_listen(self.config.bus.listen) if creds is not None else ("", 0)
        token = await asyncio.to_thread(self._metrics_token)
        if bus_port:  # grpc would print its own bind error on stderr, past our log: look first
            why = _bind_error(bus_host, bus_port)
            if why is not None:
                raise cannot_listen("bus", bus_host, bus_port, why) from why
        enrol = enrol_listen_address(self.config.bus) if creds is not None else None
        if enrol is not None and enrol[1] and (why := _bind_error(*enrol)) is not None:
            log.warning(  # the bus itself is more important than enrolment by token: run without it
                "bus_enrolment_port_unavailable", address=format_listen(*enrol), error=str(why),
                fix="set [bus] enrol_listen to a free HOST:PORT, or \"off\"",
            )  # fmt: skip
            enrol = None
        self._enrol_address = enrol
        try:
            web_sock = bind(web_host, web_port)  # before anything else starts: nothing to undo
        except OSError as err:
            raise cannot_listen("web", web_host, web_port, err) from err
        try:
            self.store = await Store.open(
                self.layout.db, self.config.store, self.metrics, stamper=self.stamper
            )
            try:
                await self._refuse_enrolled_name(self.store)
                await self._serve(self.store, creds, web_sock, web_host, bus_host, bus_port, token, started)
            finally:
                await self.store.close()
                await asyncio.to_thread(self.layout.run_json.unlink, missing_ok=True)
        finally:
            web_sock.close()
        log.info(f"{self.profile.mode}_stopped")

    async def _start_detections(self, store: Store, bus: Bus) -> DetectionRuntime | None:
        """The Sigma rules of [detections], loaded (pySigma imported off the loop) before ready. An agent
        runs none: the appliance it forwards to evaluates its events."""
        config = self.config.detections
        if not self.profile.dashboard:
            if config.enabled and config.sigma_paths:
                log.warning("detections_not_run_by_agent", fix="configure sigma_paths on the appliance")
            return None
        runtime = DetectionRuntime(config, store=store, bus=bus, stamper=self.stamper, metrics=self.metrics)
        await runtime.start()
        self.detections = runtime
        return runtime

    async def _start_builtin(
        self, store: Store, bus: Bus, flow_starts: FlowStarts, creds: ApplianceCredentials | None
    ) -> BuiltinDetections | None:
        """The built-in detectors of [detections] (an agent runs none, as for the Sigma rules)."""
        if not self.profile.dashboard:
            return None

        def certs() -> list[tuple[str, str, Path]]:
            found: list[tuple[str, str, Path]] = []
            if creds is not None:
                found += [(self.name, "ca", creds.ca_cert), (self.name, "server", creds.server_cert)]
                found.append((self.name, "client", creds.identity_cert))
            found += [(p.stem, f"agent:{p.stem}", p) for p in agent_cert_paths(self.layout.pki)]
            return found

        detectors = builtin_detectors.build(
            self.config.detections,
            silent_after_heartbeats=self.config.bus.silent_after_heartbeats,
            appliance=self.name,
            certs=certs,
        )
        runner = BuiltinDetections(
            self.config.detections,
            detectors,
            store=store,
            bus=bus,
            stamper=self.stamper,
            metrics=self.metrics,
            appliance=self.name,
            flow_starts=flow_starts,
        )
        await runner.start()
        self.builtin = runner
        return runner

    async def _refuse_enrolled_name(self, store: Store) -> None:
        """Refuse to start (ConfigError) when an unrevoked enrolled identity bears this appliance's
        name, ignoring case: its holder could publish as the appliance itself."""
        for ident in await store.state.list_identities():
            if ident.revoked_ns is None and same_name(ident.name, self.name):
                raise ConfigError(
                    f"appliance name {self.name!r} is also the name of enrolled {ident.role} {ident.name!r} "
                    "(compared ignoring case), which could then publish as this appliance: set another "
                    f"[appliance] name, or revoke it (amoskys agents revoke {ident.name})",
                    path="appliance.name",
                    value=self.name,
                )

    async def _serve(
        self,
        store: Store,
        creds: ApplianceCredentials | None,
        web_sock: socket.socket,
        web_host: str,
        bus_host: str,
        bus_port: int,
        token: str,
        started: float,
    ) -> None:
        bus, service = build_bus(
            store, self.metrics, self.config.bus, stamper=self.stamper, faults=self.faults
        )
        self.bus = bus
        fds = self.fds if self.fds is not None else self._plan_fds()
        if creds is not None:
            # grpc caps connections per listening address: a derived budget is shared with the enrolment port
            shared = 2 if self._enrol_address is not None and not self.config.bus.max_connections else 1
            self.bus_server = build_bus_server(
                creds, self.config.bus, service, max_connections=max(1, fds.bus_connections // shared)
            )
        self.forwarders = forwarders = await build_forwarders(
            self.config.forwarders,
            store,
            self.metrics,
            box=self.name,
            # alert sinks: an appliance's (an agent raises no alerts; amoskys.agent refuses [sinks])
            sinks=self.config.sinks if self.profile.dashboard else None,
        )
        if self.profile.dashboard:  # an agent is never a hub (amoskys.agent refuses [sources.nats])
            self.hub = await build_hub(
                self.config.sources, bus, self.metrics, appliance=self.name, stamper=self.stamper
            )
        hub = self.hub
        info = ApplianceInfo(
            self.name,
            __version__,
            socket.gethostname(),
            self.profile.mode,
            self.started_ns,
            outbox_lag=forwarders.outbox_lag,
        )
        taps = PacketTaps()  # the capture's flow starts reach the built-in detectors through it
        self.supervisor = build_collectors(
            self.config.collectors,
            publish=bus.publish,
            stamper=self.stamper,
            metrics=self.metrics,
            data_dir=self.layout.root,
            appliance=info,
            packet_taps=taps,
        )
        await asyncio.to_thread(self._import_collector_modules)
        detections = await self._start_detections(store, bus)
        builtin = await self._start_builtin(store, bus, taps.flow_starts, creds)
        clock = SystemClock()
        ports: dict[str, int] = {}
        web_ctx = None
        if self.profile.dashboard:
            web_ctx = await build_web_context(
                self.config,
                self.layout,
                name=self.name,
                store=store,
                bus=bus,
                supervisor=self.supervisor,
                metrics=self.metrics,
                health=self.health,
                stamper=self.stamper,
                revoke_live=self.bus_server.gate.revoke if self.bus_server else None,
                detections=detections,
                builtin=builtin,
            )
        # the one control service of this process: the dashboard's actions and the control socket's
        self.control_service = (
            web_ctx.control if web_ctx else build_control_service(store, bus, self.stamper, self.supervisor)
        )
        self.control = ControlServer(
            self.layout.control_socket,
            self.control_service,
            lambda: (
                info.snapshot(clock)
                | {
                    "data_dir": str(self.layout.root),
                    "ports": ports,
                    "bus_max_connections": fds.bus_connections if self.bus_server else None,
                    "fd_budget": fds.to_dict(),
                    "forwarders": forwarders.status(),
                    "sources": [hub.status()] if hub else [],
                }
            ),
        )
        self.web = WebServer(
            build_web_app(web_ctx, metrics_token=token)
            if web_ctx
            else build_app(self.metrics, self.health, metrics_token=token, config=self.config),
            web_sock,
            tls=(creds.server_cert, creds.server_key) if creds and self._web_tls else None,
            limit_concurrency=fds.web_connections,
            trusted_proxies=self.config.web.trusted_proxies,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks.append(tg.create_task(store.run(), name="store-writer"))
                if self.bus_server:
                    try:
                        bus_port = await self.bus_server.start(bus_host, bus_port, enrol=self._enrol_address)
                    except BusError as err:
                        why = await asyncio.to_thread(_bind_error, bus_host, bus_port)
                        raise cannot_listen("bus", bus_host, bus_port, why) from err
                self._background.append(
                    tg.create_task(measure_lag(self.metrics.component(LoopLag)), name="loop-lag")
                )
                tg.create_task(self.web.serve(), name="web")
                async with asyncio.timeout(10):
                    await self.web.wait_started()
                ports["web"] = self.web.port
                if self.bus_server:
                    ports["bus"] = bus_port
                await self.control.start()
                self._tasks.append(tg.create_task(self.supervisor.run(), name="collectors"))
                self._background.append(tg.create_task(forwarders.run(), name="forwarders"))
                if detections is not None:
                    self._background.append(tg.create_task(detections.run(), name="detections"))
                if builtin is not None:
                    self._background.append(tg.create_task(builtin.run(), name="detections-builtin"))
                if hub:
                    self._background.append(tg.create_task(hub.run(), name="hub"))
                if web_ctx:  # the dashboard's live rates and its refused-login audit
                    self._background.append(
                        tg.create_task(
                            count_rates(bus.subscribe("rates", 100_000), web_ctx.rates), name="rates"
                        )
                    )
                    self.login_audit = web_ctx.auth.login_audit
                    self._background.append(tg.create_task(self.login_audit.run(), name="login-audit"))
                if creds:
                    self._background.append(
                        tg.create_task(self._refresh_cert_expiry(creds), name="cert-expiry")
                    )
                # two fsyncs: in a worker thread, as every file write of the appliance
                await asyncio.to_thread(self._write_run_json, web_host, self.web.port, bus_host, bus_port)
                self.health.ready = True
                self.metrics.up.set(1)
                # everything made at start-up lives as long as the process: keep it out of the
                # collector's sight, so full collections stay short (a 40 ms pause stalls /proc reads)
                gc.freeze()
                log.info(
                    f"{self.profile.mode}_ready",
                    name=self.name,
                    version=__version__,
                    web=f"http://{format_listen(web_host, self.web.port)}",
                    bus=format_listen(bus_host, bus_port) if self.bus_server else None,
                    control=str(self.layout.control_socket),
                    seconds=round(time.monotonic() - started, 3),
                )
                await asyncio.to_thread(memory.release_free_memory)  # what start-up freed
                await self._stop.wait()
                await self._shutdown()
        except BaseException:
            await self._abandon()
            raise
        finally:
            if self.control:
                await self.control.close()
            if web_ctx:
                await web_ctx.reads.close()

    @property
    def _web_tls(self) -> bool:
        return self.config.web.tls == "on"

    async def _shutdown(self) -> None:
        """Collectors stop, the bus refuses new work (RETRY), the writer flushes, servers close."""
        for task in self._background:
            task.cancel()
        self.health.stopping = True
        self.metrics.up.set(0)
        delay = self.faults.get("slow_shutdown_ms", 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_DEADLINE_SECONDS - 0.5
        for name, step in self._stop_steps():
            try:
                async with asyncio.timeout(max(0.05, deadline - loop.time())):
                    await step()
            except TimeoutError:
                log.warning("stop_step_timed_out", step=name, deadline_seconds=STOP_DEADLINE_SECONDS)
        if self.web:
            self.web.stop()
        for task in self._tasks:  # whatever did not stop in time is cancelled, so the TaskGroup can end
            if not task.done() and task.get_name() != "web":
                task.cancel()

    async def _abandon(self) -> None:
        """After a failure (at start-up or later) ended the TaskGroup: stop the bus server, which
        lives outside it, so nothing keeps serving or keeps the process from exiting."""
        if self.web:
            self.web.stop()
        if self.bus_server and self.bus_server.port:
            try:
                async with asyncio.timeout(STOP_DEADLINE_SECONDS):
                    await self.bus_server.stop(grace_seconds=0)
            except TimeoutError:
                log.warning("stop_step_timed_out", step="bus_server", deadline_seconds=STOP_DEADLINE_SECONDS)

    def _stop_steps(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self.control:
            steps.append(("control", self.control.close))
        if self.supervisor:
            steps.append(("collectors", self.supervisor.stop))
        if self.login_audit:
            steps.append(("login_audit", self.login_audit.close))  # its counts, while the bus takes them
        if self.detections:
            steps.append(("detections", self.detections.close))  # follow-ups and position, likewise
        if self.builtin:
            steps.append(("detections_builtin", self.builtin.close))
        if self.bus:
            steps.append(("bus", self.bus.close))
        if self.bus_server:
            server = self.bus_server
            steps.append(("bus_server", lambda: server.stop(grace_seconds=1.0)))
        if self.store:
            steps.append(("store", self.store.close))  # drains the queue, then the writer task returns
        return steps

    def _export_cert_expiry(self, creds: ApplianceCredentials) -> None:
        """Expiry of the CA, the bus server and client certificates, and every enrolled agent's."""
        certs = [("ca", creds.ca_cert), ("server", creds.server_cert), ("client", creds.identity_cert)]
        certs += [(f"agent:{p.stem}", p) for p in agent_cert_paths(self.layout.pki)]
        for label, path in certs:
            try:
                self.metrics.pki_cert_expiry.labels(cert=label).set(cert_not_after(path).timestamp())
            except PkiError as err:
                log.warning("cert_unreadable", cert=label, error=str(err))

    async def _refresh_cert_expiry(self, creds: ApplianceCredentials) -> None:
        """Renewals and enrolments made while running show on /metrics within a few minutes."""
        while True:
            await asyncio.sleep(CERT_EXPIRY_REFRESH_SECONDS)
            await asyncio.to_thread(self._export_cert_expiry, creds)

    def _import_collector_modules(self) -> None:
        """Import, in a worker thread before ready, what enabled collectors would otherwise import on the
        loop when they start (a collector class names them in ``heavy_imports(config)``)."""
        began = time.monotonic()
        imported: list[str] = []
        for name, spec in collector_registry.discover().items():
            section = self.config.collectors.section_named(name)
            wanted = getattr(spec.load(), "heavy_imports", None) if section.enabled else None
            for module in wanted(section) if wanted is not None else ():
                importlib.import_module(module)
                imported.append(module)
        if imported:
            log.info(
                "collector_modules_imported", modules=imported, seconds=round(time.monotonic() - began, 3)
            )

    def _plan_fds(self) -> fd_budget.FdBudget:
        """Raise the descriptor limit and share it out (ConfigError when it is too low)."""
        enabled = sum(
            1 for name in collector_registry.names() if self.config.collectors.section_named(name).enabled
        )
        fds = fd_budget.at_start(collectors=enabled, configured_bus=self.config.bus.max_connections)
        if fds.raised_from != fds.limit:
            log.info("fd_limit_raised", soft_was=fds.raised_from, soft_now=fds.limit)
        log.info("fd_budget", **fds.to_dict())
        return fds

    def _ensure_pki(self) -> ApplianceCredentials:
        creds = appliance_credentials(self.config, self.layout)
        if creds.created:
            log.info("pki_created", dir=str(self.layout.pki), created=list(creds.created))
        else:
            log.info("pki_loaded", dir=str(self.layout.pki))
        return creds

    def _metrics_token(self) -> str:
        path = self.config.web.metrics_token_file
        if not path:
            return ""
        try:
            token = Path(path).read_text().strip()
        except OSError as err:
            raise ConfigError(
                f"web.metrics_token_file: cannot read {path!r}: {err.strerror}",
                path="web.metrics_token_file",
                value=path,
            ) from err
        if not token:
            raise ConfigError(
                f"web.metrics_token_file: {path!r} is empty", path="web.metrics_token_file", value=path
            )
        return token

    def _write_run_json(self, web_host: str, web_port: int, bus_host: str, bus_port: int) -> None:
        info = {
            "pid": os.getpid(),
            "version": __version__,
            "name": self.name,
            "data_dir": str(self.layout.root),
            "mode": self.profile.mode,
            "web": {"host": web_host, "port": web_port},
            "bus": {"host": bus_host, "port": bus_port} if self.bus_server else None,
            "enrol": {"host": self.bus_server.enrol_host, "port": self.bus_server.enrol_port}
            if self.bus_server and self.bus_server.enrol_port
            else None,
            "control_socket": str(self.layout.control_socket),
            "started_ns": self.started_ns,
        }
        write_atomic(self.layout.run_json, json.dumps(info, indent=2).encode() + b"\n", 0o600)
