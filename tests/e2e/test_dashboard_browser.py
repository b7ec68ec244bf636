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

from support import ROOT, amoskys, free_port, require_tool

pytestmark = [pytest.mark.e2e, pytest.mark.needs_tool]  # chromium

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PAGES = [
    "/",
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
    page.fill("#name", "admin")
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_url(base + "/")

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
    body = json.loads(page.inner_text("#body"))
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
