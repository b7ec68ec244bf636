"""Synthetic events (published by loadgen identities): marked on every page and in the API that lists
events, and left out of the overview's totals unless asked for (`?synthetic=1`)."""

from __future__ import annotations

from amoskys.events import EnvelopeStamper
from amoskys.loadgen import SyntheticEvents
from amoskys.proto import events_pb2
from amoskys.store.records import Record

from web_harness import Web

LOADGEN = "lg-1"
BADGE = '<span class="badge synthetic"'


async def _ingest_synthetic(web: Web, n: int) -> None:
    """What the bus does with a batch from a loadgen identity (service.py: synthetic = role loadgen)."""
    await web.ctx.store.state.enroll_identity(LOADGEN, "loadgen", bytes(32), "1")
    _, raws = SyntheticEvents(LOADGEN, losses=True).make(n)
    result = await web.ctx.bus.ingest(raws, sender=LOADGEN, relay=False, synthetic=True)
    assert result.accepted == n, result


async def _publish_real(web: Web) -> None:
    stamper = EnvelopeStamper("sensor-a")
    flow = events_pb2.Envelope(
        flow=events_pb2.FlowRecord(
            src_addr="10.0.0.1",
            dst_addr="10.0.0.2",
            src_port=1,
            dst_port=2,
            protocol=6,
            forward=events_pb2.FlowDirection(packets=1, octets=10),
        )
    )
    await web.ctx.store.submit([Record.from_envelope(stamper.stamp(flow))], local=True)


async def test_events_of_loadgen_identities_are_marked_synthetic_in_the_api(web: Web) -> None:
    await _publish_real(web)
    await _ingest_synthetic(web, 16)
    c, _ = await web.login("viewer", "viewer-password-123")
    items = (await c.get("/api/v1/events?limit=500")).json()["items"]
    by_source = {(e["source"], e["synthetic"]) for e in items}
    assert (LOADGEN, True) in by_source and ("sensor-a", False) in by_source
    assert all(e["synthetic"] is (e["source"] == LOADGEN) for e in items)
    real = (await c.get("/api/v1/events?synthetic=0&limit=500")).json()["items"]
    only = (await c.get("/api/v1/events?synthetic=1&limit=500")).json()["items"]
    assert real and not any(e["synthetic"] for e in real)
    assert len(only) == 16 and all(e["synthetic"] for e in only)
    seq = only[0]["store_seq"]
    assert (await c.get(f"/api/v1/events/{seq}")).json()["synthetic"] is True
    flows = (await c.get("/api/v1/flows")).json()["items"]
    assert {f["synthetic"] for f in flows} == {True, False}
    execs = (await c.get("/api/v1/processes/execs")).json()["items"]
    assert execs and all(e["synthetic"] for e in execs)
    # the derived views keep no per-event flag: their rows are marked by the source's role
    procs = (await c.get(f"/api/v1/processes?source={LOADGEN}")).json()["items"]
    assert procs and all(p["synthetic"] for p in procs)
    devices = (await c.get("/api/v1/devices")).json()["items"]
    assert devices and all(d["synthetic"] for d in devices if d["source"] == LOADGEN)
    targets = (await c.get("/api/v1/snmp/targets")).json()["items"]
    assert any(t["synthetic"] for t in targets)


async def test_every_page_that_lists_events_shows_the_synthetic_badge(web: Web) -> None:
    await _ingest_synthetic(web, 16)
    c, _ = await web.login("viewer", "viewer-password-123")
    only = (await c.get("/api/v1/events?synthetic=1")).json()["items"]
    for path in ("/events", "/flows", "/processes", "/devices", "/snmp", f"/events/{only[0]['store_seq']}"):
        html = (await c.get(path)).text
        assert BADGE in html and "SYNTHETIC" in html, path
    html = (await c.get("/events?synthetic=0")).text
    assert BADGE not in html and '<option value="0" selected>left out</option>' in html


async def test_overview_totals_leave_synthetic_events_out_unless_asked(web: Web) -> None:
    await _publish_real(web)
    c, _ = await web.login("viewer", "viewer-password-123")
    before = (await c.get("/api/v1/overview")).json()
    await _ingest_synthetic(web, 40)
    o = (await c.get("/api/v1/overview")).json()
    assert o["synthetic"] == {
        "included": False,
        "rows": 40,
        "events_per_second": o["synthetic"]["events_per_second"],
        "events_by_outcome": {"accepted": 40.0, "duplicate": 0.0},
    }
    # what the heartbeat published meanwhile is real; the 40 synthetic rows are not counted
    assert before["store"]["rows"] <= o["store"]["rows"] < before["store"]["rows"] + 40
    accepted_before = before["bus"]["events_by_outcome"].get("accepted", 0)
    assert o["bus"]["events_by_outcome"]["accepted"] < accepted_before + 40
    assert all(not r["synthetic"] for r in o["losses"]["recent_reports"])
    with_synthetic = (await c.get("/api/v1/overview?synthetic=1")).json()
    assert with_synthetic["synthetic"]["included"] is True
    assert with_synthetic["store"]["rows"] >= o["store"]["rows"] + 40
    assert (
        with_synthetic["bus"]["events_by_outcome"]["accepted"]
        >= o["bus"]["events_by_outcome"]["accepted"] + 40
    )
    assert any(r["synthetic"] for r in with_synthetic["losses"]["recent_reports"])
    html = (await c.get("/")).text
    assert 'id="synthetic-show"' in html and 'data-synthetic="0"' in html
    html = (await c.get("/?synthetic=1")).text
    assert 'id="synthetic-hide"' in html and 'data-synthetic="1"' in html


async def test_top_talkers_leave_synthetic_flows_out(web: Web) -> None:
    await _publish_real(web)
    await _ingest_synthetic(web, 70)
    c, _ = await web.login("viewer", "viewer-password-123")
    flows = (await c.get("/api/v1/flows")).json()["items"]
    assert {f["body"]["src_addr"] for f in flows if f["synthetic"]} == {"192.0.2.10"}  # loadgen's are stored
    top = {t["addr"] for t in (await c.get("/api/v1/flows/top")).json()["items"]}
    assert top == {"10.0.0.1", "10.0.0.2"}
