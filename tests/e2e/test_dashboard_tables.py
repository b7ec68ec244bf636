"""The dashboard's tables in a real browser (Debian's chromium, driven by Playwright) against a real
appliance with real data: flows and a LAN device from live capture and an ARP sweep on a veth pair,
real processes, heartbeats. Every page at desktop and phone width: no horizontal page overflow, no text
broken inside a word, number, PID, port or enum (measured in the browser); the header's search finds an
IP, a MAC and a process by name; a keyset page stays the same while ingest goes on."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from chart_checks import check_chart
from chromium import CHROMIUM_ARGS, log_in
from support import require_root, require_tool, wait_for

sys.path.insert(0, str(Path(__file__).parents[1] / "collectors" / "flow"))
sys.path.insert(0, str(Path(__file__).parents[1] / "collectors" / "snmp"))
from snmp_agents import RECORDED, SnmpSim, device_snmprec, free_udp_port

from flow_veth import address_veth, mac_of, tcp_pair, tcp_talk, veth_pair

pytestmark = [pytest.mark.e2e, pytest.mark.needs_tool, pytest.mark.needs_root]

PAGES = [
    "/",
    "/alerts",
    "/alerts/rules",
    "/collectors",
    "/events",
    "/processes",
    "/host",
    "/flows",
    "/devices",
    "/snmp",
    "/agents",
    "/users",
    "/audit",
    "/account",
]
WIDTHS = [(1280, 800), (390, 844)]

# Text broken inside a word: a run of non-space characters whose glyphs sit on more than one line; and
# (the cells' own measure) a table cell whose text has no space but whose content spans lines.
BROKEN_WORDS = """() => {
  const bad = [];
  // lines: boxes that do not overlap vertically (a badge's padded box and its text are one line)
  const lines = (rects) => {
    const boxes = rects.filter((r) => r.width > 0 && r.height > 0).sort((a, b) => a.top - b.top);
    let n = 0, bottom = -Infinity;
    for (const r of boxes) {
      if (r.top >= bottom - 1) { n += 1; bottom = r.bottom; } else bottom = Math.max(bottom, r.bottom);
    }
    return n;
  };
  const shownText = (node) => node.parentElement && node.parentElement.checkVisibility({ contentVisibilityAuto: true });
  const scope = document.querySelectorAll("main td, main th, main dd, main dt, main h1, main h2, main p, main li");
  for (const el of scope) {
    const cellRects = [];
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!shownText(node)) continue;  // in a closed <details>: not on screen
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const rects = Array.from(range.getClientRects());
        cellRects.push(...rects);
        if (lines(rects) > 1) bad.push(m[0]);
      }
    }
    const shown = el.innerText.trim();  // as rendered: a <br> is a line break, not a wrap
    const items = el.querySelector("button, select, input");  // controls: separate items, not one text
    if ((el.tagName === "TD" || el.tagName === "TH") && shown && !/\\s/.test(shown) && !items) {
      if (lines(cellRects) > 1) bad.push("cell: " + shown);
    }
  }
  return bad.slice(0, 10);
}"""


def test_tables_search_and_pages_with_real_data(appliance_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chromium = require_tool("chromium", "chromium")
    require_tool("ip", "iproute2")
    require_root("live capture and the ARP sweep need a veth pair in a network namespace")

    require_tool("snmpget", "snmp")
    # SNMP agents: a recorded Linux host, and a switch whose counters move (snmpsim)
    sim_data = tmp_path / "snmpsim" / "data"
    sim_data.mkdir(parents=True)
    shutil.copy(RECORDED / "linux-full-walk.snmprec", sim_data / "linux-full-walk.snmprec")
    (sim_data / "switch24.snmprec").write_text(device_snmprec("switch24", 24, octets_per_second=125_000))
    sim = SnmpSim(sim_data, [free_udp_port()]).start("switch24")
    try:
        _with_sim(appliance_factory, tmp_path, chromium, sim)
    finally:
        sim.stop()


def _with_sim(appliance_factory, tmp_path: Path, chromium: str, sim: SnmpSim) -> None:  # type: ignore[no-untyped-def]
    snmp = "[collectors.snmp]\ninterval_seconds = 1.5\ndeadline_seconds = 1.5\n"
    for name in ("switch24", "linux-full-walk"):
        secret = tmp_path / f"community-{name}"
        secret.write_text(name + "\n")
        secret.chmod(0o600)
        snmp += (
            f'[[collectors.snmp.targets]]\nname = "{name}"\naddress = "127.0.0.1"\nport = {sim.port}\n'
            f'community_file = "{secret}"\n'
        )
    with veth_pair() as veth:
        here, peer = address_veth(veth)
        peer_mac = mac_of(veth.netns, veth.peer)
        cfg = tmp_path / "amoskys.toml"
        cfg.write_text(
            "[collectors.heartbeat]\ninterval_seconds = 1\n[collectors.host]\ninterval_seconds = 1\n"
            f'[collectors.flow]\ninterface = "{veth.capture}"\n'
            "idle_timeout_seconds = 1.0\ntcp_idle_timeout_seconds = 1.0\ntcp_end_linger_seconds = 0.5\n"
            f'[collectors.discovery]\ninterface = "{veth.capture}"\nsubnets = ["{here}/29"]\n'
            "neighbour_table_interval_seconds = 1.0\n" + snmp
        )
        # a process with a name of its own: its exec is in the history, and it runs on
        probe = tmp_path / "tablesprobe"
        shutil.copy("/bin/sleep", probe)
        app = appliance_factory("--config", str(cfg))
        app.wait_ready()
        base = app.web_url
        # the capture and the ARP sweep open their sockets after ready: traffic sent before is not seen
        wait_for(
            lambda: all(
                fact in app.log_path.read_text() for fact in ("flow_capture_started", "discovery_started")
            ),
            timeout=20,
            interval=0.05,
            what="the capture and the ARP sweep to start",
        )
        sleeper = subprocess.Popen([str(probe), "300"])
        try:
            conversation, client, listener = tcp_pair("", here, veth.netns, peer)
            tcp_talk(client, listener, [1000, 20_000])
            _browse(app, base, chromium, peer, peer_mac, conversation.server[1])
        finally:
            sleeper.kill()
            sleeper.wait(timeout=10)
        app.signal(signal.SIGTERM)
        assert app.wait_exit(timeout=10) == 0


def _browse(app, base: str, chromium: str, peer: str, peer_mac: str, port: int) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    password = (app.data_dir / "admin-password").read_text().strip()
    shots = Path(os.environ["AMOSKYS_SCREENSHOTS_DIR"]) if os.environ.get("AMOSKYS_SCREENSHOTS_DIR") else None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            log_in(page, base, password)

            def search(q: str) -> dict:  # type: ignore[type-arg]
                return page.request.get(f"{base}/api/v1/search?q={quote(q)}").json()  # type: ignore[no-any-return]

            # the real data is in: the flow to the peer, the peer as a device (ARP), the probe's exec
            wait_for(lambda: search(peer)["flows"], timeout=20, interval=0.2, what="the flow to the peer")
            wait_for(
                lambda: search(peer_mac)["devices"], timeout=30, interval=0.2, what="the peer as a device"
            )
            wait_for(
                lambda: search("tablesprobe")["execs"], timeout=20, interval=0.2, what="the probe's exec"
            )
            wait_for(  # a rate needs two polls
                lambda: any(
                    i.get("in_bps")
                    for i in page.request.get(f"{base}/api/v1/snmp/targets/switch24/interfaces").json()[
                        "items"
                    ]
                ),
                timeout=20,
                interval=0.2,
                what="a rated SNMP poll",
            )

            # the header's search box: an IP, a MAC, a process by name
            page.goto(base + "/devices")
            page.fill("#global-search", peer)
            page.press("#global-search", "Enter")
            page.wait_for_url(f"**/search?q={peer}")
            assert peer_mac in page.inner_text("#search-devices")
            flows = page.inner_text("#search-flows")
            assert f"{peer}:{port}" in flows and "TCP" in flows
            page.fill("#global-search", peer_mac.upper())
            page.press("#global-search", "Enter")
            page.wait_for_url("**/search?q=**")
            assert peer in page.inner_text("#search-devices")
            page.fill("#global-search", "tablesprobe")
            page.press("#global-search", "Enter")
            page.wait_for_url("**/search?q=tablesprobe")
            assert "tablesprobe" in page.inner_text("#search-execs")
            assert "tablesprobe" in page.inner_text("#search-processes")

            # a flow's addresses link on: the peer's address to its flows, the device and host names to their pages
            page.goto(f"{base}/flows?ip={peer}")
            row = page.locator("#flows tbody tr").first
            assert row.locator("td.proto").inner_text().startswith("TCP")
            assert row.locator(f'td.dst a.addr[href="/flows?ip={peer}"]').count() == 1
            assert row.locator("td.src a.peer.host").count() == 1  # this box: its heartbeat names the address
            row.locator("td.dst a.peer.device").click()
            page.wait_for_url("**/devices/**")
            assert peer_mac in page.inner_text("#device-mac")
            page.go_back()
            page.locator("#flows tbody tr td.src a.peer.host").first.click()
            page.wait_for_url("**/hosts/**")
            assert page.locator("#host-facts").count() == 1

            # a keyset page stays the same while events keep coming in (heartbeats every second)
            page.goto(base + "/events?limit=20")
            first = page.locator("#events tbody tr").first.get_attribute("data-seq")
            page.click("#older")
            page.wait_for_url("**before=**")
            older_url = page.url
            rows = page.locator("#events tbody tr").evaluate_all("rs => rs.map(r => r.dataset.seq)")
            assert len(rows) == 20
            wait_for(
                lambda: (
                    page.request.get(f"{base}/api/v1/events?limit=1").json()["items"][0]["store_seq"]
                    > int(first or 0) + 5
                ),
                timeout=20,
                interval=0.2,
                what="more events stored",
            )
            page.goto(older_url)
            assert page.locator("#events tbody tr").evaluate_all("rs => rs.map(r => r.dataset.seq)") == rows

            # every page, at desktop and phone width: no page overflow, no word broken across lines; the
            # joined pages too: this box's own host page (as the Agents page links it), the peer's device
            # page by MAC and by address
            flow_seq = search(peer)["flows"][0]["store_seq"]
            page.goto(base + "/agents")
            own_host = page.locator("main p a.host-link").get_attribute("href") or ""
            assert own_host.startswith("/hosts/"), own_host
            pages = [
                *PAGES,
                "/snmp?target=linux-full-walk",
                f"/search?q={peer}",
                f"/search?q={quote(peer_mac)}",
                f"/events/{flow_seq}",
                "/processes?q=tablesprobe",
                own_host,
                f"/devices/{quote(peer_mac)}",
                f"/devices/{peer}",
            ]
            # the charts of the joined pages (the device page has none): axes, and a value on hover
            charts = {own_host: [("chart-cpu", "%"), ("chart-memory", "iB")]}
            for width, height in WIDTHS:
                page.set_viewport_size({"width": width, "height": height})
                for path in pages:
                    page.goto(base + path)
                    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 1, f"{path} at {width}px overflows the page by {overflow}px"
                    broken = page.evaluate(BROKEN_WORDS)
                    assert not broken, f"{path} at {width}px breaks inside words: {broken}"
                    if width >= 1280:
                        for fig, unit in charts.get(path, []):
                            assert unit in check_chart(page, fig, unit), (path, fig)
                    if shots is not None:
                        name = re.sub(r"[^a-z0-9]+", "_", path.split("?")[0]).strip("_") or "overview"
                        page.screenshot(path=str(shots / f"tables-{name}-{width}.png"))
                # a table wider than a phone says so, and its actions stay on screen
                if width < 500:
                    page.goto(base + "/collectors")
                    assert page.locator(".scroll-hint").first.is_visible()
                    button = page.locator('button[data-collector="heartbeat"]').first
                    box = button.bounding_box()
                    assert box and box["x"] + box["width"] <= width, box
            # SNMP in units: uptime in days/hours/minutes, speeds and rates in bit/s
            page.goto(base + "/snmp?target=switch24")
            uptimes = page.locator("#snmp-targets td.uptime").all_inner_texts()
            assert uptimes and all(re.fullmatch(r"(\d+d )?(\d+h )?\d+[ms]", u) for u in uptimes), uptimes
            assert page.locator("#snmp-ifs td.speed").first.inner_text().endswith("b/s")
            rates = page.locator("#snmp-ifs td.rate-in").all_inner_texts()
            assert any(r.endswith(("kb/s", "Mb/s")) for r in rates), rates

            # times in the browser's zone, the ISO instant on hover
            there = browser.new_context(
                timezone_id="Asia/Kolkata", storage_state=page.context.storage_state()
            )
            tz_page = there.new_page()
            tz_page.goto(base + "/events")
            stamp = tz_page.locator("#events tbody time").first
            iso, shown = stamp.get_attribute("title") or "", stamp.inner_text()
            local = tz_page.evaluate(
                "iso => { const d = new Date(iso), p = (n) => String(n).padStart(2, '0');"
                " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} `"
                " + `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; }",
                iso,
            )
            assert iso.endswith("Z") and shown == local and shown[11:16] != iso[11:16], (iso, shown)
            there.close()
            assert not errors, errors
        finally:
            browser.close()
