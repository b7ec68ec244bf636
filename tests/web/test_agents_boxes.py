"""On a hub, the Agents page and /api/v1/agents list every box of the fleet with its sources: events
the hub took from NATS are stored as from `nats:<box>` (amoskys.sources.nats)."""

from __future__ import annotations

import time

from amoskys.proto import bus_pb2
from amoskys.proto import events_pb2 as ev
from amoskys.sources.origin import nats_origin

from web_harness import VIEWER_PASSWORD, Web


def heartbeat(source: str, i: int) -> bytes:
    return ev.Envelope(
        event_id=f"01900000-0000-7000-8000-{i:012x}",
        source=source,
        boot_id="0b0b0b0b-0000-4000-8000-00000000000e",
        source_seq=i + 1,
        ts_ns=time.time_ns(),
        heartbeat=ev.Heartbeat(version="9.9.9", mode="agent", os="Linux test", interval_seconds=60),
    ).SerializeToString()


async def test_every_box_is_listed_with_its_agents(web: Web) -> None:
    bus = web.ctx.bus
    for box, sources in {"box-a": ["box-a", "agent-1"], "box-b": ["box-b"]}.items():
        raws = [heartbeat(s, i) for i, s in enumerate(sources)]
        result = await bus.ingest(raws, sender=nats_origin(box), relay=True)  # as the hub ingests them
        assert result.status == bus_pb2.OK and result.accepted == len(raws)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    r = await c.get("/api/v1/agents")
    assert r.status_code == 200
    boxes = {b["box"]: b["sources"] for b in r.json()["boxes"]}
    assert {box: [s["name"] for s in found] for box, found in boxes.items()} == {
        "box-a": ["agent-1", "box-a"],
        "box-b": ["box-b"],
    }
    agent = boxes["box-a"][0]
    assert agent["version"] == "9.9.9" and agent["silent"] is False and agent["last_seen_ns"]
    page = await c.get("/agents")
    assert page.status_code == 200
    assert "Fleet boxes" in page.text and 'data-box="box-b"' in page.text and "agent-1" in page.text


async def test_an_appliance_without_boxes_shows_no_fleet_table(web: Web) -> None:
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    assert (await c.get("/api/v1/agents")).json()["boxes"] == []
    assert "Fleet boxes" not in (await c.get("/agents")).text
