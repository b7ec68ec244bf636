"""Collector control from the dashboard: only the actions a state allows are offered, the API refuses
the others (409 with the reason), and every outcome is audited as what actually happened."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2
from amoskys.store.records import Record

from support import eventually
from web_harness import Web, close_web, make_web

NO_INTERFACE = "no interface configured (set `interface`, and `subnets` to sweep, in [collectors.discovery])"


@pytest.fixture
async def web2(tmp_path: Path) -> AsyncIterator[Web]:
    """The heartbeat (runs) and discovery (disabled by its self-check: no interface configured)."""
    w = await make_web(tmp_path, ("heartbeat", "discovery"))
    try:
        yield w
    finally:
        await close_web(w)


async def _audit(web: Web, c: httpx.AsyncClient) -> list[dict[str, Any]]:
    # the writer commits in order: once a later event is readable, so are the audit events before it
    marker = EnvelopeStamper("marker").stamp(events_pb2.Envelope(heartbeat=events_pb2.Heartbeat(version="m")))
    await web.ctx.store.submit([Record.from_envelope(marker)], local=True)
    items = (await c.get("/api/v1/audit")).json()["items"]
    return [a["body"] for a in items if a["body"]["action"].startswith("collector_")]


def _buttons(page: str, name: str) -> list[str]:
    row = re.search(rf'<tr data-name="{name}">(.*?)</tr>', page, re.S)
    assert row is not None, name
    return re.findall(rf'<button type="button" data-action="(\w+)" data-collector="{name}">', row.group(1))


async def _state(web: Web, name: str) -> str:
    return web.ctx.supervisor.status_of(name).state_text


async def test_the_page_offers_only_the_actions_each_state_allows(web2: Web) -> None:
    c, csrf = await web2.login("admin", web2.admin_password)
    h = {"X-CSRF-Token": csrf}
    await _wait_running(web2)
    items = {x["name"]: x for x in (await c.get("/api/v1/collectors")).json()["items"]}
    assert items["heartbeat"]["actions"] == ["stop", "restart"]
    assert items["discovery"]["actions"] == []
    assert items["discovery"]["state_text"] == f"disabled: {NO_INTERFACE}"

    page = (await c.get("/collectors")).text
    assert _buttons(page, "heartbeat") == ["stop", "restart"]
    assert _buttons(page, "discovery") == []  # disabled for missing configuration: nothing to press
    assert "none: fix what its state names" in page

    stopped = await c.post("/api/v1/collectors/heartbeat/stop", headers=h)
    assert stopped.status_code == 200 and stopped.json()["actions"] == ["start"]
    assert _buttons((await c.get("/collectors")).text, "heartbeat") == ["start"]


async def test_disallowed_actions_are_refused_with_409_and_audited_as_refused(web2: Web) -> None:
    c, csrf = await web2.login("admin", web2.admin_password)
    h = {"X-CSRF-Token": csrf}
    await _wait_running(web2)

    r = await c.post("/api/v1/collectors/heartbeat/start", headers=h)
    assert (r.status_code, r.json()) == (409, {"error": "collector 'heartbeat' is already running"})
    assert (await c.post("/api/v1/collectors/heartbeat/stop", headers=h)).status_code == 200
    r = await c.post("/api/v1/collectors/heartbeat/stop", headers=h)
    assert (r.status_code, r.json()) == (
        409,
        {"error": "collector 'heartbeat' is already stopped: stopped by operator"},
    )
    r = await c.post("/api/v1/collectors/heartbeat/restart", headers=h)
    assert r.status_code == 409
    assert r.json()["error"] == (
        "collector 'heartbeat' is stopped: stopped by operator: nothing to restart; start it instead"
    )
    assert await _state(web2, "heartbeat") == "stopped: stopped by operator"

    # a start of a collector disabled by its self-check: tried, disabled again, so refused
    r = await c.post("/api/v1/collectors/discovery/start", headers=h)
    assert (r.status_code, r.json()) == (
        409,
        {"error": f"collector 'discovery' did not start: disabled: {NO_INTERFACE}"},
    )
    # stopping it keeps the reason that says how to fix it
    r = await c.post("/api/v1/collectors/discovery/stop", headers=h)
    assert (r.status_code, r.json()) == (
        409,
        {"error": f"collector 'discovery' is already disabled: {NO_INTERFACE}"},
    )
    assert await _state(web2, "discovery") == f"disabled: {NO_INTERFACE}"

    audit = [
        (a["action"], a["target"], a.get("success", False), a.get("detail", ""))
        for a in await _audit(web2, c)
    ]
    assert sorted(audit) == sorted(
        [
            ("collector_start", "heartbeat", False, "refused: collector 'heartbeat' is already running"),
            ("collector_stop", "heartbeat", True, "stopped: stopped by operator"),
            (
                "collector_stop",
                "heartbeat",
                False,
                "refused: collector 'heartbeat' is already stopped: stopped by operator",
            ),
            (
                "collector_restart",
                "heartbeat",
                False,
                "refused: collector 'heartbeat' is stopped: stopped by operator: nothing to restart; "
                "start it instead",
            ),
            (
                "collector_start",
                "discovery",
                False,
                f"refused: collector 'discovery' did not start: disabled: {NO_INTERFACE}",
            ),
            (
                "collector_stop",
                "discovery",
                False,
                f"refused: collector 'discovery' is already disabled: {NO_INTERFACE}",
            ),
        ]
    )
    page = (await c.get("/audit")).text
    assert "<td>refused</td>" in page and "<td>ok</td>" in page


async def test_an_allowed_start_is_audited_with_the_state_it_reached(web2: Web) -> None:
    c, csrf = await web2.login("admin", web2.admin_password)
    h = {"X-CSRF-Token": csrf}
    await _wait_running(web2)
    assert (await c.post("/api/v1/collectors/heartbeat/stop", headers=h)).status_code == 200
    started = await c.post("/api/v1/collectors/heartbeat/start", headers=h)
    assert started.status_code == 200 and started.json()["state_text"] == "running"
    audit = [(a["action"], a.get("success", False), a.get("detail", "")) for a in await _audit(web2, c)]
    assert ("collector_start", True, "running") in audit


async def _wait_running(web: Web) -> None:
    await eventually(
        lambda: web.ctx.supervisor.status_of("heartbeat").state == "running", what="heartbeat to run"
    )
    await eventually(
        lambda: web.ctx.supervisor.status_of("discovery").state == "disabled", what="discovery disabled"
    )
