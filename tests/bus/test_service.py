"""The EventBus over real mTLS: who may publish, what is stored, and what every ack means."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amoskys.bus.client import AccessDeniedError, PublisherIdentity, PublishRefusedError
from amoskys.bus.server import CERT_CHECK_SECONDS
from amoskys.config import StoreConfig
from amoskys.pki.enrolment import enroll_agent
from amoskys.pki.issuance import create_ca, issue_client_cert, load_cert, renew_server_cert
from amoskys.pki.names import identity_uri
from amoskys.pki.signatures import batch_digest
from amoskys.proto import bus_pb2, bus_pb2_grpc, events_pb2
from amoskys.store.access import appliance_state

from bus_harness import TRUST, BusEnv, events_for, make_env
from support import eventually


async def _raw_call(
    env: BusEnv, identity: PublisherIdentity, batch: bus_pb2.SignedBatch
) -> bus_pb2.PublishAck:
    return await env.stub(identity).PublishBatch(batch, timeout=10)


async def test_ok_means_every_accepted_event_is_committed(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    ids, raws = events_for(agent, 50)
    ack = await bus_env.client(agent).publish_raw(raws)
    assert (ack.status, ack.accepted, ack.duplicates, list(ack.rejected)) == (bus_pb2.OK, 50, 0, [])
    assert await bus_env.stored_ids("agent-1") == ids  # already readable: the commit came first
    assert ack.digest == batch_digest(
        agent.key_id, b"", bus_pb2.RawEventList(events=raws).SerializeToString()
    )
    assert bus_env.counter("amoskys_bus_batches_total", status="ok", reason="") == 1


async def _expect_unavailable(env: BusEnv, creds: grpc.ChannelCredentials) -> None:
    async with grpc.aio.secure_channel(env.address, creds) as channel:
        stub = bus_pb2_grpc.EventBusStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.PublishBatch(bus_pb2.SignedBatch(sender="x"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (await env.store.stats()).rows == 0


async def test_client_without_certificate_gets_unavailable_and_nothing_is_stored(bus_env: BusEnv) -> None:
    await _expect_unavailable(bus_env, grpc.ssl_channel_credentials(bus_env.creds.ca_cert.read_bytes()))


async def test_certificate_from_another_ca_gets_unavailable(bus_env: BusEnv, tmp_path: Path) -> None:
    other_ca, other_key = create_ca(tmp_path / "other", "another CA")
    cert, key = tmp_path / "other" / "c.crt", tmp_path / "other" / "c.key"
    issue_client_cert(
        other_ca,
        other_key,
        uri=identity_uri(TRUST, "agent-1"),
        common_name="agent-1",
        cert_path=cert,
        key_path=key,
    )
    await bus_env.enroll("agent-1")  # the name is enrolled; only the CA is wrong
    creds = grpc.ssl_channel_credentials(
        bus_env.creds.ca_cert.read_bytes(), key.read_bytes(), cert.read_bytes()
    )
    await _expect_unavailable(bus_env, creds)


async def test_expired_certificate_gets_unavailable(bus_env: BusEnv, tmp_path: Path) -> None:
    await bus_env.enroll("agent-1")
    cert, key = tmp_path / "old.crt", tmp_path / "old.key"
    past = datetime.now(UTC) - timedelta(days=30)
    issue_client_cert(
        bus_env.creds.ca_cert,
        bus_env.creds.ca_key,
        uri=identity_uri(TRUST, "agent-1"),
        common_name="agent-1",
        cert_path=cert,
        key_path=key,
        not_before=past - timedelta(days=1),
        not_after=past,
    )
    creds = grpc.ssl_channel_credentials(
        bus_env.creds.ca_cert.read_bytes(), key.read_bytes(), cert.read_bytes()
    )
    await _expect_unavailable(bus_env, creds)


async def test_revocation_recorded_by_another_process_takes_effect_without_restart(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    client = bus_env.client(agent)
    assert (await client.publish_raw(events_for(agent, 1)[1])).status == bus_pb2.OK
    # revoked from another connection and never announced: the identity cache expires (0.2 s here)
    async with appliance_state(bus_env.store.path, StoreConfig()) as state:
        assert await state.revoke_identity("agent-1")

    async def refused() -> AccessDeniedError | None:
        try:
            await client.publish_raw(events_for(agent, 1)[1])
        except AccessDeniedError as err:  # final: the client does not retry it
            return err
        return None

    err = await eventually(refused, within=5, what="the revocation to be seen")
    assert "revoked" in err.details
    assert bus_env.counter("amoskys_bus_calls_refused_total", reason="revoked") >= 1
    stored = len(await bus_env.stored_ids("agent-1"))
    with pytest.raises(AccessDeniedError):
        await client.publish_raw(events_for(agent, 1)[1])
    assert len(await bus_env.stored_ids("agent-1")) == stored  # nothing from a revoked identity


async def test_unknown_identity_is_denied_at_call_start(bus_env: BusEnv, tmp_path: Path) -> None:
    out = tmp_path / "stray"
    enroll_agent(bus_env.creds, name="stray", role="agent", trust_domain=TRUST, bus_address="", out_dir=out)
    stray = PublisherIdentity.from_bundle(out)  # a valid certificate, never recorded as enrolled
    with pytest.raises(AccessDeniedError) as info:
        await bus_env.client(stray).publish_raw(events_for(stray, 3)[1])
    assert "not enrolled" in info.value.details
    assert bus_env.counter("amoskys_bus_calls_refused_total", reason="not_enrolled") == 1
    assert (await bus_env.store.stats()).rows == 0


async def test_sender_other_than_certificate_identity_is_unauthorized(bus_env: BusEnv) -> None:
    a = await bus_env.enroll("agent-a")
    await bus_env.enroll("agent-b")
    client = bus_env.client(a)
    batch = client.sign(bus_pb2.RawEventList(events=events_for(a, 2)[1]).SerializeToString())
    batch.sender = "agent-b"
    ack = await _raw_call(bus_env, a, batch)
    assert ack.status == bus_pb2.UNAUTHORIZED
    assert bus_env.counter("amoskys_bus_batches_total", status="unauthorized", reason="sender_mismatch") == 1
    assert (await bus_env.store.stats()).rows == 0


@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty", "other_events"])
async def test_bad_signature_is_unauthorized_and_nothing_stored(bus_env: BusEnv, damage: str) -> None:
    agent = await bus_env.enroll("agent-1")
    client = bus_env.client(agent)
    batch = client.sign(bus_pb2.RawEventList(events=events_for(agent, 5)[1]).SerializeToString())
    sig = bytearray(batch.signature)
    if damage == "flipped":
        sig[10] ^= 0x01
        batch.signature = bytes(sig)
    elif damage == "truncated":
        batch.signature = bytes(sig[:40])
    elif damage == "empty":
        batch.signature = b""
    else:
        batch.events = bus_pb2.RawEventList(events=events_for(agent, 5)[1]).SerializeToString()
    ack = await _raw_call(bus_env, agent, batch)
    assert ack.status == bus_pb2.UNAUTHORIZED
    assert bus_env.counter("amoskys_bus_batches_total", status="unauthorized", reason="bad_signature") == 1
    assert (await bus_env.store.stats()).rows == 0


async def test_oversize_batch_is_invalid(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    with pytest.raises(PublishRefusedError) as info:
        await bus_env.client(agent).publish_raw(events_for(agent, 501)[1])  # the harness limit is 500
    assert info.value.ack.status == bus_pb2.INVALID and "limit is 500" in info.value.ack.message
    assert (await bus_env.store.stats()).rows == 0


async def test_unary_publish_takes_exactly_one_event(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    client = bus_env.client(agent)
    ack = await client.publish_raw(events_for(agent, 1)[1], unary=True)
    assert ack.status == bus_pb2.OK and ack.accepted == 1
    with pytest.raises(PublishRefusedError):
        await client.publish_raw(events_for(agent, 2)[1], unary=True)


async def test_a_malformed_event_costs_only_itself(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    ids, raws = events_for(agent, 6)
    raws[2] = b"\x0a\xff\xff\xff"  # not an Envelope
    no_id = events_pb2.Envelope.FromString(raws[4])
    no_id.ClearField("event_id")
    raws[4] = no_id.SerializeToString()
    huge_seq = events_pb2.Envelope.FromString(raws[5])
    huge_seq.source_seq = 2**64 - 1  # valid protobuf, but no SQLite integer holds it
    raws[5] = huge_seq.SerializeToString()
    ack = await bus_env.client(agent).publish_raw(raws)
    assert ack.status == bus_pb2.OK and ack.accepted == 3
    assert [(r.index, r.reason) for r in ack.rejected] == [
        (2, "malformed_envelope"),
        (4, "missing_event_id"),
        (5, "bad_source_seq"),
    ]
    assert await bus_env.stored_ids("agent-1") == [ids[i] for i in (0, 1, 3)]
    assert bus_env.counter("amoskys_bus_events_total", outcome="rejected", reason="malformed_envelope") == 1


async def test_replayed_batch_is_acked_as_duplicates_and_stored_once(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    client = bus_env.client(agent)
    batch = client.sign(bus_pb2.RawEventList(events=events_for(agent, 7)[1]).SerializeToString())
    first = await _raw_call(bus_env, agent, batch)
    again = await _raw_call(bus_env, agent, batch)
    assert (first.accepted, first.duplicates) == (7, 0)
    assert (again.status, again.accepted, again.duplicates) == (bus_pb2.OK, 0, 7)
    assert len(await bus_env.stored_ids("agent-1")) == 7
    forks = [e for e in await bus_env.store.events(kind="alert") if e.parse().alert.rule == "bus.chain_fork"]
    assert forks == []


async def test_a_fork_in_the_chain_raises_an_alert_and_is_stored(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    client = bus_env.client(agent)
    await client.publish_raw(events_for(agent, 3)[1])
    first = client.prev_digest
    await client.publish_raw(events_for(agent, 3)[1])  # the first batch's accepted successor
    client.prev_digest = first  # a second history claiming the same past
    ack = await client.publish_raw(events_for(agent, 3)[1])
    assert ack.status == bus_pb2.OK and ack.accepted == 3  # never locked out
    assert len(await bus_env.stored_ids("agent-1")) == 9

    # the chain continues from the fork: the next batch is no fork; and since the writer commits in
    # order, its OK also means the alert (queued before it) is committed
    await client.publish_raw(events_for(agent, 1)[1])
    assert bus_env.counter("amoskys_bus_chain_forks_total") == 1
    parsed = [e.parse() for e in await bus_env.store.events(kind="alert")]
    forks = [e for e in parsed if e.alert.rule == "bus.chain_fork"]
    assert len(forks) == 1 and forks[0].alert.attributes["sender"] == "agent-1"
    assert forks[0].alert.attributes["prev_digest"] == first.hex()
    assert forks[0].source == "appliance"


async def test_a_restarted_publisher_starts_a_new_chain_without_an_alert(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    for _ in range(3):  # three runs of a publisher that keeps no chain state: each starts at genesis
        client = bus_env.client(agent)
        assert client.prev_digest == b""
        await client.publish_raw(events_for(agent, 2)[1])
        await client.publish_raw(events_for(agent, 2)[1])
    assert bus_env.counter("amoskys_bus_chain_starts_total") == 3
    assert bus_env.counter("amoskys_bus_chain_forks_total") == 0
    lost = bus_env.client(agent)
    lost.prev_digest = b"\x00" * 32  # names a predecessor the bus never took: counted, no alert
    ack = await lost.publish_raw(events_for(agent, 2)[1])
    assert ack.status == bus_pb2.OK and ack.accepted == 2
    assert bus_env.counter("amoskys_bus_chain_unknown_predecessor_total") == 1
    await lost.publish_raw(events_for(agent, 1)[1])  # chains to the batch just taken
    assert bus_env.counter("amoskys_bus_chain_unknown_predecessor_total") == 1
    alerts = [e.parse().alert.rule for e in await bus_env.store.events(kind="alert")]
    assert alerts == []


async def test_source_other_than_sender_needs_the_relay_role(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    relay = await bus_env.enroll("relay-1", role="relay")
    foreign = events_for(PublisherIdentity(**{**agent.__dict__, "name": "downstream-7"}), 2)[1]
    ack = await bus_env.client(agent).publish_raw(foreign)
    assert ack.accepted == 0 and [r.reason for r in ack.rejected] == ["source_not_sender"] * 2
    ack = await bus_env.client(relay).publish_raw(foreign)
    assert ack.accepted == 2
    assert len(await bus_env.stored_ids("downstream-7")) == 2


async def test_backpressure_answers_retry_and_retries_store_everything_once(tmp_path: Path) -> None:
    # a tiny writer queue and a writer that waits long for more: publishers must be told RETRY
    env = await make_env(
        tmp_path, StoreConfig(queue_max_events=20, max_batch_wait_ms=50, max_batch_events=20)
    )
    writer = asyncio.create_task(env.store.run())
    try:
        agents = [await env.enroll(f"agent-{i}") for i in range(4)]
        published: list[str] = []

        async def publish(agent: PublisherIdentity) -> None:
            client = env.client(agent)
            for _ in range(5):
                ids, raws = events_for(agent, 20)
                await client.publish_raw(raws)
                published.extend(ids)

        await asyncio.gather(*(publish(a) for a in agents))
        assert sum(c.stats.retries for c in env.clients) > 0
        assert env.counter("amoskys_bus_batches_total", status="retry", reason="store_queue_full") > 0
        stored = [i for a in agents for i in await env.stored_ids(a.name)]
        assert sorted(stored) == sorted(published) and len(set(stored)) == 400
    finally:
        for c in env.clients:
            await c.close()
        await env.bus.close()
        await env.server.stop(0)
        await env.store.close()
        await writer


async def test_quota_tells_a_noisy_publisher_to_retry(tmp_path: Path) -> None:
    env = await make_env(tmp_path, quota_events_per_second=200, quota_burst_events=100)
    writer = asyncio.create_task(env.store.run())
    try:
        noisy = await env.enroll("noisy")
        client = env.client(noisy)
        for _ in range(3):
            await client.publish_raw(events_for(noisy, 100)[1])
        assert client.stats.retries >= 1
        assert env.counter("amoskys_bus_quota_exceeded_total") >= 1
        assert len(await env.stored_ids("noisy")) == 300
    finally:
        for c in env.clients:
            await c.close()
        await env.bus.close()
        await env.server.stop(0)
        await env.store.close()
        await writer


def _served_certificate(port: int, identity: PublisherIdentity, tmp: Path) -> x509.Certificate:
    ctx = ssl.create_default_context(cadata=identity.ca_cert.decode())
    (tmp / "c.crt").write_bytes(identity.client_cert)
    (tmp / "c.key").write_bytes(identity.client_key)
    ctx.load_cert_chain(tmp / "c.crt", tmp / "c.key")
    ctx.set_alpn_protocols(["h2"])
    import socket

    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


async def test_renewed_server_certificate_is_served_without_restart(bus_env: BusEnv, tmp_path: Path) -> None:
    agent = await bus_env.enroll("agent-1")
    before = await asyncio.to_thread(_served_certificate, bus_env.port, agent, tmp_path)
    renew_server_cert(bus_env.creds, dns_names=["localhost", "bus.example"], ip_addresses=["127.0.0.1"])
    renewed = load_cert(bus_env.creds.server_cert).serial_number
    assert renewed != before.serial_number

    async def served_renewed() -> bool:  # looked for every CERT_CHECK_SECONDS, off the loop
        after = await asyncio.to_thread(_served_certificate, bus_env.port, agent, tmp_path)
        return after.serial_number == renewed

    await eventually(served_renewed, within=3 * CERT_CHECK_SECONDS, what="the renewed certificate served")
    ack = await bus_env.client(agent).publish_raw(events_for(agent, 1)[1])
    assert ack.status == bus_pb2.OK


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=4096))
async def test_signed_random_bytes_never_crash_the_servicer_and_are_never_stored(
    bus_env: BusEnv, junk: bytes
) -> None:
    agent = await bus_env.enroll("fuzz") if not hasattr(bus_env, "fuzz_agent") else bus_env.fuzz_agent  # type: ignore[attr-defined]
    bus_env.fuzz_agent = agent  # type: ignore[attr-defined]
    client = bus_env.clients[0] if bus_env.clients else bus_env.client(agent)
    ack = await _raw_call(bus_env, agent, client.sign(junk))  # a valid signature over garbage
    assert ack.status in (bus_pb2.OK, bus_pb2.INVALID) and ack.accepted == 0
    assert await bus_env.stored_ids("fuzz") == []


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bit=st.integers(min_value=0))
async def test_bit_flipped_batches_are_refused_and_never_stored(bus_env: BusEnv, bit: int) -> None:
    agent = await bus_env.enroll("flip") if not hasattr(bus_env, "flip_agent") else bus_env.flip_agent  # type: ignore[attr-defined]
    bus_env.flip_agent = agent  # type: ignore[attr-defined]
    client = bus_env.clients[0] if bus_env.clients else bus_env.client(agent)
    client.prev_digest = b"\x11" * 32  # a non-empty prev_digest, so every field is on the wire
    wire = bytearray(
        client.sign(
            bus_pb2.RawEventList(events=events_for(agent, 3)[1]).SerializeToString()
        ).SerializeToString()
    )
    wire[(bit // 8) % len(wire)] ^= 1 << (bit % 8)
    creds = grpc.ssl_channel_credentials(agent.ca_cert, agent.client_key, agent.client_cert)
    async with grpc.aio.secure_channel(bus_env.address, creds) as ch:
        call = ch.unary_unary(
            "/amoskys.v1.EventBus/PublishBatch", response_deserializer=bus_pb2.PublishAck.FromString
        )
        try:
            ack = await call(bytes(wire), timeout=10)
        except grpc.aio.AioRpcError as err:  # unparseable request: grpc answers with an error status
            assert err.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        else:
            assert ack.status in (bus_pb2.UNAUTHORIZED, bus_pb2.INVALID), ack
    assert (await bus_env.store.stats()).rows == 0


async def test_an_event_from_a_skewed_clock_is_accepted_and_flagged(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    ids, raws = events_for(agent, 2)
    future = events_pb2.Envelope.FromString(raws[1])
    future.ts_ns += 3600 * 10**9  # an hour ahead
    raws[1] = future.SerializeToString()
    ack = await bus_env.client(agent).publish_raw(raws)
    assert ack.accepted == 2 and not ack.rejected
    assert bus_env.counter("amoskys_bus_events_skewed_total") == 1
    assert await bus_env.stored_ids("agent-1") == ids
