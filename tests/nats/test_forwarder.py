"""The NATS forwarder (amoskys/forwarders/nats.py) over the shared loop, into a real nats-server with
JetStream: SQLite stores in tmp_path, nats-server SIGKILLed and restarted on its port and store dir."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats_harness import (
    BOX,
    SITE,
    forwarding,
    msg_ids,
    nats_server,
    outbox,
    read_stream,
    records,
    submit,
)

from amoskys.config import Config, ForwardersConfig, NatsForwarderConfig
from amoskys.errors import ConfigError
from amoskys.metrics import Metrics
from amoskys.nats.subjects import event_subject
from amoskys.wiring import build_forwarders

from support import eventually


async def test_each_event_is_published_once_to_its_subject_with_its_envelope(tmp_path: Path) -> None:
    metrics = Metrics()
    events = records("agent-1", 300) + records("box1", 200, start=1000)
    taken = records("other-box", 50, origin="nats:other-box")  # the hub took these from NATS
    async with nats_server(tmp_path / "nats") as server, outbox(tmp_path / "box.db", metrics) as store:
        await submit(store, events[:250] + taken + events[250:])
        async with forwarding(store, metrics, server.url) as run:
            await eventually(lambda: run.forwarder.acked_seq == store.last_seq, what="every row acked")

            async def saved() -> bool:  # the cursor rides the writer's next commit
                cursor = await store.sink_cursor("nats")
                return cursor is not None and cursor.store_seq == store.last_seq and cursor.remote_seq == 500

            await eventually(saved, what="the cursor and the stream sequence saved")
            await eventually(
                lambda: (
                    metrics.registry.get_sample_value("amoskys_forwarder_lag_events", {"sink": "nats"}) == 0
                ),
                what="lag 0 on /metrics",
            )
        contents = await read_stream(server.url, subject="amoskys.>")
        cursor = await store.sink_cursor("nats")
    assert cursor is not None and cursor.remote_seq == 500  # the stream sequence saved with the cursor
    assert sorted(contents.ids) == sorted(msg_ids("agent-1", 300) | msg_ids("box1", 200, start=1000))
    assert not contents.duplicates
    for record in events[:3] + events[-3:]:
        assert contents.payloads[f"{record.source}:{record.event_id}"] == record.envelope  # bytes as stored
    subject = event_subject(SITE, BOX, "agent-1", "heartbeat")
    assert subject == "amoskys.site1.box1.agent-1.heartbeat"


async def test_a_restart_reads_the_stream_back_and_publishes_only_what_is_missing(tmp_path: Path) -> None:
    """A previous run published rows 1-100 and 150-256 but its cursor never moved (it crashed before
    the commit), and the duplicate window (2 s) has long passed: the new run must find them."""
    metrics = Metrics()
    events = records("agent-1", 400)
    async with nats_server(tmp_path / "nats") as server, outbox(tmp_path / "box.db", metrics) as store:
        await submit(store, events)
        published = [r for i, r in enumerate(events[:256]) if not 100 <= i < 149]
        await publish_as_box(server.url, published, duplicate_window=2.0)
        server.kill()
        await asyncio.sleep(2.5)  # the scenario: down longer than the duplicate window
        await server.start()
        async with forwarding(store, metrics, server.url, duplicate_window_seconds=2) as run:
            await eventually(lambda: run.forwarder.acked_seq == store.last_seq, within=20, what="caught up")
            stats = run.sink.stats
        contents = await read_stream(server.url)
    assert not contents.duplicates
    assert set(contents.ids) == msg_ids("agent-1", 400)
    assert stats.found == len(published)  # read back, not sent again
    assert stats.reconciliations >= 1


async def publish_as_box(url: str, published: list, *, duplicate_window: float) -> None:  # type: ignore[type-arg]
    """Publish `published` as this box's forwarder would (subject, payload, Nats-Msg-Id)."""
    import nats

    from amoskys.nats.stream import ensure_stream
    from amoskys.nats.subjects import MSG_ID_HEADER, msg_id

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_stream(
            js, "AMOSKYS", subjects_prefix=f"amoskys.{SITE}", duplicate_window_seconds=duplicate_window
        )
        for r in published:
            await js.publish(
                event_subject(SITE, BOX, r.source, r.kind),
                r.envelope,
                headers={MSG_ID_HEADER: msg_id(r.source, r.event_id)},
            )
    finally:
        await nc.close()


async def test_a_stream_that_does_not_cover_the_site_stops_the_forwarder_and_keeps_the_data(
    tmp_path: Path,
) -> None:
    import nats

    metrics = Metrics()
    async with nats_server(tmp_path / "nats") as server, outbox(tmp_path / "box.db", metrics) as store:
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(name="AMOSKYS", subjects=["amoskys.elsewhere.>"])
        await nc.close()
        await submit(store, records("agent-1", 10))
        async with forwarding(store, metrics, server.url) as run:
            await eventually(
                lambda: run.forwarder.state == "stopped", within=10, what="the forwarder to stop"
            )
            assert "do not cover 'amoskys.site1.>'" in run.forwarder.reason
            assert run.forwarder.acked_seq == 0


@pytest.mark.parametrize("name", ["bad name", "box>", "a*b"])
async def test_a_box_name_that_cannot_be_a_subject_token_is_a_config_error(tmp_path: Path, name: str) -> None:
    metrics = Metrics()
    async with outbox(tmp_path / "box.db", metrics) as store:
        config = ForwardersConfig(nats=NatsForwarderConfig(enabled=True, site="s"))
        with pytest.raises(ConfigError) as caught:
            await build_forwarders(config, store, metrics, box=name)
    assert caught.value.path == "appliance.name"


def test_the_site_is_required_and_checked_when_enabled() -> None:
    from amoskys.config import from_mapping

    with pytest.raises(ConfigError) as caught:
        from_mapping({"forwarders": {"nats": {"enabled": True, "site": "a b"}}})
    assert caught.value.path == "forwarders.nats.site"
    with pytest.raises(ConfigError) as caught:
        from_mapping({"forwarders": {"nats": {"enabled": True}}})
    assert caught.value.path == "forwarders.nats.site"
    assert isinstance(from_mapping({"forwarders": {"nats": {"site": ""}}}), Config)  # disabled: not needed
