"""The JSON API: generated OpenAPI, filters, pagination, collector control, and the pages that show it."""

from __future__ import annotations

import json

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2
from amoskys.web.routes import ENDPOINTS

from web_harness import Web


async def _publish(web: Web, envelopes: list[events_pb2.Envelope]) -> None:
    stamper = EnvelopeStamper("sensor-a")
    await web.ctx.bus.publish([stamper.stamp(e) for e in envelopes])
    # the writer commits in order: once a later event is readable, so are these
    marker = EnvelopeStamper("marker").stamp(events_pb2.Envelope(heartbeat=events_pb2.Heartbeat(version="m")))
    from amoskys.store.records import Record

    await web.ctx.store.submit([Record.from_envelope(marker)], local=True)


def _flow(src: str, dst: str, sport: int, dport: int, octets: int, cid: str) -> events_pb2.Envelope:
    return events_pb2.Envelope(
        flow=events_pb2.FlowRecord(
            src_addr=src,
            dst_addr=dst,
            src_port=sport,
            dst_port=dport,
            protocol=6,
            community_id=cid,
            final=True,
            forward=events_pb2.FlowDirection(packets=3, octets=octets),
            reverse=events_pb2.FlowDirection(packets=2, octets=100),
        )
    )


async def test_openapi_is_generated_from_every_declared_route(web: Web) -> None:
    doc = (await web.client().get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for ep in ENDPOINTS:
        assert ep.method.lower() in doc["paths"][ep.path], ep.path
    events = doc["paths"]["/api/v1/events"]["get"]
    assert {p["name"] for p in events["parameters"]} >= {
        "kind",
        "source",
        "since",
        "until",
        "before",
        "limit",
    }


async def test_events_filter_page_and_detail(web: Web) -> None:
    await _publish(web, [_flow("10.0.0.1", "10.0.0.2", 1000 + i, 443, 500, f"1:cid{i}") for i in range(7)])
    c, _ = await web.login("viewer", "viewer-password-123")
    page1 = (await c.get("/api/v1/events", params={"kind": "flow", "limit": 5})).json()
    assert len(page1["items"]) == 5 and all(e["kind"] == "flow" for e in page1["items"])
    seqs = [e["store_seq"] for e in page1["items"]]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    page2 = (
        await c.get("/api/v1/events", params={"kind": "flow", "limit": 5, "before": page1["next_before"]})
    ).json()
    assert len(page2["items"]) == 2 and page2["next_before"] is None
    detail = (await c.get(f"/api/v1/events/{seqs[0]}")).json()
    assert detail["body"]["community_id"] == "1:cid6" and len(detail["digest"]) == 64
    bad = await c.get("/api/v1/events", params={"kind": "nonsense"})
    assert bad.status_code == 400 and "kind" in bad.json()["error"]
    html = (await c.get("/events", params={"kind": "flow"})).text
    assert "TCP/https 10.0.0.1:1006 → 10.0.0.2:443" in html and f'href="/events/{seqs[0]}"' in html


async def test_flow_search_by_community_id_ip_and_port_and_top_talkers(web: Web) -> None:
    await _publish(
        web,
        [
            _flow("10.0.0.1", "10.0.0.2", 1234, 443, 5000, "1:aaa"),
            _flow("10.0.0.3", "10.0.0.2", 2345, 53, 700, "1:bbb"),
            _flow("10.0.0.4", "10.0.0.9", 3456, 22, 100, "1:ccc"),
        ],
    )
    c, _ = await web.login("viewer", "viewer-password-123")
    by_cid = (await c.get("/api/v1/flows", params={"community_id": "1:bbb"})).json()["items"]
    assert [f["body"]["src_addr"] for f in by_cid] == ["10.0.0.3"]
    by_ip = (await c.get("/api/v1/flows", params={"ip": "10.0.0.2"})).json()["items"]
    assert {f["body"]["community_id"] for f in by_ip} == {"1:aaa", "1:bbb"}
    by_port = (await c.get("/api/v1/flows", params={"port": 22})).json()["items"]
    assert [f["body"]["community_id"] for f in by_port] == ["1:ccc"]
    top = (await c.get("/api/v1/flows/top")).json()["items"]
    assert top[0]["addr"] == "10.0.0.2" and top[0]["octets"] == 5000 + 100 + 700 + 100
    assert "1:bbb" in (await c.get("/flows", params={"community_id": "1:bbb"})).text


async def test_collector_control_changes_state_and_is_audited(web: Web) -> None:
    c, csrf = await web.login("admin", web.admin_password)
    h = {"X-CSRF-Token": csrf}
    assert (await c.post("/api/v1/collectors/heartbeat/stop", headers=h)).json()["state"] == "stopped"
    states = {x["name"]: x["state"] for x in (await c.get("/api/v1/collectors")).json()["items"]}
    assert states["heartbeat"] == "stopped"
    assert (await c.post("/api/v1/collectors/heartbeat/start", headers=h)).json()["state"] == "running"
    assert (await c.post("/api/v1/collectors/nope/start", headers=h)).status_code == 404
    assert (await c.post("/api/v1/collectors/heartbeat/explode", headers=h)).status_code == 404
    await _publish(web, [])
    audit = (await c.get("/api/v1/audit")).json()["items"]
    actions = [(a["body"]["actor"], a["body"]["action"], a["body"].get("target")) for a in audit]
    assert ("admin", "collector_stop", "heartbeat") in actions and (
        "admin",
        "collector_start",
        "heartbeat",
    ) in actions
    assert ("admin", "login", None) in actions


async def test_users_are_managed_by_admins(web: Web) -> None:
    c, csrf = await web.login("admin", web.admin_password)
    h = {"X-CSRF-Token": csrf}
    short = await c.post(
        "/api/v1/users", json={"name": "ops", "role": "viewer", "password": "short"}, headers=h
    )
    assert short.status_code == 400 and "12 characters" in short.json()["error"]
    ok = await c.post(
        "/api/v1/users", json={"name": "ops", "role": "viewer", "password": "a-long-password"}, headers=h
    )
    assert ok.status_code == 200
    assert (
        await c.post(
            "/api/v1/users", json={"name": "ops", "role": "viewer", "password": "a-long-password"}, headers=h
        )
    ).status_code == 409
    ops, _ = await web.login("ops", "a-long-password", "192.0.2.77")
    assert (await ops.get("/api/v1/me")).json()["role"] == "viewer"
    assert (await c.post("/api/v1/users/ops/delete", headers=h)).status_code == 200
    assert (await ops.get("/api/v1/me")).status_code == 401  # their sessions ended with them


async def test_overview_reports_store_and_collectors(web: Web) -> None:
    await _publish(web, [_flow("10.0.0.1", "10.0.0.2", 1, 2, 3, "1:x")])
    c, _ = await web.login("viewer", "viewer-password-123")
    o = (await c.get("/api/v1/overview")).json()
    assert o["store"]["rows"] >= 2 and o["health"]["ready"] is True
    assert any(col["name"] == "heartbeat" for col in o["collectors"])
    assert json.dumps(o)  # plain JSON all the way down
    html = (await c.get("/")).text
    assert "Overview" in html and "heartbeat" in html
