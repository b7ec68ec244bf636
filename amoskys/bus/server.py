"""The grpc.aio server of the EventBus: mTLS always, health service, created inside the running loop.

The server certificate and the client CA bundle are re-read when their files change (checked at
each new TLS handshake), so `amoskys certs renew` takes effect without a restart.
"""

from __future__ import annotations

import os

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from amoskys.errors import BusError
from amoskys.pki import ApplianceCredentials

log = structlog.get_logger(__name__)


class _ReloadingCredentials:
    """Feeds grpc's dynamic SSL credentials: a new configuration whenever a cert file changes."""

    def __init__(self, creds: ApplianceCredentials) -> None:
        self._creds = creds
        self._stamp = self._mtimes()
        self.initial = self._config()

    def _mtimes(self) -> tuple[int, ...]:
        c = self._creds
        return tuple(os.stat(p).st_mtime_ns for p in (c.server_cert, c.server_key, c.ca_cert))

    def _config(self) -> grpc.ServerCertificateConfiguration:
        c = self._creds
        return grpc.ssl_server_certificate_configuration(
            [(c.server_key.read_bytes(), c.server_cert.read_bytes())],
            root_certificates=c.ca_cert.read_bytes(),
        )

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return None
            config = self._config()
        except OSError as err:  # mid-rename: keep serving the old certificate
            log.warning("bus_cert_reload_failed", error=str(err))
            return None
        self._stamp = stamp
        log.info("bus_certs_reloaded")
        return config


class BusServer:
    """Owns the grpc.aio server; servicers are added before start()."""

    def __init__(
        self, creds: ApplianceCredentials, *, max_message_bytes: int, max_concurrent_rpcs: int
    ) -> None:
        self._creds = creds
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = 0

    @property
    def server(self) -> grpc.aio.Server:
        return self._server

    async def start(self, host: str, port: int) -> int:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        fetcher = _ReloadingCredentials(self._creds)
        credentials = grpc.dynamic_ssl_server_credentials(
            fetcher.initial, fetcher, require_client_authentication=True
        )
        try:
            self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError as err:
            raise BusError(f"bus cannot listen on {address}: {err}") from err
        if not self.port:
            raise BusError(f"bus cannot listen on {address}: address in use or not available")
        await self._server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("amoskys.v1.EventBus", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace_seconds: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_seconds)
