"""A dashboard revocation goes through the control service like `amoskys agents revoke`: the running
bus ends the agent's open calls before the API answers (before, the dashboard only recorded it and the
calls ended when the bus next re-read the identity, up to ~2 s later)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from amoskys.bus.client import PublisherIdentity

from support import amoskys

pytestmark = [pytest.mark.e2e]

STREAMS = 3


def _enroll(data: Path, tmp: Path, name: str) -> PublisherIdentity:
    amoskys("certs", "init", "--data-dir", str(data))
    out = tmp / f"bundle-{name}"
    amoskys(
        "agents", "enroll", name, "--out", str(out), "--data-dir", str(data), "--bus-address", "localhost:1"
    )
    return PublisherIdentity.from_bundle(out)


async def test_a_dashboard_revocation_ends_the_agents_open_calls_before_it_answers(
    appliance_factory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ident = await asyncio.to_thread(_enroll, data, tmp_path, "agent-a")
    app = await asyncio.to_thread(appliance_factory, data_dir=data)
    await asyncio.to_thread(app.wait_ready, timeout=30)
    password = (await asyncio.to_thread((data / "admin-password").read_text)).strip()
    creds = grpc.ssl_channel_credentials(ident.ca_cert, ident.client_key, ident.client_cert)
    channel = grpc.aio.secure_channel(f"127.0.0.1:{app.bus_port}", creds)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        calls = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(STREAMS)]
        for call in calls:  # each stream is open: it delivered its first message
            first = await asyncio.wait_for(call.read(), 30)
            assert first is not grpc.aio.EOF
        async with httpx.AsyncClient(base_url=app.web_url, timeout=30) as web:
            assert (await web.post("/api/v1/login", json={"name": "admin", "password": password})).is_success
            csrf = (await web.get("/api/v1/me")).json()["csrf_token"]
            r = await web.post("/api/v1/agents/agent-a/revoke", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert r.json() == {"name": "agent-a", "revoked": True, "calls_ended": STREAMS}
        codes = await asyncio.wait_for(asyncio.gather(*(c.code() for c in calls)), 30)
        assert set(codes) == {grpc.StatusCode.PERMISSION_DENIED}
    finally:
        await channel.close()
