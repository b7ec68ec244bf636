"""Enrolment by one-time token and renewal over a real bus (grpc.aio on port 0, real certificates):
the endpoint's keys are made on its side, the token buys one certificate, and the bundle it writes
publishes like one made by `amoskys agents enroll`."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.bus.client import PublisherIdentity
from amoskys.errors import PkiError
from amoskys.pki import csr as csrs
from amoskys.pki import enrol_client, renewal
from amoskys.pki.enrolment import agent_cert_path, enroll_agent
from amoskys.pki.identities import load_identity_key
from amoskys.pki.issuance import load_tls_key
from amoskys.pki.tokens import Token, ca_fingerprint, new_token, secret_hash
from amoskys.proto import bus_pb2, bus_pb2_grpc
from amoskys.store.enrol_tokens import EnrolTokens

from bus_harness import TRUST, BusEnv, events_for, running_env
from support import eventually

HOUR_NS = 3600 * 10**9


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[BusEnv]:
    async with running_env(tmp_path, enrol=True) as e:
        yield e


async def issue(env: BusEnv, name: str, *, ttl_ns: int = HOUR_NS, role: str = "agent") -> Token:
    token = new_token(ca_fingerprint(env.creds.ca_cert.read_bytes()))
    await EnrolTokens(env.store.state).issue(
        token.id,
        secret_hash(token.secret),
        name=name,
        role=role,
        ttl_ns=ttl_ns,
        created_by="cli:test",  # type: ignore[arg-type]
    )
    return token


async def enrol(env: BusEnv, token: Token | str, out: Path, **kw: object) -> enrol_client.Enrolled:
    text = token.text() if isinstance(token, Token) else token
    return await enrol_client.enrol(
        text,
        bus_address=env.address,
        enrol_port=env.server.enrol_port,
        out_dir=out,
        **kw,  # type: ignore[arg-type]
    )


def outcome(env: BusEnv, name: str) -> float:
    return env.counter("amoskys_bus_enrolments_total", outcome=name)


async def test_a_token_enrols_an_endpoint_whose_bundle_publishes(env: BusEnv, tmp_path: Path) -> None:
    token = await issue(env, "edge-7")

    done = await enrol(env, token, tmp_path / "bundle")

    assert (done.name, done.role) == ("edge-7", "agent")
    ident = await PublisherIdentity.load(tmp_path / "bundle")
    assert ident.bus_address == env.address
    client = env.client(ident)
    ids, events = events_for(ident, 3)
    ack = await client.publish_raw(events)
    assert ack.status == bus_pb2.OK
    assert await env.stored_ids("edge-7") == ids
    stored = await env.store.state.get_identity("edge-7")
    assert stored is not None and stored.cert_serial == str(
        x509.load_pem_x509_certificate(ident.client_cert).serial_number
    )
    assert agent_cert_path(env.creds.ca_cert.parent, "edge-7").read_bytes() == ident.client_cert
    assert outcome(env, "enrolled") == 1
    modes = {
        f: stat.S_IMODE((tmp_path / "bundle" / f).stat().st_mode) for f in ("client.key", "identity.ed25519")
    }
    assert modes == {"client.key": 0o600, "identity.ed25519": 0o600}


async def test_the_private_keys_never_reach_the_appliance(env: BusEnv, tmp_path: Path) -> None:
    await enrol(env, await issue(env, "edge-1"), tmp_path / "bundle")
    secrets = [(tmp_path / "bundle" / f).read_bytes() for f in ("client.key", "identity.ed25519")]
    bodies = [b"".join(s.splitlines()[1:-1]) for s in secrets]  # the base64 of each key

    everything = b"".join(
        p.read_bytes() for p in env.tmp.rglob("*") if p.is_file() and "bundle" not in p.parts
    )
    assert all(body not in everything for body in bodies)


async def test_a_token_buys_one_certificate(env: BusEnv, tmp_path: Path) -> None:
    token = await issue(env, "edge-2")
    await enrol(env, token, tmp_path / "one")

    with pytest.raises(enrol_client.EnrolRefusedError) as refused:
        await enrol(env, token, tmp_path / "two")

    assert refused.value.code == "PERMISSION_DENIED"
    assert "used already" in str(refused.value)
    assert outcome(env, "reused") == 1
    assert not (tmp_path / "two" / "client.key").exists()  # the keys made for the refused try are gone


async def test_an_expired_token_is_refused(env: BusEnv, tmp_path: Path) -> None:
    token = await issue(env, "edge-3", ttl_ns=1)

    with pytest.raises(enrol_client.EnrolRefusedError, match="expired"):
        await enrol(env, token, tmp_path / "b")

    assert outcome(env, "expired") == 1
    assert await env.store.state.get_identity("edge-3") is None


async def test_a_token_of_another_name_is_refused_and_stays_usable(env: BusEnv, tmp_path: Path) -> None:
    token = await issue(env, "edge-4")

    with pytest.raises(enrol_client.EnrolRefusedError, match="another name"):
        await enrol(env, token, tmp_path / "b", name="edge-5")
    assert outcome(env, "wrong_name") == 1
    assert await env.store.state.get_identity("edge-5") is None

    assert (await enrol(env, token, tmp_path / "c", name="edge-4")).name == "edge-4"


async def test_a_forged_secret_is_refused_without_telling_anything(env: BusEnv, tmp_path: Path) -> None:
    real = await issue(env, "edge-6")
    forged = Token(real.id, bytes(32), real.ca_fingerprint)

    with pytest.raises(enrol_client.EnrolRefusedError, match="not valid"):
        await enrol(env, forged, tmp_path / "b")

    assert outcome(env, "unknown_token") == 1
    assert (await enrol(env, real, tmp_path / "c")).name == "edge-6"


async def test_a_wrong_ca_fingerprint_sends_nothing(env: BusEnv, tmp_path: Path) -> None:
    token = await issue(env, "edge-8")
    other = Token(token.id, token.secret, bytes(32))  # a token naming another CA

    with pytest.raises(PkiError, match="does not present the CA"):
        await enrol(env, other, tmp_path / "b")
    with pytest.raises(PkiError, match="differs"):
        await enrol(env, token, tmp_path / "c", ca_fingerprint="ab" * 32)

    assert env.counter("amoskys_bus_enrolments_total", outcome="unknown_token") == 0
    assert (await enrol(env, token, tmp_path / "d")).name == "edge-8"  # never sent, so still unused


async def test_renewal_replaces_the_certificate_when_a_third_of_its_life_is_left(
    env: BusEnv, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    bundle = await asyncio.to_thread(
        enroll_agent, env.creds, name="edge-9", role="agent", trust_domain=TRUST, bus_address=env.address,
        out_dir=out, valid_days=30,
    )  # fmt: skip
    await env.store.state.enroll_identity("edge-9", "agent", bundle.public_key_raw, str(bundle.cert_serial))
    old = (out / "client.crt").read_bytes()
    key = (out / "client.key").read_bytes()
    now = datetime.now(UTC)

    assert await renewal.renew_if_due(out, now=now + timedelta(days=19)) is None  # 11 days left of 30
    assert (out / "client.crt").read_bytes() == old

    not_after = await renewal.renew_if_due(out, now=now + timedelta(days=21))

    assert not_after is not None and not_after > bundle.not_after + timedelta(days=300)
    assert (out / "client.crt").read_bytes() != old and (out / "client.key").read_bytes() == key
    stored = await env.store.state.get_identity("edge-9")
    new_serial = str(x509.load_pem_x509_certificate((out / "client.crt").read_bytes()).serial_number)
    assert stored is not None and stored.cert_serial == new_serial
    assert outcome(env, "renewed") == 1
    kept = agent_cert_path(env.creds.ca_cert.parent, "edge-9")  # what the Agents page and API show
    assert kept.read_bytes() == (out / "client.crt").read_bytes()
    expiry = env.counter("amoskys_pki_cert_expiry_timestamp_seconds", cert="agent:edge-9")
    assert expiry == pytest.approx(not_after.timestamp())
    client = env.client(await PublisherIdentity.load(out))  # the renewed bundle publishes
    assert (
        await client.publish_raw(events_for(await PublisherIdentity.load(out), 1)[1])
    ).status == bus_pb2.OK


async def test_a_revoked_identity_cannot_renew(env: BusEnv, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    await enrol(env, await issue(env, "edge-10"), out)
    await env.store.state.revoke_identity("edge-10")
    await eventually(lambda: env.server.gate.auth.refresh("edge-10"), what="the revocation seen")
    old = (out / "client.crt").read_bytes()

    with pytest.raises(renewal.RenewRefusedError) as refused:
        await renewal.renew_if_due(out, now=datetime.now(UTC) + timedelta(days=390))

    assert refused.value.code == "PERMISSION_DENIED"
    assert (out / "client.crt").read_bytes() == old


async def test_renewal_needs_the_enrolled_identity_key(env: BusEnv, tmp_path: Path) -> None:
    """A stolen TLS certificate and key are not enough to extend their life."""
    out = tmp_path / "bundle"
    await enrol(env, await issue(env, "edge-11"), out)
    ident = await PublisherIdentity.load(out)
    creds = grpc.ssl_channel_credentials(ident.ca_cert, ident.client_key, ident.client_cert)
    tls_key = await asyncio.to_thread(load_tls_key, out / "client.key")
    identity = await asyncio.to_thread(load_identity_key, out / "identity.ed25519")
    csr = csrs.make_csr(tls_key, "edge-11")
    thief = Ed25519PrivateKey.generate()
    async with grpc.aio.secure_channel(env.address, creds) as channel:
        stub = bus_pb2_grpc.EnrolmentStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Renew(
                bus_pb2.RenewRequest(csr=csr, identity_signature=csrs.prove(thief, csrs.RENEW_CONTEXT, csr))
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # the enrolled key's proof for enrolment is not a proof for renewal either
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Renew(
                bus_pb2.RenewRequest(
                    csr=csr, identity_signature=csrs.prove(identity, csrs.ENROL_CONTEXT, csr)
                )
            )


async def test_the_renewal_task_renews_a_due_certificate_and_reports_it(env: BusEnv, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    started = datetime.now(UTC) - timedelta(hours=20)  # 1 day of life, 4 h left: due
    bundle = await asyncio.to_thread(
        enroll_agent, env.creds, name="edge-12", role="agent", trust_domain=TRUST, bus_address=env.address,
        out_dir=out, valid_days=1, now=started,
    )  # fmt: skip
    await env.store.state.enroll_identity("edge-12", "agent", bundle.public_key_raw, str(bundle.cert_serial))
    renewed: list[datetime] = []

    async def on_renewed(not_after: datetime) -> None:
        renewed.append(not_after)

    task = asyncio.create_task(renewal.keep_renewed(out, interval_seconds=0.05, on_renewed=on_renewed))
    try:
        await eventually(lambda: renewed, what="a renewal")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert renewed[0] > bundle.not_after + timedelta(days=300)
    assert await renewal.renew_if_due(out) is None  # the new certificate is not due
