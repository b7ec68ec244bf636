"""The grpc.aio server of the EventBus: mTLS always, health service, created inside the running loop.

The server certificate and the client CA bundle are re-read when their files change (looked at every
CERT_CHECK_SECONDS on a worker thread; new TLS handshakes get them from then on), so `amoskys certs
renew` takes effect without a restart.

Every method of every service served here (the gRPC health service included) runs behind the
CallGate (amoskys.bus.gate): servicers are added with `add_servicer`, which wraps each handler, so an
unknown or revoked identity is refused at call start and no identity holds more than
`[bus] max_calls_per_identity` calls.

Enrolment (amoskys.bus.enrolment) needs a port where a caller without a certificate can finish the
TLS handshake: grpc's Python API offers a server either requiring and verifying a client certificate
or never asking for one, nothing in between. So `start(..., enrol=(host, port))` adds a port to the
same server with server-authenticated TLS only (its chain carries the CA, so an endpoint can pin the
CA by fingerprint before it sends anything). No call made there has an identity, so the gate refuses
every method on it but its open ones (Enrol): Publish without a client certificate is
PERMISSION_DENIED there, and on the bus port the handshake itself fails.

Idle connections cannot take the process's descriptors: grpc core accepts at most `max_connections`
at once (`grpc.max_allowed_incoming_connections`, counted per listening address; more are accepted
and closed at once) and closes a connection whose TLS handshake has not finished within
HANDSHAKE_TIMEOUT_MS (`grpc.server_handshake_timeout_ms`; grpc's own default is 120 s).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from amoskys.bus.gate import CallGate, gated_handlers
from amoskys.errors import BusError
from amoskys.pki.layout import ApplianceCredentials

log = structlog.get_logger(__name__)

#: A connection that has not finished its TLS handshake by then is closed.
HANDSHAKE_TIMEOUT_MS = 10_000


#: How often the bus looks (off the loop) for a renewed server certificate or CA bundle.
CERT_CHECK_SECONDS = 2.0


class _ReloadingCredentials:
    """Feeds grpc's dynamic SSL credentials: a new configuration once a cert file changed.

    grpc asks for it at each new TLS handshake, on the event loop, so answering reads memory only: the
    files are looked at by `refresh`, which BusServer runs on a worker thread every CERT_CHECK_SECONDS.
    Built on a worker thread too (it reads the files)."""

    def __init__(self, creds: ApplianceCredentials, *, chain_ca: bool = False) -> None:
        self._creds = creds
        self._chain_ca = chain_ca  # the enrolment port: send the CA after the server certificate
        self._stamp = self._mtimes()
        self.initial = self._config()
        self._staged: grpc.ServerCertificateConfiguration | None = None

    def _mtimes(self) -> tuple[int, ...]:
        c = self._creds
        return tuple(os.stat(p).st_mtime_ns for p in (c.server_cert, c.server_key, c.ca_cert))

    def _config(self) -> grpc.ServerCertificateConfiguration:
        c = self._creds
        chain = c.server_cert.read_bytes()
        if self._chain_ca:
            chain = chain.rstrip(b"\n") + b"\n" + c.ca_cert.read_bytes()
        return grpc.ssl_server_certificate_configuration(
            [(c.server_key.read_bytes(), chain)], root_certificates=c.ca_cert.read_bytes()
        )

    def refresh(self) -> None:
        """On a worker thread: when a file changed, read them all and stage the new configuration."""
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return
            config = self._config()
        except OSError as err:  # mid-rename: keep serving the old certificate
            log.warning("bus_cert_reload_failed", error=str(err))
            return
        self._stamp = stamp
        self._staged = config
        log.info("bus_certs_reloaded")

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher, on the loop: the staged configuration once, else None ("no change")."""
        config, self._staged = self._staged, None
        return config


class BusServer:
    """Owns the grpc.aio server; servicers are added before start()."""

    def __init__(
        self,
        creds: ApplianceCredentials,
        *,
        gate: CallGate,
        max_message_bytes: int,
        max_concurrent_rpcs: int,
        max_connections: int = 0,
        handshake_timeout_ms: int = HANDSHAKE_TIMEOUT_MS,
    ) -> None:
        """`max_connections`: most connections open at once (0: no limit)."""
        self._creds = creds
        self.max_connections = max_connections
        options: list[tuple[str, int]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
            ("grpc.server_handshake_timeout_ms", handshake_timeout_ms),
        ]
        if max_connections > 0:
            options.append(("grpc.max_allowed_incoming_connections", max_connections))
        self._server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
        self.gate = gate
        self._gate_task: asyncio.Task[None] | None = None
        self._cert_task: asyncio.Task[None] | None = None
        self._fetchers: list[_ReloadingCredentials] = []
        # grpc_health's stubs do not declare its `aio` module (grpcio-health-checking ships it).
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.add_servicer(health_pb2_grpc.add_HealthServicer_to_server, self.health)
        self.port = 0
        self.enrol_host, self.enrol_port = "", 0  # 0: no enrolment port

    def add_servicer(self, add_to_server: Callable[[Any, Any], None], servicer: Any) -> None:
        """Serve `servicer` behind the gate: `add_to_server` is its generated
        ``add_<Service>Servicer_to_server`` function (call before start())."""
        add_to_server(servicer, _GatedRegistrar(self._server, self.gate))

    async def start(self, host: str, port: int, *, enrol: tuple[str, int] | None = None) -> int:
        """Listen on host:port (mTLS) and, when `enrol` (host, port) is given, there with
        server-authenticated TLS for Enrol; return the bus port (`enrol_port`: the enrolment port)."""
        address = _address(host, port)
        fetcher = await asyncio.to_thread(_ReloadingCredentials, self._creds)
        self._fetchers = [fetcher]
        credentials = grpc.dynamic_ssl_server_credentials(
            fetcher.initial,
            # grpc-stubs 1.53 omits that the fetcher may return None ("no change"), as grpc documents.
            fetcher,  # type: ignore[arg-type]
            require_client_authentication=True,
        )
        try:
            self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError as err:
            raise BusError(f"bus cannot listen on {address}: {err}") from err
        if not self.port:
            raise BusError(f"bus cannot listen on {address}: address in use or not available")
        if enrol is not None:
            enrol_fetcher = await asyncio.to_thread(_ReloadingCredentials, self._creds, chain_ca=True)
            self._fetchers.append(enrol_fetcher)
            self.enrol_host, self.enrol_port = enrol[0], self._add_enrol_port(_address(*enrol), enrol_fetcher)
        await self._server.start()
        loop = asyncio.get_running_loop()
        self._gate_task = loop.create_task(self.gate.run(), name="bus-call-gate")
        self._cert_task = loop.create_task(self._watch_certs(), name="bus-cert-watch")
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("amoskys.v1.EventBus", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def _watch_certs(self) -> None:
        """Forever: look for renewed certificate files, off the loop (see _ReloadingCredentials)."""
        while True:
            await asyncio.sleep(CERT_CHECK_SECONDS)
            await asyncio.to_thread(self._refresh_certs)

    def _refresh_certs(self) -> None:
        for fetcher in self._fetchers:  # the bus port's, and the enrolment port's: one hop for both
            fetcher.refresh()

    def _add_enrol_port(self, address: str, fetcher: _ReloadingCredentials) -> int:
        credentials = grpc.dynamic_ssl_server_credentials(
            fetcher.initial,
            fetcher,  # type: ignore[arg-type]  # may return None, as above
            require_client_authentication=False,
        )
        try:
            bound = self._server.add_secure_port(address, credentials)
        except RuntimeError as err:
            raise BusError(f"bus enrolment port cannot listen on {address}: {err}") from err
        if not bound:
            raise BusError(f"bus enrolment port cannot listen on {address}: address in use or not available")
        return bound

    async def stop(self, grace_seconds: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_seconds)
        tasks = [t for t in (self._gate_task, self._cert_task) if t is not None]
        self._gate_task = self._cert_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _GatedRegistrar:
    """Stands in for the grpc server in generated ``add_*Servicer_to_server`` functions, so that every
    handler they register is wrapped by the gate (the generic and the pre-registered paths alike)."""

    def __init__(self, server: grpc.aio.Server, gate: CallGate) -> None:
        self._server = server
        self._gate = gate

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self._server.add_generic_rpc_handlers(gated_handlers(self._gate, handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        # grpc-stubs 1.53 predates Server.add_registered_method_handlers (grpcio 1.63).
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service, {name: self._gate.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        )
