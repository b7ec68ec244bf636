"""A real grpc mTLS server accepts the certificates amoskys.pki.issuance makes, and exposes the identities amoskys.pki.names reads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from pki_support import TD

from amoskys.pki.enrolment import enroll_agent
from amoskys.pki.issuance import create_ca, issue_client_cert
from amoskys.pki.layout import ApplianceCredentials
from amoskys.pki.names import PEER_IDENTITY_KEYS, identity_uri, peer_identity


class RecordingHealth(HealthServicer):
    """The grpc health service, recording each caller's auth context."""

    def __init__(self) -> None:
        super().__init__()
        self.auth_contexts: list[dict[str, list[bytes]]] = []

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> object:  # type: ignore[override]
        self.auth_contexts.append(context.auth_context())
        return await super().Check(request, context)


@dataclass
class Bus:
    port: int
    health: RecordingHealth
    creds: ApplianceCredentials


@pytest.fixture
async def bus(creds: ApplianceCredentials) -> AsyncIterator[Bus]:
    server = grpc.aio.server()
    health = RecordingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server_creds = grpc.ssl_server_credentials(
        [(creds.server_key.read_bytes(), creds.server_cert.read_bytes())],
        root_certificates=creds.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", server_creds)
    await server.start()
    try:
        yield Bus(port, health, creds)
    finally:
        await server.stop(None)


async def check(port: int, channel_creds: grpc.ChannelCredentials) -> health_pb2.HealthCheckResponse:
    async with grpc.aio.secure_channel(f"localhost:{port}", channel_creds) as channel:
        return await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def client_creds(ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


async def test_grpc_accepts_an_enrolled_client_and_exposes_its_identity(bus: Bus, tmp_path: Path) -> None:
    out = tmp_path / "agent"
    await asyncio.to_thread(
        functools.partial(
            enroll_agent,
            bus.creds,
            name="edge-7",
            role="agent",
            trust_domain=TD,
            bus_address="x",
            out_dir=out,
        )
    )

    response = await check(bus.port, client_creds(out / "ca.crt", out / "client.crt", out / "client.key"))

    assert response.status == health_pb2.HealthCheckResponse.SERVING
    [auth] = bus.health.auth_contexts
    uri = b"spiffe://site1.example/agent/edge-7"
    assert auth["peer_spiffe_id"] == [uri]
    assert auth["peer_uri"] == [uri]
    assert auth["x509_subject_alternative_name"] == [uri]
    assert set(PEER_IDENTITY_KEYS) <= set(auth)
    assert peer_identity(auth, TD) == "edge-7"
    assert peer_identity(auth, "other.example") is None


async def test_grpc_accepts_the_appliances_own_client_cert(bus: Bus) -> None:
    c = bus.creds
    await check(bus.port, client_creds(c.ca_cert, c.identity_cert, c.identity_cert_key))
    assert peer_identity(bus.health.auth_contexts[0], TD) == "appliance-1"


@pytest.mark.parametrize("client", ["no cert", "another CA", "expired"])
async def test_grpc_refuses_clients_without_a_valid_cert_with_unavailable(
    bus: Bus, tmp_path: Path, client: str
) -> None:
    ca, ca_key = bus.creds.ca_cert, bus.creds.ca_key
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    now = datetime.now(UTC)
    validity: dict[str, datetime] = {}
    if client == "another CA":
        ca, ca_key = await asyncio.to_thread(create_ca, tmp_path / "other", "another CA")
    if client == "expired":
        validity = {"not_before": now - timedelta(days=30), "not_after": now - timedelta(days=1)}
    await asyncio.to_thread(
        functools.partial(
            issue_client_cert,
            ca,
            ca_key,
            uri=identity_uri(TD, "x"),
            common_name="x",
            cert_path=cert,
            key_path=key,
            **validity,
        )
    )
    if client == "no cert":
        channel_creds = client_creds(bus.creds.ca_cert)
    else:
        channel_creds = client_creds(bus.creds.ca_cert, cert, key)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await check(bus.port, channel_creds)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert bus.health.auth_contexts == []
