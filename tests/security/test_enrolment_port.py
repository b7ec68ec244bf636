"""Attack: the enrolment port lets a caller without a client certificate finish the TLS handshake, so
it must serve nothing else, and guessing tokens must not pay.

Against a real `amoskys run`: on the enrolment port a caller without a certificate gets
PERMISSION_DENIED for Publish, PublishBatch, Renew and the health service, and nothing is stored; on
the bus port the handshake itself fails. Forged tokens are refused (PERMISSION_DENIED, counted), and
from one address only the first few are even looked at: the rest get RESOURCE_EXHAUSTED with a
retry-after hint, counted as rate_limited.
"""

from __future__ import annotations

import secrets
from collections import Counter
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc

from amoskys.bus.enrolment import ENROL_BURST
from amoskys.pki import csr as csrs
from amoskys.pki.identities import public_key_raw
from amoskys.pki.tokens import Token, ca_fingerprint
from amoskys.proto import bus_pb2, bus_pb2_grpc

from support import RunningAppliance, http_get

pytestmark = [pytest.mark.e2e]
RETRY_HINT_KEY = "amoskys-retry-after-ms"


def metrics(app: RunningAppliance) -> dict[str, float]:
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("amoskys_bus_") and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def enrol_request(token: str) -> bus_pb2.EnrolRequest:
    """A well-formed request (own keys, a CSR, the proof), as a guesser would send it."""
    key = ec.generate_private_key(ec.SECP256R1())
    identity = Ed25519PrivateKey.generate()
    csr = csrs.make_csr(key, "")
    return bus_pb2.EnrolRequest(
        token=token,
        csr=csr,
        identity_public_key=public_key_raw(identity),
        identity_signature=csrs.prove(identity, csrs.ENROL_CONTEXT, csr),
    )


def channel(app: RunningAppliance, port: int) -> grpc.aio.Channel:
    """A channel that trusts the appliance's CA and presents no client certificate."""
    ca = (app.data_dir / "pki" / "ca.crt").read_bytes()
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=ca))


@pytest.fixture
def app(appliance_factory) -> RunningAppliance:  # type: ignore[no-untyped-def]
    running = appliance_factory()
    running.wait_ready()
    return running


async def test_nothing_but_enrol_answers_a_caller_without_a_certificate(app: RunningAppliance) -> None:
    batch = bus_pb2.SignedBatch(sender="edge-1", key_id="x", events=b"", signature=b"x" * 64)
    async with channel(app, app.info["enrol"]["port"]) as ch:
        bus = bus_pb2_grpc.EventBusStub(ch)
        calls = {
            "Publish": bus.Publish(batch, timeout=5),
            "PublishBatch": bus.PublishBatch(batch, timeout=5),
            "Renew": bus_pb2_grpc.EnrolmentStub(ch).Renew(bus_pb2.RenewRequest(csr=b"x"), timeout=5),
            "Health": health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5),
        }
        codes = {}
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            codes[name] = refused.value.code()
    assert set(codes.values()) == {grpc.StatusCode.PERMISSION_DENIED}, codes

    async with channel(app, app.bus_port) as ch:  # the bus port: no certificate, no handshake
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await bus_pb2_grpc.EventBusStub(ch).PublishBatch(batch, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    seen = metrics(app)
    assert seen['amoskys_bus_calls_refused_total{reason="no_identity"}'] == 4
    assert not any(k.startswith("amoskys_bus_batches_total{") for k in seen), "no batch reached the servicer"


async def test_guessing_tokens_is_refused_then_rate_limited(app: RunningAppliance, tmp_path: Path) -> None:
    fingerprint = ca_fingerprint((app.data_dir / "pki" / "ca.crt").read_bytes())
    guesses = 4 * ENROL_BURST
    codes: Counter[grpc.StatusCode] = Counter()
    hints = []
    async with channel(app, app.info["enrol"]["port"]) as ch:
        stub = bus_pb2_grpc.EnrolmentStub(ch)
        for _ in range(guesses):
            forged = Token(secrets.token_hex(8), secrets.token_bytes(32), fingerprint)
            try:
                await stub.Enrol(enrol_request(forged.text()), timeout=5)
            except grpc.aio.AioRpcError as err:
                codes[err.code()] += 1
                trailing = dict(err.trailing_metadata() or ())
                if RETRY_HINT_KEY in trailing:
                    hints.append(int(trailing[RETRY_HINT_KEY]))

    assert codes == {
        grpc.StatusCode.PERMISSION_DENIED: ENROL_BURST,  # looked up (and not found) ...
        grpc.StatusCode.RESOURCE_EXHAUSTED: guesses - ENROL_BURST,  # ... then not even that
    }
    assert len(hints) == guesses - ENROL_BURST and min(hints) > 0
    seen = metrics(app)
    assert seen['amoskys_bus_enrolments_total{outcome="rate_limited"}'] == guesses - ENROL_BURST
    assert seen['amoskys_bus_enrolments_total{outcome="unknown_token"}'] == ENROL_BURST


async def test_a_forged_secret_for_a_real_token_id_is_refused_and_counted(
    app: RunningAppliance, tmp_path: Path
) -> None:
    from support import amoskys

    line = amoskys("agents", "token", "edge-1", "--data-dir", str(app.data_dir)).stdout.split()
    real = line[line.index("--token") + 1]
    _, token_id, _, fp = real.split(".")
    forged = f"amk1.{token_id}.{'A' * 43}.{fp}"
    bundle = tmp_path / "b"

    result = amoskys(
        *line[1 : line.index("--token")], "--token", forged, "--identity", str(bundle), check=False
    )

    assert result.returncode == 2
    assert "not valid" in result.stderr
    assert metrics(app)['amoskys_bus_enrolments_total{outcome="unknown_token"}'] == 1
    assert "enrolled as" in amoskys(*line[1:], "--identity", str(bundle)).stdout  # the real one still works
