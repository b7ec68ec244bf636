"""The Alerts page and its API over a real store: filters by level, state, rule and host; newest match
first, paged; every evidence event id a link to the event's detail; the open count on the Overview; and a
new alert reaching the page's live stream."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request

from amoskys.config import DetectionsConfig
from amoskys.events import EnvelopeStamper
from amoskys.paths import Layout
from amoskys.proto import events_pb2 as ev
from amoskys.store.queries import alerts as alert_reads
from amoskys.store.records import Record
from amoskys.web.live import LiveStreams

from support import eventually
from web_harness import VIEWER_PASSWORD, Web, close_web, make_web

RULE_CURL = "6bc3f5e2-1b0e-4f5f-9f8e-2b1c7e0d0a01"
RULE_CHATTR = "0f6b9a51-6a6f-4c1e-8d2c-5d0a1e9f7b02"
_LEVEL = {"low": ev.Alert.LEVEL_LOW, "high": ev.Alert.LEVEL_HIGH, "critical": ev.Alert.LEVEL_CRITICAL}


async def _commit(web: Web, envelopes: list[ev.Envelope]) -> None:
    """Publish through the bus, and wait until the writer committed them (a later event is readable)."""
    await web.ctx.bus.publish(envelopes)
    marker = EnvelopeStamper("marker").stamp(ev.Envelope(heartbeat=ev.Heartbeat(version="m")))
    await web.ctx.store.submit([Record.from_envelope(marker)], local=True)


def _exec(host: EnvelopeStamper, exe: str, *argv: str) -> ev.Envelope:
    return host.stamp(
        ev.Envelope(process=ev.ProcessEvent(kind=ev.ProcessEvent.EXEC, pid=4242, exe=exe, argv=[exe, *argv]))
    )


def _alert(
    appliance: EnvelopeStamper,
    *,
    rule_id: str,
    title: str,
    level: str,
    host: str,
    evidence: list[ev.Envelope],
    ts_ns: int,
    first: ev.Envelope | None = None,
    count: int = 1,
    synthetic_attrs: dict[str, str] | None = None,
) -> ev.Envelope:
    """An Alert as the detections raise it: a first event, or a follow-up of `first`."""
    a = ev.Alert(
        rule=rule_id,
        rule_id=rule_id,
        title=title,
        level=_LEVEL[level],
        tags=["attack.execution", "attack.t1059.004"],
        host=host,
        count=count,
        summary=f"{title}: {' '.join(evidence[0].process.argv)}",
        related_event_ids=[e.event_id for e in evidence],
        attributes=synthetic_attrs or {"Image": evidence[0].process.exe},
    )
    if first is not None:
        a.alert_id = first.event_id
    return appliance.stamp(ev.Envelope(alert=a), ts_ns=ts_ns)


class Scene:
    """Three alerts on two hosts: curl (high, host-a, matched twice), chattr (critical, host-b), and a
    low-level curl on host-b."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.appliance = EnvelopeStamper(web.ctx.name)
        self.a, self.b = EnvelopeStamper("host-a"), EnvelopeStamper("host-b")
        self.t0 = 1_800_000_000 * 10**9

    async def build(self) -> None:
        ap, t0 = self.appliance, self.t0
        self.curl1 = _exec(self.a, "/usr/bin/curl", "-o", "/tmp/x", "http://192.0.2.9/x")
        self.curl2 = _exec(self.a, "/usr/bin/curl", "-o", "/tmp/y", "http://192.0.2.9/y")
        self.chattr = _exec(self.b, "/usr/bin/chattr", "-i", "/etc/passwd")
        self.curl_b = _exec(self.b, "/usr/bin/curl", "http://192.0.2.9/z")
        await _commit(self.web, [self.curl1, self.curl2, self.chattr, self.curl_b])
        self.first = _alert(
            ap, rule_id=RULE_CURL, title="Curl download to /tmp", level="high", host="host-a",
            evidence=[self.curl1], ts_ns=t0,
        )  # fmt: skip
        self.crit = _alert(
            ap, rule_id=RULE_CHATTR, title="Chattr immutable removed", level="critical", host="host-b",
            evidence=[self.chattr], ts_ns=t0 + 10**9,
        )  # fmt: skip
        self.low = _alert(
            ap, rule_id=RULE_CURL, title="Curl download to /tmp", level="low", host="host-b",
            evidence=[self.curl_b], ts_ns=t0 + 2 * 10**9,
        )  # fmt: skip
        await _commit(self.web, [self.first, self.crit, self.low])
        # the curl alert on host-a matches again later: the follow-up updates its row
        follow = _alert(
            ap, rule_id=RULE_CURL, title="Curl download to /tmp", level="high", host="host-a",
            evidence=[self.curl2], ts_ns=t0 + 3 * 10**9, first=self.first, count=2,
        )  # fmt: skip
        await _commit(self.web, [follow])


def _ids(page: dict[str, Any]) -> list[str]:
    return [i["alert_id"] for i in page["items"]]


async def test_alerts_are_filtered_by_level_state_rule_and_host(web: Web) -> None:
    s = Scene(web)
    await s.build()
    c, _ = await web.login("viewer", VIEWER_PASSWORD)

    async def ids(**params: str) -> list[str]:
        r = await c.get("/api/v1/alerts", params=params)
        assert r.status_code == 200, r.text
        return _ids(r.json())

    everything = (await c.get("/api/v1/alerts")).json()
    # newest match first: the curl alert on host-a matched last (its follow-up), so it leads
    assert _ids(everything) == [s.first.event_id, s.low.event_id, s.crit.event_id]
    assert everything["open"] == 3 and everything["next"] is None
    top = everything["items"][0]
    assert (top["count"], top["rule_id"], top["level"], top["host"], top["state"]) == (
        2, RULE_CURL, "high", "host-a", "new",
    )  # fmt: skip
    assert top["first_seen_ns"] == s.t0 and top["last_seen_ns"] == s.t0 + 3 * 10**9
    assert top["tags"] == ["attack.execution", "attack.t1059.004"]
    assert [e["event_id"] for e in top["evidence"]] == [s.curl1.event_id, s.curl2.event_id]

    assert await ids(level="critical") == [s.crit.event_id]
    assert await ids(level="low") == [s.low.event_id]
    assert await ids(rule=RULE_CURL) == [s.first.event_id, s.low.event_id]
    assert await ids(host="host-b") == [s.low.event_id, s.crit.event_id]
    assert await ids(host="host-b", rule=RULE_CURL) == [s.low.event_id]
    assert await ids(state="resolved") == []
    assert await ids(state="new", level="high") == [s.first.event_id]
    assert await ids(host="nowhere") == []

    # a bad filter is refused, naming the parameter
    r = await c.get("/api/v1/alerts", params={"level": "severe"})
    assert r.status_code == 400 and "'level'" in r.json()["error"]
    r = await c.get("/api/v1/alerts", params={"before": "5"})
    assert r.status_code == 400 and "before_seen_ns" in r.json()["error"]

    # the page shows what its API twin returns, for the same filters
    page = await c.get("/alerts", params={"host": "host-b"})
    assert page.status_code == 200
    rows = re.findall(r'<tr data-alert="(\d+)"', page.text)
    assert len(rows) == 2 and "Chattr immutable removed" in page.text
    assert 'id="open-count"' in page.text and "3 open" in page.text
    assert "data-triage" not in page.text  # a viewer gets no triage buttons


async def test_pages_follow_on_newest_match_first(web: Web) -> None:
    s = Scene(web)
    await s.build()
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    first = (await c.get("/api/v1/alerts", params={"limit": 2})).json()
    assert _ids(first) == [s.first.event_id, s.low.event_id]
    assert first["next"] == {"before_seen_ns": s.t0 + 2 * 10**9, "before": first["items"][1]["id"]}
    rest = (await c.get("/api/v1/alerts", params={"limit": 2, **first["next"]})).json()
    assert _ids(rest) == [s.crit.event_id] and rest["next"] is None
    page = (await c.get("/alerts", params={"limit": 2})).text
    older = re.search(r'<a id="older" href="([^"]+)"', page)
    assert older is not None
    nxt = await c.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(r'<tr data-alert="(\d+)"', nxt.text) == [str(rest["items"][0]["id"])]


async def test_every_evidence_event_is_one_click_from_the_alert(web: Web) -> None:
    s = Scene(web)
    await s.build()
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    page = (await c.get("/alerts", params={"host": "host-a"})).text
    links = re.findall(r'<a class="evidence" href="(/events/\d+)" title="([^"]+)"', page)
    assert [eid for _, eid in links] == [s.curl1.event_id, s.curl2.event_id]
    for href, eid in links:
        detail = await c.get(href)  # the event's detail view
        assert detail.status_code == 200 and eid in detail.text and "/usr/bin/curl" in detail.text
        seq = href.rsplit("/", 1)[1]
        body = (await c.get(f"/api/v1/events/{seq}")).json()
        assert (body["event_id"], body["source"], body["kept_as_evidence"]) == (eid, "host-a", False)

    # the alert's own page: every evidence link, its attributes, and its alert event
    alert_id = (await c.get("/api/v1/alerts", params={"host": "host-a"})).json()["items"][0]["id"]
    detail = await c.get(f"/alerts/{alert_id}")
    assert detail.status_code == 200
    assert re.findall(r'<a class="evidence" href="/events/\d+"><code>([^<]+)</code>', detail.text) == [
        s.curl1.event_id,
        s.curl2.event_id,
    ]
    assert f'href="/events/{alert_id}">the alert event' in detail.text
    assert (await c.get("/alerts/999999")).status_code == 404
    assert (await c.get("/api/v1/alerts/999999")).status_code == 404


async def test_evidence_kept_past_retention_still_opens(web: Web) -> None:
    """The detail view falls back to the evidence the store kept for an unresolved alert."""
    s = Scene(web)
    await s.build()
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    item = (await c.get("/api/v1/alerts", params={"level": "critical"})).json()["items"][0]
    seq = item["evidence"][0]["store_seq"]
    # what retention does to an evidence event of an unresolved alert: copy it aside, delete it from the log
    await _retire(web, seq)
    again = (await c.get("/api/v1/alerts", params={"level": "critical"})).json()["items"][0]
    assert again["evidence"] == [{"event_id": s.chattr.event_id, "store_seq": seq}]
    body = (await c.get(f"/api/v1/events/{seq}")).json()
    assert body["kept_as_evidence"] is True and body["body"]["exe"] == "/usr/bin/chattr"
    assert body["boot_id"] == s.b.boot_id
    page = await c.get(f"/events/{seq}")
    assert page.status_code == 200 and 'id="kept-evidence"' in page.text


async def _retire(web: Web, seq: int) -> None:
    import sqlite3

    def move() -> None:
        conn = sqlite3.connect(Layout(web.data).db, timeout=10)
        with conn:
            conn.execute(
                "INSERT INTO alert_evidence (source, event_id, store_seq, kind, ts_ns, received_ns, envelope) "
                "SELECT source, event_id, store_seq, kind, ts_ns, received_ns, envelope FROM events "
                "WHERE store_seq = ?",
                (seq,),
            )
            conn.execute("DELETE FROM events WHERE store_seq = ?", (seq,))
        conn.close()

    await asyncio.to_thread(move)


async def test_the_overview_shows_the_open_count(web: Web) -> None:
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    empty = (await c.get("/api/v1/overview")).json()["alerts"]
    assert (empty["open"], empty["by_level"]) == (0, {})
    s = Scene(web)
    await s.build()
    # an alert on synthetic (loadgen) events is left out unless the overview counts them
    synthetic = _alert(
        EnvelopeStamper("lg-1"), rule_id="loadgen.synthetic", title="loadgen", level="low", host="lg-1",
        evidence=[s.curl1], ts_ns=s.t0,
    )  # fmt: skip
    await web.ctx.store.submit([Record.from_envelope(synthetic, origin="lg-1", synthetic=True)])
    await _commit(web, [])
    o = (await c.get("/api/v1/overview")).json()["alerts"]
    assert (o["open"], o["by_level"], o["synthetic_open"]) == (3, {"critical": 1, "high": 1, "low": 1}, 1)
    assert o["synthetic_capped"] is False
    assert (await c.get("/api/v1/overview", params={"synthetic": 1})).json()["alerts"]["open"] == 4
    assert (await c.get("/api/v1/alerts/open")).json()["open"] == 3
    page = (await c.get("/")).text
    card = re.search(r'id="alerts-open"><a href="/alerts" class="plain-link">([\d,]+)</a>', page)
    assert card is not None and card.group(1) == "3"


async def test_synthetic_open_alerts_are_counted_up_to_a_cap(web: Web) -> None:
    """A loadgen run leaves one open alert per synthetic alert event: the overview counts them up to
    SYNTHETIC_COUNT_CAP and says so, while observed alerts are all counted."""
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    s = Scene(web)
    await s.build()
    lg = EnvelopeStamper("lg-1")
    records = [
        Record.from_envelope(
            _alert(
                lg, rule_id=f"loadgen.synthetic.{i}", title="loadgen", level="low", host="lg-1",
                evidence=[s.curl1], ts_ns=s.t0,
            ),
            origin="lg-1",
            synthetic=True,
        )
        for i in range(alert_reads.SYNTHETIC_COUNT_CAP + 5)
    ]  # fmt: skip
    await web.ctx.store.submit(records)
    await _commit(web, [])
    o = (await c.get("/api/v1/overview")).json()["alerts"]
    above = alert_reads.SYNTHETIC_COUNT_CAP + 1  # counted up to the cap and one more: "more than the cap"
    assert (o["open"], o["synthetic_open"], o["synthetic_capped"]) == (3, above, True)
    with_synthetic = (await c.get("/api/v1/overview", params={"synthetic": 1})).json()["alerts"]
    assert with_synthetic["open"] == 3 + above
    assert with_synthetic["synthetic_capped"] is True


async def test_a_new_alert_reaches_the_alerts_page_stream(web: Web) -> None:
    result = await web.ctx.auth.login("viewer", VIEWER_PASSWORD, "192.0.2.10")
    live = LiveStreams(web.ctx)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/api/v1/stream", "raw_path": b"/api/v1/stream", "query_string": b"kinds=alert,audit",
        "root_path": "", "client": ("192.0.2.10", 40000), "server": ("localhost", 80),
        "headers": [(b"host", b"localhost"), (b"cookie", f"amoskys_session={result.token}".encode())],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def body() -> str:
        return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()

    response = await live.stream(Request(scope))
    task = asyncio.create_task(response(scope, receive, send))  # type: ignore[arg-type]
    try:
        await eventually(lambda: "retry:" in body(), what="the stream to start")
        s = Scene(web)
        await s.build()
        chunks = await eventually(
            lambda: [json.loads(m) for m in re.findall(r"event: events\ndata: (.*)\n\n", body())],
            what="an events message",
        )
        seen = [e for chunk in chunks for e in chunk]
        await eventually(lambda: s.crit.event_id in body(), what="the critical alert on the stream")
        assert {e["kind"] for e in seen} <= {"alert", "audit"}  # the page asked for alerts (and triage)
        alert = next(
            e for chunk in re.findall(r"event: events\ndata: (.*)\n\n", body()) for e in json.loads(chunk)
            if e["event_id"] == s.crit.event_id
        )  # fmt: skip
        assert (alert["kind"], alert["source"]) == ("alert", web.ctx.name)
    finally:
        gone.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_alerts_page_needs_a_login(web: Web) -> None:
    c: httpx.AsyncClient = web.client()
    r = await c.get("/alerts")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/alerts"
    assert (await c.get("/api/v1/alerts")).status_code == 401


# ---------------------------------------------------------------------------------------- actions


async def _audited(web: Web, c: httpx.AsyncClient, prefix: str) -> list[dict[str, Any]]:
    await _commit(web, [])  # the audit events committed before are readable
    items = (await c.get("/api/v1/audit", params={"limit": 500})).json()["items"]
    return [a["body"] for a in reversed(items) if a["body"]["action"].startswith(prefix)]


async def test_an_admin_triages_an_alert_a_viewer_cannot_and_each_triage_is_audited(web: Web) -> None:
    s = Scene(web)
    await s.build()
    viewer, viewer_csrf = await web.login("viewer", VIEWER_PASSWORD)
    admin, csrf = await web.login("admin", web.admin_password, addr="192.0.2.20")
    alert = (await admin.get("/api/v1/alerts", params={"host": "host-a"})).json()["items"][0]["id"]
    url = f"/api/v1/alerts/{alert}/triage"

    r = await viewer.post(url, json={"state": "resolved"}, headers={"X-CSRF-Token": viewer_csrf})
    assert (r.status_code, r.json()) == (403, {"error": "this needs the admin role"})
    r = await admin.post(url, json={"state": "resolved"})  # no CSRF token
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = await admin.post(url, json={"state": "resolved"}, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    assert (await admin.get(f"/api/v1/alerts/{alert}")).json()["state"] == "new"

    h = {"X-CSRF-Token": csrf}
    r = await admin.post(url, json={"state": "acknowledged", "note": "looking"}, headers=h)
    assert r.status_code == 200, r.text
    got = (await admin.get(f"/api/v1/alerts/{alert}")).json()
    assert (got["state"], got["state_by"], got["state_note"]) == ("acknowledged", "admin", "looking")
    assert got["state_ns"] > 0
    assert (await admin.get("/api/v1/alerts")).json()["open"] == 3  # acknowledged is still open

    assert (await admin.post(url, json={"state": "resolved"}, headers=h)).status_code == 200
    listed = (await admin.get("/api/v1/alerts")).json()
    assert listed["open"] == 2 and alert not in [i["id"] for i in listed["items"]]
    resolved = (await admin.get("/api/v1/alerts", params={"state": "resolved"})).json()["items"]
    assert [i["id"] for i in resolved] == [alert]
    assert (await admin.get("/api/v1/overview")).json()["alerts"]["open"] == 2

    assert (await admin.post(url, json={"state": "new"}, headers=h)).status_code == 200  # reopened
    assert (await admin.get(f"/api/v1/alerts/{alert}")).json()["state"] == "new"

    r = await admin.post(url, json={"state": "closed"}, headers=h)
    assert r.status_code == 400 and "'state'" in r.json()["error"]
    r = await admin.post("/api/v1/alerts/999999/triage", json={"state": "resolved"}, headers=h)
    assert (r.status_code, r.json()) == (404, {"error": "no alert 999999"})

    audit = [
        (a["actor"], a["target"], json.loads(a["detail"])["state"])
        for a in await _audited(web, admin, "alert_")
    ]
    assert audit == [
        ("admin", f"alert:{alert}", "acknowledged"),
        ("admin", f"alert:{alert}", "resolved"),
        ("admin", f"alert:{alert}", "new"),
    ]
    # the page offers an admin the triage buttons for the states the alert is not in
    page = (await admin.get("/alerts", params={"host": "host-a"})).text
    row = re.search(rf'<tr data-alert="{alert}".*?</tr>', page, re.S)
    assert row is not None
    assert re.findall(r'data-triage="(\w+)"', row.group(0)) == ["acknowledged", "resolved", "false_positive"]
    assert "data-suppress" in row.group(0) and 'id="suppress-form"' in page


async def test_a_suppression_lasts_until_its_expiry_and_every_change_is_audited(web: Web) -> None:
    viewer, viewer_csrf = await web.login("viewer", VIEWER_PASSWORD)
    admin, csrf = await web.login("admin", web.admin_password, addr="192.0.2.20")
    h = {"X-CSRF-Token": csrf}
    want = {"rule_id": RULE_CURL, "host": "host-a", "field": "Image", "value": "/usr/bin/curl", "hours": 2}
    url = "/api/v1/alerts/suppressions"

    r = await viewer.post(url, json=want, headers={"X-CSRF-Token": viewer_csrf})
    assert r.status_code == 403
    assert (await admin.post(url, json=want)).status_code == 403  # no CSRF token
    r = await admin.post(url, json=want | {"hours": 0}, headers=h)
    assert r.status_code == 400 and "'hours'" in r.json()["error"]
    r = await admin.post(url, json=want | {"field": "Image; DROP"}, headers=h)
    assert r.status_code == 400 and "Sigma field name" in r.json()["error"]

    before = web.ctx.clock_ns()
    r = await admin.post(url, json=want | {"reason": "nightly backup"}, headers=h)
    assert r.status_code == 200, r.text
    sid, expires = r.json()["id"], r.json()["expires_ns"]
    assert before + 2 * 3600 * 10**9 <= expires <= web.ctx.clock_ns() + 2 * 3600 * 10**9

    active = (await viewer.get(url)).json()["items"]
    assert [
        (x["id"], x["rule_id"], x["host"], x["field"], x["value"], x["expires_ns"], x["active"])
        for x in active
    ] == [(sid, RULE_CURL, "host-a", "Image", "/usr/bin/curl", expires, True)]
    page = (await admin.get("/alerts/rules")).text
    assert f'data-unsuppress="{sid}"' in page and "nightly backup" in page
    assert f'data-unsuppress="{sid}"' not in (await viewer.get("/alerts/rules")).text

    # past its expiry it is no longer active (the clock is the one thing mocked)
    real = web.ctx.clock_ns
    web.ctx.clock_ns = lambda: real() + 3 * 3600 * 10**9
    try:
        assert (await viewer.get(url)).json()["items"] == []
        ended = (await viewer.get(url, params={"ended": 1})).json()["items"]
        assert [(x["id"], x["active"]) for x in ended] == [(sid, False)]
        assert "No active suppressions." in (await viewer.get("/alerts/rules")).text
    finally:
        web.ctx.clock_ns = real

    r = await viewer.post(f"{url}/{sid}/delete", headers={"X-CSRF-Token": viewer_csrf})
    assert r.status_code == 403
    assert (await admin.post(f"{url}/{sid}/delete", headers=h)).status_code == 200
    assert (await viewer.get(url)).json()["items"] == []
    r = await admin.post(f"{url}/{sid}/delete", headers=h)
    assert r.status_code == 404
    audit = [(a["action"], a["actor"], a["target"]) for a in await _audited(web, admin, "alert_")]
    assert audit == [
        ("alert_suppress", "admin", f"suppression:{sid}"),
        ("alert_unsuppress", "admin", f"suppression:{sid}"),
    ]


CURL_RULE = f"""title: Download with curl into /tmp
id: {RULE_CURL}
status: test
description: curl writing a download into /tmp
tags:
    - attack.command_and_control
    - attack.t1105
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/curl'
        CommandLine|contains: ' /tmp/'
    condition: selection
level: high
"""

FILE_RULE = """title: Shadow file written
id: 2f3f0c7e-8c47-4a7c-9a7b-0c1d2e3f4a5b
logsource:
    product: linux
    category: file_event
detection:
    selection:
        TargetFilename: /etc/shadow
    condition: selection
level: critical
"""


async def test_rules_are_listed_with_reasons_and_switched_at_runtime(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "curl.yml").write_text(CURL_RULE)
    (rules / "file.yml").write_text(FILE_RULE)
    (rules / "broken.yml").write_text("title: [unclosed\n")
    web = await make_web(tmp_path, detections=DetectionsConfig(sigma_paths=(str(rules),)))
    try:
        viewer, viewer_csrf = await web.login("viewer", VIEWER_PASSWORD)
        admin, csrf = await web.login("admin", web.admin_password, addr="192.0.2.20")
        h = {"X-CSRF-Token": csrf}
        listed = (await viewer.get("/api/v1/rules")).json()
        assert {k: listed[k] for k in ("loaded", "unsupported", "invalid", "enabled")} == {
            "loaded": 1, "unsupported": 1, "invalid": 1, "enabled": 1,
        }  # fmt: skip
        by_status = {i["status"]: i for i in listed["items"]}
        assert (by_status["loaded"]["rule_id"], by_status["loaded"]["enabled"]) == (RULE_CURL, True)
        assert "file_event" in by_status["unsupported"]["reason"]
        assert by_status["invalid"]["reason"] and by_status["invalid"]["path"].endswith("broken.yml")
        counts = (await viewer.get("/api/v1/overview")).json()["alerts"]["rules"]
        assert counts == {"loaded": 1, "enabled": 1, "unsupported": 1, "invalid": 1}
        page = (await viewer.get("/alerts/rules")).text
        assert by_status["unsupported"]["reason"] in page.replace("&#39;", "'")
        assert 'id="rules-unsupported">1<' in page and "data-rule-switch" not in page
        overview = (await viewer.get("/")).text
        assert "1 unsupported, 1 invalid" in overview

        # a real exec on a host raises the rule's alert; its evidence is the exec, one click away
        host = EnvelopeStamper("host-a")
        exec_ = _exec(host, "/usr/bin/curl", "-o", "/tmp/payload", "http://192.0.2.9/p")
        await web.ctx.bus.publish([exec_])
        item = await eventually(
            lambda: _first_alert(viewer, {"rule": RULE_CURL}), within=20, what="the rule's alert"
        )
        assert (item["title"], item["level"], item["host"]) == (
            "Download with curl into /tmp",
            "high",
            "host-a",
        )
        assert [e["event_id"] for e in item["evidence"]] == [exec_.event_id]
        detail = await viewer.get(f"/events/{item['evidence'][0]['store_seq']}")
        assert exec_.event_id in detail.text and "/tmp/payload" in detail.text

        # switching: admins only, audited, shown at once
        r = await viewer.post(
            "/api/v1/rules/disable", json={"rule_id": RULE_CURL}, headers={"X-CSRF-Token": viewer_csrf}
        )
        assert r.status_code == 403
        assert (await admin.post("/api/v1/rules/disable", json={"rule_id": RULE_CURL})).status_code == 403
        r = await admin.post("/api/v1/rules/disable", json={"rule_id": RULE_CURL}, headers=h)
        assert (r.status_code, r.json()) == (200, {"rule_id": RULE_CURL, "enabled": False})
        after = (await viewer.get("/api/v1/rules")).json()
        assert (
            after["enabled"] == 0 and {i["rule_id"]: i["enabled"] for i in after["items"]}[RULE_CURL] is False
        )
        page = (await admin.get("/alerts/rules")).text
        assert 'data-rule-switch="enable"' in page
        r = await admin.post("/api/v1/rules/enable", json={"rule_id": "no-such-rule"}, headers=h)
        assert r.status_code == 404
        r = await admin.post("/api/v1/rules/enable", json={"rule_id": RULE_CURL}, headers=h)
        assert r.status_code == 200 and (await viewer.get("/api/v1/rules")).json()["enabled"] == 1
        audit = [(a["action"], a["actor"], a["target"]) for a in await _audited(web, admin, "rule_")]
        assert audit == [
            ("rule_disabled", "admin", f"rule:{RULE_CURL}"),
            ("rule_enabled", "admin", f"rule:{RULE_CURL}"),
        ]
    finally:
        await close_web(web)


async def _first_alert(c: httpx.AsyncClient, params: dict[str, str]) -> dict[str, Any] | None:
    items = (await c.get("/api/v1/alerts", params=params)).json()["items"]
    return items[0] if items else None
