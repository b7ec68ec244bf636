"""The bus forwarder (amoskys/forwarders/bus.py) over the shared loop (amoskys/forwarders/base.py),
into a real appliance's bus: grpc.aio on a port of its own, real mTLS, SQLite stores in tmp_path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from cryptography import x509

from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.events import EnvelopeStamper
from amoskys.forwarders.base import Forwarder
from amoskys.forwarders.bus import BusSink
from amoskys.forwarders.group import Forwarders
from amoskys.metrics import Metrics
from amoskys.pki.enrolment import enroll_agent
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store
from amoskys.store.outbox import RegisterSinks

from .harness import (
    TRUST,
    RecordingClock,
    Upstream,
    agent_event,
    agent_events,
    bus_forwarders,
    open_outbox,
    upstream,
)
from support import eventually

AGENT = "agent-1"


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Upstream]:
    u = await upstream(tmp_path / "appliance")
    try:
        yield u
    finally:
        await u.close()


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_outbox(tmp_path / "agent" / "events.db")
    task = asyncio.create_task(store.run())
    try:
        yield store
    finally:
        await store.close()
        await task


async def _run(forwarders: Forwarders) -> asyncio.Task[None]:
    return asyncio.create_task(forwarders.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _all_stored_once(up: Upstream, n: int, source: str = AGENT) -> None:
    async def arrived() -> bool:
        return len(await up.stored(source)) >= n

    await eventually(arrived, within=30, what=f"{n} events of {source} upstream")
    ids = [e.event_id for e in await up.stored(source)]
    assert len(ids) == n and len(set(ids)) == n
    assert set(ids) == {agent_event(source, i).event_id for i in range(n)}


async def test_the_outbox_is_forwarded_once_in_store_order_and_the_lag_drops_to_zero(
    up: Upstream, outbox: Store, tmp_path: Path
) -> None:
    bundle = await up.enroll(AGENT)
    metrics = Metrics()
    await outbox.submit(agent_events(AGENT, 2500))
    forwarders = await bus_forwarders(outbox, bundle, up.address, metrics, batch_events=300)
    task = await _run(forwarders)
    try:
        await _all_stored_once(up, 2500)
        await eventually(lambda: forwarders.outbox_lag() == (0, 0.0), what="lag 0")
        stored = await up.stored(AGENT)
        assert [e.source_seq for e in stored] == list(range(1, 2501))  # store order kept
        assert all(e.origin == AGENT for e in stored)
        await outbox.submit(agent_events(AGENT, 10, start=2500))  # woken by the commit, no polling
        await _all_stored_once(up, 2510)
        await eventually(lambda: forwarders.outbox_lag() == (0, 0.0), what="lag 0 again")
        status = forwarders.status()[0]
        assert status["sent"] == 2510 and status["state"] in ("idle", "forwarding")
        assert metrics.registry.get_sample_value("amoskys_forwarder_sent_total", {"sink": "bus"}) == 2510
        assert metrics.registry.get_sample_value("amoskys_forwarder_lag_events", {"sink": "bus"}) == 0
        cursor = await eventually(lambda: _cursor_at(outbox, outbox.last_seq), what="the cursor saved")
        assert cursor
        assert up.counter("amoskys_bus_chain_forks_total") == 0
    finally:
        await _stop(task)


async def _cursor_at(store: Store, seq: int) -> bool:
    cursor = await store.sink_cursor("bus")
    return cursor is not None and cursor.store_seq == seq


async def test_retry_answers_are_sent_again_no_sooner_than_the_hint(tmp_path: Path, outbox: Store) -> None:
    up = await upstream(tmp_path / "appliance", quota_events_per_second=400, quota_burst_events=400)
    try:
        bundle = await up.enroll(AGENT)
        metrics = Metrics()
        clock = RecordingClock()
        await outbox.submit(agent_events(AGENT, 800))
        forwarders = await bus_forwarders(outbox, bundle, up.address, metrics, clock=clock, batch_events=200)
        task = await _run(forwarders)
        try:
            await _all_stored_once(up, 800)
        finally:
            await _stop(task)
        retries = metrics.registry.get_sample_value("amoskys_forwarder_retries_total", {"sink": "bus"})
        assert retries and retries == len(clock.sleeps)
        # the quota answers RETRY with the time its bucket needs (~0.5 s for 200 events at 400/s):
        # the first retry waits that long, not the backoff's first step (at most 0.05 s)
        assert clock.sleeps[0] >= 0.25
        assert up.counter("amoskys_bus_quota_exceeded_total") >= 1
    finally:
        await up.close()


async def test_an_outage_is_ridden_out_with_retries_and_every_event_arrives_once(
    up: Upstream, outbox: Store
) -> None:
    bundle = await up.enroll(AGENT)
    metrics = Metrics()
    await outbox.submit(agent_events(AGENT, 500))
    forwarders = await bus_forwarders(
        outbox, bundle, up.address, metrics, batch_events=200, call_timeout_seconds=0.5
    )
    task = await _run(forwarders)
    try:
        await _all_stored_once(up, 500)
        await up.stop_server()
        await outbox.submit(agent_events(AGENT, 1500, start=500))
        await eventually(
            lambda: forwarders.status()[0]["retries"] >= 2, within=20, what="transport errors retried"
        )
        events, seconds = forwarders.outbox_lag()
        assert events == 1500 and seconds > 0
        assert forwarders.status()[0]["state"] == "retrying"
        await up.start_server()  # the same port
        await _all_stored_once(up, 2000)
        await eventually(lambda: forwarders.outbox_lag() == (0, 0.0), what="drained: lag 0")
        assert metrics.registry.get_sample_value("amoskys_forwarder_lag_seconds", {"sink": "bus"}) == 0
        assert up.counter("amoskys_bus_chain_forks_total") == 0
    finally:
        await _stop(task)


async def test_batches_sealed_before_a_restart_are_sent_again_byte_for_byte(
    up: Upstream, outbox: Store
) -> None:
    bundle = await up.enroll(AGENT)
    await outbox.submit(agent_events(AGENT, 250))
    first = await bus_forwarders(
        outbox, bundle, up.address, Metrics(), batch_events=100, max_in_flight_batches=4
    )
    task = await _run(first)
    await _all_stored_once(up, 250)  # acked: the chain goes on from the newest of these
    await eventually(lambda: _cursor_at(outbox, 250), what="the cursor saved")
    await up.stop_server()  # nothing more is acked: the first life seals its window and keeps retrying
    await outbox.submit(agent_events(AGENT, 1000, start=250))
    inflight = first.forwarders[0]._inflight
    await eventually(lambda: len(inflight) == 4, what="4 batches sealed and in flight")
    sent_before = [item.batch.payload.SerializeToString() for item in inflight]
    await _stop(task)
    assert len(await outbox.sealed_batches("bus")) == 5  # the 4 unacked, and the chain's tip

    # another batch size and more rows meanwhile: the sealed batches are sent as they were sealed
    await outbox.submit(agent_events(AGENT, 100, start=1250))
    second = await bus_forwarders(
        outbox, bundle, up.address, Metrics(), batch_events=150, max_in_flight_batches=4
    )
    task = await _run(second)
    try:
        inflight = second.forwarders[0]._inflight
        await eventually(lambda: len(inflight) == 4, what="the 4 batches sent again")
        assert [item.batch.payload.SerializeToString() for item in inflight] == sent_before
        await up.start_server()
        await _all_stored_once(up, 1350)
        assert up.counter("amoskys_bus_chain_forks_total") == 0
        assert up.counter("amoskys_bus_chain_starts_total") == 1  # one chain: the outbox's
    finally:
        await _stop(task)


async def test_a_revoked_identity_stops_forwarding_keeps_the_data_and_says_why_once(
    up: Upstream, outbox: Store
) -> None:
    bundle = await up.enroll(AGENT)
    await outbox.submit(agent_events(AGENT, 100))
    forwarders = await bus_forwarders(outbox, bundle, up.address, Metrics(), batch_events=50)
    with structlog.testing.capture_logs() as logs:
        task = await _run(forwarders)
        try:
            await _all_stored_once(up, 100)
            assert await up.store.state.revoke_identity(AGENT)
            assert up.server is not None
            await up.server.gate.revoke(AGENT)
            await outbox.submit(agent_events(AGENT, 200, start=100))
            await eventually(lambda: task.done(), within=20, what="forwarding to stop")
            await task  # returned: nothing raised into the appliance's TaskGroup
        finally:
            await _stop(task)
    status = forwarders.status()[0]
    assert status["state"] == "stopped" and "PERMISSION_DENIED" in status["reason"]
    assert [e["event"] for e in logs].count("forwarder_stopped") == 1
    cursor = await outbox.sink_cursor("bus")
    assert cursor is not None and cursor.store_seq == 100
    kept = await outbox.outbox_read(after_seq=cursor.store_seq, kinds=None, limit=1000)
    assert len(kept.rows) == 200  # the data stays
    assert len(await up.stored(AGENT)) == 100


async def test_a_kinds_filter_forwards_only_those_kinds(up: Upstream, outbox: Store) -> None:
    bundle = await up.enroll(AGENT)
    stamper = EnvelopeStamper(AGENT)
    beats = [Record.from_envelope(stamper.stamp(ev.Envelope(heartbeat=ev.Heartbeat()))) for _ in range(5)]
    await outbox.submit(agent_events(AGENT, 50) + beats)
    forwarders = await bus_forwarders(outbox, bundle, up.address, Metrics(), kinds=("heartbeat",))
    task = await _run(forwarders)
    try:
        await eventually(lambda: _count(up, 5), what="the heartbeats upstream")
        await eventually(lambda: forwarders.outbox_lag() == (0, 0.0), what="lag 0")
        assert {e.kind for e in await up.stored(AGENT)} == {"heartbeat"}
    finally:
        await _stop(task)


async def _count(up: Upstream, n: int) -> bool:
    return len(await up.stored(AGENT)) == n


async def test_a_relay_forwards_its_agents_events_upward_and_two_senders_of_one_source_alert(
    tmp_path: Path, outbox: Store
) -> None:
    regional = await upstream(tmp_path / "regional", name="regional")
    site = await upstream(tmp_path / "site", name="site")
    tasks: list[asyncio.Task[None]] = []
    try:
        agent_bundle = await site.enroll(AGENT)
        relay_bundle = await regional.enroll("site-relay", role="relay")
        await outbox.submit(agent_events(AGENT, 300))
        agent_fw = await bus_forwarders(outbox, agent_bundle, site.address, Metrics(), batch_events=100)
        site_fw = await bus_forwarders(
            site.store, relay_bundle, regional.address, Metrics(), batch_events=100
        )
        tasks += [await _run(agent_fw), await _run(site_fw)]
        await _all_stored_once(site, 300)
        await _all_stored_once(regional, 300)
        assert {e.origin for e in await site.stored(AGENT)} == {AGENT}  # came from the agent itself
        assert {e.origin for e in await regional.stored(AGENT)} == {"site-relay"}  # via the relay
        assert regional.counter("amoskys_bus_chain_forks_total") == 0

        # the same agent also reaches the regional appliance directly: its events now arrive through
        # two senders, and the regional appliance raises an Alert (committed there, kind alert)
        direct = await regional.enroll(AGENT)
        identity = await PublisherIdentity.load(direct)
        client = BusClient(identity, regional.address)
        try:
            await client.publish_raw([agent_event(AGENT, 300).envelope])
        finally:
            await client.close()

        async def alerts() -> list[dict[str, str]]:
            rows = await regional.store.events(kind="alert")
            return [
                dict(r.parse().alert.attributes)
                for r in rows
                if r.parse().alert.rule == "bus.source_via_two_senders"
            ]

        found = await eventually(alerts, what="the two-senders alert")
        assert found == [{"source": AGENT, "first_via": "site-relay", "second_via": AGENT}]
    finally:
        for task in tasks:
            await _stop(task)
        await site.close()
        await regional.close()


async def test_past_the_outbox_budget_the_oldest_go_and_the_loss_report_arrives_upstream(
    up: Upstream, tmp_path: Path
) -> None:
    bundle = await up.enroll(AGENT)
    metrics = Metrics()
    outbox = await open_outbox(
        tmp_path / "small" / "events.db", metrics, name=AGENT, high_water_mb=1, hard_cap_mb=2
    )
    writer = asyncio.create_task(outbox.run())
    forwarders = await bus_forwarders(outbox, bundle, up.address, Metrics(), batch_events=1000)
    task = await _run(forwarders)
    try:
        await up.stop_server()  # the appliance is down: the outbox grows past its budget
        n = 0
        lost = metrics.store_lost.labels("hard_cap")
        while lost._value.get() < 12_000:  # far more than the 4 batches sealed (and kept) in memory
            await outbox.submit(agent_events(AGENT, 1000, start=n), local=True)
            n += 1000
            assert n < 100_000, "never dropped enough at the hard cap"
        await up.start_server()
        await eventually(lambda: forwarders.outbox_lag() == (0, 0.0), within=30, what="the outbox drained")
        stored = await up.stored(AGENT)
        flows = [e.event_id for e in stored if e.kind == "flow"]
        reports = [e.parse().loss for e in stored if e.kind == "loss"]
        assert len(flows) == len(set(flows)) < n  # each once; some never arrived ...
        assert reports and {r.reason for r in reports} == {"hard_cap"}
        # ... and the LossReports that went upstream account for them (the hard cap also dropped
        # LossReports not sent yet: the next one carries their counts); at most the 4 batches sealed
        # before the drop were sent from memory and reported lost too — a LossReport among them
        # arrives as well as the later report that carried its count (its range lies inside that one)
        reported = sum(r.count for r in reports)
        carried = sum(
            r.count
            for i, r in enumerate(reports)
            if any(
                j != i and o.range_start <= r.range_start and r.range_end <= o.range_end
                for j, o in enumerate(reports)
            )
        )
        assert n <= len(flows) + reported - carried <= n + 4 * 1000 + len(reports)
        assert up.counter("amoskys_bus_chain_forks_total") == 0
    finally:
        await _stop(task)
        await outbox.close()
        await writer


async def test_events_the_bus_refuses_are_counted_once_logged_and_passed(up: Upstream, outbox: Store) -> None:
    bundle = await up.enroll(AGENT)  # an agent identity: it may speak only for itself
    await outbox.submit(agent_events("someone-else", 10) + agent_events(AGENT, 10))
    metrics = Metrics()
    forwarders = await bus_forwarders(outbox, bundle, up.address, metrics, batch_events=5)
    with structlog.testing.capture_logs() as logs:
        task = await _run(forwarders)
        try:
            await eventually(lambda: forwarders.outbox_lag() == (0, 0.0), what="lag 0")
        finally:
            await _stop(task)
    assert forwarders.status()[0]["rejected"] == 10
    assert metrics.registry.get_sample_value("amoskys_forwarder_rejected_total", {"sink": "bus"}) == 10
    assert [e["event"] for e in logs].count("forwarder_events_rejected") == 1
    assert len(await up.stored(AGENT)) == 10 and await up.stored("someone-else") == []


async def test_events_the_bus_already_has_are_counted_as_duplicates(
    up: Upstream, outbox: Store, tmp_path: Path
) -> None:
    bundle = await up.enroll(AGENT)
    await outbox.submit(agent_events(AGENT, 300))
    first = await bus_forwarders(outbox, bundle, up.address, Metrics())
    task = await _run(first)
    await _all_stored_once(up, 300)
    await _stop(task)
    # a second outbox holding the same events (a restored backup, say): the bus stores them once
    again = await open_outbox(tmp_path / "again" / "events.db")
    writer = asyncio.create_task(again.run())
    metrics = Metrics()
    try:
        await again.submit(agent_events(AGENT, 300))
        second = await bus_forwarders(again, bundle, up.address, metrics)
        task = await _run(second)
        await eventually(
            lambda: second.outbox_lag() == (0, 0.0) and second.status()[0]["sent"] == 300, what="sent"
        )
        await _stop(task)
        assert second.status()[0]["duplicates"] == 300
        assert metrics.registry.get_sample_value("amoskys_forwarder_duplicates_total", {"sink": "bus"}) == 300
        await _all_stored_once(up, 300)
    finally:
        await again.close()
        await writer


async def test_a_batch_holds_at_most_batch_bytes_of_events(up: Upstream, outbox: Store) -> None:
    bundle = await up.enroll(AGENT)
    events = agent_events(AGENT, 200)
    size = len(events[0].envelope)
    await outbox.submit(events)
    await outbox.submit_outbox([RegisterSinks({"bus": None})])
    client = BusClient(await PublisherIdentity.load(bundle), up.address)
    forwarder = Forwarder(
        BusSink(client, outbox), outbox, Metrics(), batch_events=1000, batch_wait_ms=5, max_in_flight=4,
        batch_bytes=10 * size,
    )  # fmt: skip
    task = asyncio.create_task(forwarder.run())
    try:
        await _all_stored_once(up, 200)
    finally:
        await _stop(task)
    assert forwarder.counts.batches >= 200 // 10
    assert up.metrics.registry.get_sample_value("amoskys_bus_batch_events_bucket", {"le": "10.0"}) == (
        forwarder.counts.batches
    )


async def test_the_forwarder_renews_its_due_certificate_and_goes_on_with_the_new_one(
    up: Upstream, outbox: Store, tmp_path: Path
) -> None:
    """A third of the certificate's life left: the bus forwarder renews it over the bus at its start
    (its companion task) and sends with the renewed certificate from then on, nothing lost or doubled."""
    out = tmp_path / "bundles" / AGENT
    started = datetime.now(UTC) - timedelta(hours=20)  # one day of life, 4 h left: due
    bundle = await asyncio.to_thread(
        enroll_agent, up.creds, name=AGENT, role="agent", trust_domain=TRUST, bus_address=up.address,
        out_dir=out, valid_days=1, now=started,
    )  # fmt: skip
    await up.store.state.enroll_identity(AGENT, "agent", bundle.public_key_raw, str(bundle.cert_serial))
    old = (out / "client.crt").read_bytes()
    await outbox.submit(agent_events(AGENT, 300))
    forwarders = await bus_forwarders(outbox, out, up.address, Metrics(), batch_events=100)
    task = await _run(forwarders)
    try:
        await eventually(lambda: (out / "client.crt").read_bytes() != old, what="the renewed certificate")
        renewed = x509.load_pem_x509_certificate((out / "client.crt").read_bytes())
        assert renewed.not_valid_after_utc > bundle.not_after + timedelta(days=300)
        await outbox.submit(agent_events(AGENT, 300, start=300))  # sent over the new channel
        await _all_stored_once(up, 600)
        identity = await up.store.state.get_identity(AGENT)
        assert identity is not None and identity.cert_serial == str(renewed.serial_number)
        sink = forwarders.forwarders[0].sink
        assert (
            isinstance(sink, BusSink)
            and sink.client.identity.client_cert == (out / "client.crt").read_bytes()
        )
        assert up.counter("amoskys_bus_chain_forks_total") == 0
    finally:
        await _stop(task)
