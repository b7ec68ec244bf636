"""The grpc.aio server of the EventBus: mTLS always, health service, created inside the running loop."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from amoskys.errors import BusError
from amoskys.pki import ApplianceCredentials


def _server_credentials(creds: ApplianceCredentials) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(creds.server_key.read_bytes(), creds.server_cert.read_bytes())],
        root_certificates=creds.ca_cert.read_bytes(),
        require_client_auth=True,
    )


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
        try:
            self.port = self._server.add_secure_port(address, _server_credentials(self._creds))
        except RuntimeError as err:
            raise BusError(f"bus cannot listen on {address}: {err}") from err
        if not self.port:
            raise BusError(f"bus cannot listen on {address}: address in use or not available")
        await self._server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace_seconds: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_seconds)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
