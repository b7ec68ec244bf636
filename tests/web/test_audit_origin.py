"""The Audit page and API show this appliance's own audit by default, remote audit only when asked, and
every event list shows where an event came from (its source, and the relay it came through)."""

from __future__ import annotations

import uuid

from amoskys.events import uuid7
from amoskys.proto import events_pb2
from amoskys.store.records import Record

from web_harness import Web


def _remote_audit(source: str, detail: str, seq: int) -> events_pb2.Envelope:
    return events_pb2.Envelope(
        event_id=uuid7(),
        source=source,
        boot_id=str(uuid.uuid4()),
        source_seq=seq,
        ts_ns=1_700_000_000_000_000_000 + seq,
        audit=events_pb2.AuditEvent(actor="remote-admin", action="login", success=True, detail=detail),
    )


async def _store_remote(web: Web) -> None:
    """A relay's forwarded audit event and an agent's heartbeat, as the bus stores them."""
    relayed = Record.from_envelope(_remote_audit("downstream-1", "relayed-login", 1), origin="relay-1")
    beat = events_pb2.Envelope(
        event_id=uuid7(),
        source="agent-1",
        boot_id=str(uuid.uuid4()),
        source_seq=1,
        ts_ns=1_700_000_000_000_000_000,
        heartbeat=events_pb2.Heartbeat(version="1"),
    )
    await web.ctx.store.submit([relayed, Record.from_envelope(beat, origin="agent-1")])


async def test_audit_api_shows_local_audit_by_default_and_remote_only_when_asked(web: Web) -> None:
    c, _ = await web.login("admin", web.admin_password)  # audited by the appliance itself
    await _store_remote(web)
    local = (await c.get("/api/v1/audit")).json()
    assert local["remote"] is False
    assert local["items"] and {(i["source"], i["origin"]) for i in local["items"]} == {("edge-test", "")}
    assert "relayed-login" not in str(local)

    remote = (await c.get("/api/v1/audit", params={"remote": "1"})).json()
    assert remote["remote"] is True
    assert [(i["source"], i["origin"], i["body"]["detail"]) for i in remote["items"]] == [
        ("downstream-1", "relay-1", "relayed-login")
    ]
    bad = await c.get("/api/v1/audit", params={"remote": "maybe"})
    assert bad.status_code == 400 and "remote" in bad.json()["error"]


async def test_audit_page_has_a_source_column_and_a_remote_filter(web: Web) -> None:
    c, _ = await web.login("admin", web.admin_password)
    await _store_remote(web)
    page = (await c.get("/audit")).text
    assert "<th>Source</th>" in page and 'href="/audit?remote=1"' in page
    assert "edge-test" in page and "relayed-login" not in page
    page = (await c.get("/audit?remote=1")).text
    assert "relayed-login" in page and "downstream-1" in page and "via relay-1" in page
    assert 'href="/audit"' in page


async def test_event_lists_and_detail_show_the_relay_an_event_came_through(web: Web) -> None:
    c, _ = await web.login("viewer", "viewer-password-123")
    await _store_remote(web)
    listed = (await c.get("/api/v1/events", params={"kind": "audit", "source": "downstream-1"})).json()
    [item] = listed["items"]
    assert (item["source"], item["origin"]) == ("downstream-1", "relay-1")
    page = (await c.get("/events", params={"source": "downstream-1"})).text
    assert "downstream-1" in page and "via relay-1" in page
    detail = (await c.get(f"/events/{item['store_seq']}")).text
    assert 'id="origin">relay-1<' in detail
    agent = (await c.get("/events", params={"source": "agent-1"})).text
    assert "agent-1" in agent and "via agent-1" not in agent  # an agent speaking for itself: no "via"
