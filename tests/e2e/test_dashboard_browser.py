"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real appliance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from amoskys.community_id import community_id_of

from chart_checks import check_chart
from chromium import CHROMIUM_ARGS, log_in
from support import ROOT, amoskys, free_port, require_tool

pytestmark = [pytest.mark.e2e, pytest.mark.needs_tool]  # chromium

PAGES = [
    "/",
    "/alerts",
    "/alerts/rules",
    "/collectors",
    "/events",
    "/processes",
    "/flows",
    "/devices",
    "/snmp",
    "/agents",
    "/users",
    "/audit",
]


@pytest.fixture
def browser() -> Iterator[object]:
    chromium = require_tool("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_operator_session_in_a_real_browser(appliance_factory, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "amoskys.toml"
    cfg.write_text("[collectors.heartbeat]\ninterval_seconds = 1\n")
    port = free_port()
    app = appliance_factory("--config", str(cfg), "--bus-listen", f"127.0.0.1:{port}")
    app.wait_ready()
    base = app.web_url
    shots = Path(os.environ.get("AMOSKYS_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    password = (app.data_dir / "admin-password").read_text().strip()
    amoskys(
        "agents",
        "enroll",
        "branch-1",
        "--role",
        "loadgen",
        "--out",
        str(tmp_path / "bundle"),
        "--data-dir",
        str(app.data_dir),
    )

    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # log in
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.screenshot(path=str(shots / "login.png"))
    log_in(page, base, password)

    # the overview's counters move while a publisher publishes (loadgen's events are synthetic: counted
    # only when the overview is asked to count them)
    page.goto(base + "/?synthetic=1")
    rows_before = int(page.inner_text("#rows").replace(",", ""))
    loadgen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amoskys",
            "loadgen",
            "--identity",
            str(tmp_path / "bundle"),
            "--bus",
            f"127.0.0.1:{port}",
            "--events",
            "6000",
            "--batch",
            "100",
            "--rate",
            "1500",
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page.wait_for_function(
            "n => parseInt(document.getElementById('rows').textContent.replace(/\\D/g, ''), 10) > n + 500",
            arg=rows_before,
            timeout=20_000,
        )
        page.wait_for_function(
            "() => parseFloat(document.getElementById('eps').textContent) > 100", timeout=20_000
        )
        page.screenshot(path=str(shots / "overview.png"))
    finally:
        assert loadgen.wait(timeout=60) == 0

    # stop and start a collector and see its state change
    page.goto(base + "/collectors")
    state = page.locator('tr[data-name="heartbeat"] .state')
    assert state.inner_text() == "running"
    page.click('button[data-collector="heartbeat"][data-action="stop"]')
    page.wait_for_function(
        "() => document.querySelector('tr[data-name=\"heartbeat\"] .state').textContent.startsWith('stopped')"
    )
    page.reload()
    assert page.locator('tr[data-name="heartbeat"] .state').inner_text().startswith("stopped")
    page.click('button[data-collector="heartbeat"][data-action="start"]')
    page.wait_for_function(
        "() => document.querySelector('tr[data-name=\"heartbeat\"] .state').textContent === 'running'"
    )
    page.screenshot(path=str(shots / "collectors.png"))

    # the Alerts page lists loadgen's (synthetic) alerts; an admin acknowledges one, and its row says so
    page.goto(base + "/alerts")
    alert_id = page.locator("#alerts tbody tr[data-alert]").first.get_attribute("data-alert")
    page.click(f'tr[data-alert="{alert_id}"] button[data-triage="acknowledged"]')
    page.wait_for_function(
        "id => (document.querySelector(`tr[data-alert='${id}'] .state`) || {}).textContent"
        "?.startsWith('acknowledged')",
        arg=alert_id,
    )
    assert "admin" in page.locator(f'tr[data-alert="{alert_id}"] .state').inner_text()
    # a triage made elsewhere (a script, another admin) reaches the open page over the live stream: the
    # request below is not the page's own (which refreshes its table itself)
    other = page.locator("#alerts tbody tr[data-alert]").nth(1).get_attribute("data-alert")
    page.evaluate(
        """id => fetch(`/api/v1/alerts/${id}/triage`, {method: "POST", credentials: "same-origin",
             headers: {"Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf},
             body: JSON.stringify({state: "false_positive"})})""",
        other,
    )
    page.wait_for_function(  # closed: it leaves the list of open alerts
        "id => !document.querySelector(`tr[data-alert='${id}']`)", arg=other, timeout=10_000
    )
    page.click(f'tr[data-alert="{alert_id}"] button[data-suppress]')  # the form comes prefilled
    assert page.input_value("#suppress-rule") == "loadgen.synthetic"
    assert page.input_value("#suppress-host") == "branch-1"
    page.fill("#suppress-value", "loadgen synthetic")
    page.click("#suppress-submit")
    page.wait_for_function(
        "() => document.getElementById('action-result').textContent.startsWith('Suppressed')"
    )
    page.screenshot(path=str(shots / "alerts.png"))

    # filter events and open one
    page.goto(base + "/events")
    page.select_option("#kind", "flow")
    page.click("#filter")
    page.wait_for_url("**/events?kind=flow**")
    kinds = page.locator("#events tbody tr td:nth-child(3)").all_inner_texts()
    assert kinds and set(kinds) == {"flow"}
    page.screenshot(path=str(shots / "events.png"))
    assert "SYNTHETIC" in page.locator("#events tbody tr").first.inner_text()
    page.locator("#events tbody tr td a").first.click()
    page.wait_for_url("**/events/*")
    body = json.loads(page.text_content("#body") or "")  # the stored body, under the typed view
    cid = body["community_id"]
    assert cid == community_id_of(
        body["src_addr"], body["dst_addr"], body["protocol"], body["src_port"], body["dst_port"]
    )

    # search flows by Community ID
    page.goto(base + "/flows")
    page.fill("#community_id", cid)
    page.click("#search")
    page.wait_for_url("**community_id=1%3A**")
    cells = page.locator("#flows tbody tr td:last-child").all_inner_texts()
    assert cells and set(cells) == {cid}
    page.screenshot(path=str(shots / "flows.png"))

    # every page renders, at desktop and at phone width, without horizontal overflow on the phone
    for path in PAGES:
        page.goto(base + path)
        assert page.locator("h1").first.is_visible(), path
        page.screenshot(path=str(shots / f"page{path.replace('/', '_') or '_'}.png"), full_page=True)
    phone = browser.new_page(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    phone.context.add_cookies(page.context.cookies())
    for path in PAGES:
        phone.goto(base + path)
        overflow = phone.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} overflows a phone screen by {overflow}px"
    phone.goto(base + "/")
    phone.screenshot(path=str(shots / "overview-phone.png"), full_page=True)

    # log out: the session is gone
    page.goto(base + "/")
    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(base + "/events")
    assert "/login" in page.url
    assert not errors, errors

    app.signal(signal.SIGTERM)
    assert app.wait_exit(timeout=10) == 0


# ---------------------------------------------------------------------------------------- charts, live
def _publish(bundle: Path, bus: str, envelopes: list[object]) -> None:
    """Publish `envelopes` (stamped here) as an enrolled agent over the real bus (mTLS, signed batch)."""
    import asyncio
    import concurrent.futures

    from amoskys.bus.client import BusClient, PublisherIdentity
    from amoskys.events import EnvelopeStamper
    from amoskys.proto import bus_pb2

    name = json.loads((bundle / "bundle.json").read_text())["name"]
    stamper = EnvelopeStamper(name)

    async def send() -> None:
        identity = await PublisherIdentity.load(bundle)
        assert identity.name == name
        async with BusClient(identity, bus) as client:
            assert await client.wait_ready(10)
            raws = [stamper.stamp(e).SerializeToString() for e in envelopes]  # type: ignore[arg-type]
            ack = await client.send(client.sign_next(bus_pb2.RawEventList(events=raws).SerializeToString()))
            assert ack.accepted == len(raws), ack

    # on a thread of its own: Playwright's sync API runs a loop on the test's thread
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(timeout=30)


def _exec(ts_ns: int, pid: int) -> object:
    """One exec event of the agent's, observed at `ts_ns`."""
    from amoskys.proto import events_pb2 as ev

    return ev.Envelope(ts_ns=ts_ns, process=ev.ProcessEvent(kind=ev.ProcessEvent.EXEC, pid=pid))


def _activity(now_ns: int) -> list[object]:
    """Ten minutes of an agent's activity, a minute apart: flows of a site address, execs, host metrics,
    and two SNMP polls a minute of a rated interface (plus one target polled only once)."""
    from amoskys.proto import events_pb2 as ev

    out: list[object] = []
    for m in range(10, 0, -1):
        t = now_ns - m * 60_000_000_000
        flow = ev.FlowRecord(
            src_addr="10.20.0.5",
            dst_addr="203.0.113.9",
            src_port=40000 + m,
            dst_port=443,
            protocol=6,
            forward=ev.FlowDirection(packets=10, octets=30_000 * m),
            reverse=ev.FlowDirection(packets=20, octets=90_000 * m),
        )
        out.append(ev.Envelope(ts_ns=t, flow=flow))
        out += [_exec(t + i, 100 + i) for i in range(m)]
        host = ev.HostMetrics(cpu_percent=5.0 * m, memory_used_bytes=m << 28, memory_total_bytes=4 << 30)
        out.append(ev.Envelope(ts_ns=t, host=host))
        for i in range(2):
            iface = ev.SnmpInterface(if_index=1, name="ge-0/0/1", speed_bps=1_000_000_000)
            iface.in_bps, iface.out_bps = 2e6 * m + i, 5e5 * m
            sample = ev.SnmpSample(target="sw-e2e", address="192.0.2.2", reachable=True, interfaces=[iface])
            out.append(ev.Envelope(ts_ns=t + 30_000_000_000 * i, snmp=sample))
    once = ev.SnmpInterface(if_index=3, name="ge-0/0/3", speed_bps=1_000_000_000)
    out.append(
        ev.Envelope(
            ts_ns=now_ns,
            snmp=ev.SnmpSample(target="sw-new", address="192.0.2.3", reachable=True, interfaces=[once]),
        )
    )
    return out


def test_charts_read_with_axes_and_hover_and_numbers_stay_live(  # type: ignore[no-untyped-def]
    appliance_factory, browser, tmp_path: Path
) -> None:
    import time

    cfg = tmp_path / "amoskys.toml"
    cfg.write_text("[collectors.heartbeat]\ninterval_seconds = 1\n")
    port = free_port()
    app = appliance_factory("--config", str(cfg), "--bus-listen", f"127.0.0.1:{port}")
    app.wait_ready()
    base, bus = app.web_url, f"127.0.0.1:{port}"
    shots = Path(os.environ.get("AMOSKYS_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    password = (app.data_dir / "admin-password").read_text().strip()
    bundle = tmp_path / "bundle"
    amoskys("agents", "enroll", "edge-agent", "--out", str(bundle), "--data-dir", str(app.data_dir))
    _publish(bundle, bus, _activity(time.time_ns()))

    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, base, password)

    # the Overview loaded afresh (a new context: nothing cached) draws its charts; its first paint and
    # weight are measured by benchmarks/bench_pages.py, not asserted here
    cold = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    cold.add_cookies(page.context.cookies())
    first = cold.new_page()
    first.goto(base + "/")
    first.wait_for_selector("#chart-events[data-state=drawn]")
    cold.close()

    # the Overview's charts: events/s by kind, bandwidth, execs
    assert "events/s" in check_chart(page, "chart-events", "events/s")
    assert "bit/s" in check_chart(page, "chart-bandwidth", "bit/s")
    assert "execs" in check_chart(page, "chart-execs", "/s")
    # the range picker: 7 days reads quarter-hour points, and the axis says days
    with page.expect_response(lambda r: "/api/v1/series/execs?range=7d" in r.url) as answer:
        page.click(".range-picker button[data-range='7d']")
    assert answer.value.json()["step_seconds"] == 900
    page.wait_for_function(
        "() => document.querySelector(\"button[data-range='7d']\").getAttribute('aria-pressed') === 'true'"
    )
    with page.expect_response(lambda r: "/api/v1/series/events?range=15m" in r.url):
        page.click(".range-picker button[data-range='15m']")
    check_chart(page, "chart-events", "events/s")
    page.screenshot(path=str(shots / "overview-charts.png"), full_page=True)

    # Overview numbers change without a reload: bus counts, store rows (the agent publishes meanwhile)
    bus_before = page.inner_text("#bus")
    rows_before = page.inner_text("#rows")
    page.wait_for_function("() => document.body.dataset.liveTopic === 'overview'", timeout=10_000)
    _publish(bundle, bus, _activity(time.time_ns())[:40])
    page.wait_for_function(
        "([b, r]) => document.getElementById('bus').innerText !== b && document.getElementById('rows').innerText !== r",
        arg=[bus_before, rows_before],
        timeout=10_000,
    )

    # Host: CPU and memory per source
    page.goto(base + "/host?source=edge-agent")
    assert "%" in check_chart(page, "chart-cpu", "%")
    assert "iB" in check_chart(page, "chart-memory", "iB")
    page.screenshot(path=str(shots / "host-charts.png"), full_page=True)

    # SNMP: one interface's bits/s and utilisation; an interface polled once waits for its second poll
    page.goto(base + "/snmp?target=sw-e2e&if_index=1")
    assert "bit/s" in check_chart(page, "chart-if-bps", "bit/s")
    assert "%" in check_chart(page, "chart-if-util", "%")
    page.screenshot(path=str(shots / "snmp-charts.png"), full_page=True)
    page.goto(base + "/snmp?target=sw-new&if_index=3")
    page.wait_for_selector("#chart-if-bps[data-state=drawn]")
    assert "waiting for the second poll" in page.inner_text("#chart-if-bps .tchart-empty")

    # the charts fit a phone screen
    phone = browser.new_page(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    phone.context.add_cookies(page.context.cookies())
    for path in ("/", "/host?source=edge-agent", "/snmp?target=sw-e2e&if_index=1"):
        phone.goto(base + path)
        phone.wait_for_selector("figure.tchart[data-state=drawn]")
        overflow = phone.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} overflows a phone screen by {overflow}px"
    phone.close()

    # Collectors and Agents pages: their numbers move without a reload
    page.goto(base + "/collectors")
    cell = 'tr[data-name="heartbeat"] [data-live="events"]'
    before = page.inner_text(cell)
    page.wait_for_function(
        "([s, b]) => document.querySelector(s).textContent !== b", arg=[cell, before], timeout=10_000
    )
    page.goto(base + "/agents")
    rate = 'tr[data-name="edge-agent"] [data-live="events_rate"]'
    page.wait_for_function("() => document.body.dataset.liveTopic === 'agents'", timeout=15_000)
    before = page.inner_text(rate)
    _publish(bundle, bus, _activity(time.time_ns()))  # more events in the last minutes: a higher rate
    page.wait_for_function(
        "([s, b]) => document.querySelector(s).textContent !== b", arg=[rate, before], timeout=15_000
    )

    # the Processes page appends new execs as they come
    page.goto(base + "/processes")
    rows = page.locator("#execs tbody tr[data-seq]").count()
    page.wait_for_function("() => document.body.dataset.stream === 'open'")  # before the next exec
    now = time.time_ns()  # stamped now: the newest 50 on the page may all be this box's own, minutes newer
    _publish(bundle, bus, [_exec(now + i, 200 + i) for i in range(3)])
    page.wait_for_function(
        "n => document.querySelectorAll('#execs tbody tr[data-seq]').length > n", arg=rows, timeout=10_000
    )
    # and so does the agent's host page: its own new execs only, each row as the page renders it (the
    # event's link, a time the browser shows in its zone, the PID in its column)
    page.goto(base + "/hosts/edge-agent")
    rows = page.locator("#host-execs tbody tr[data-seq]").count()
    assert rows > 0
    page.wait_for_function("() => document.body.dataset.stream === 'open'")
    now = time.time_ns()
    _publish(bundle, bus, [_exec(now + i, 300 + i) for i in range(3)])
    page.wait_for_function(
        "n => document.querySelectorAll('#host-execs tbody tr[data-seq]').length >= n + 3",
        arg=rows,
        timeout=10_000,
    )
    fresh = page.locator("#host-execs tbody tr[data-seq]").evaluate_all(
        """rs => rs.slice(0, 3).map((r) => ({pid: r.cells[2].textContent, event: r.cells[1].querySelector("a").href,
             time: r.cells[0].querySelector("time[datetime][data-local]") !== null}))"""
    )
    assert sorted(int(r["pid"]) for r in fresh) == [300, 301, 302], fresh
    assert all("/events/" in r["event"] and r["time"] for r in fresh), fresh
    assert page.locator("#host-execs tbody tr[data-seq]").count() == rows + 3  # nothing of another source
    assert not errors, errors
    app.signal(signal.SIGTERM)
    assert app.wait_exit(timeout=10) == 0
