"""Dashboard page weight and first paint: Overview, Flows, the appliance's own host page and a LAN
device's page, in Debian's chromium, against a real appliance with real data.

    .venv/bin/python benchmarks/bench_pages.py [--loads N] [--urls]

Needs root (a network namespace and a veth pair, removed afterwards) and ip. The appliance runs its
default collectors plus the flow collector and the ARP sweep on the capture end of a veth pair; a peer
in the namespace holds TCP conversations with this end, so there are flows, a host (the appliance's
heartbeats) and a device (the peer, found by the sweep). For each page: the first contentful paint of
N cold loads (a fresh browser context each: nothing cached, no open connection), of N warm loads (the
same context again: its assets cached), the bytes and requests of a cold load (until its charts are
drawn), the browser's time to the HTML's first byte, and the server's HTML response time measured
with a plain HTTP client; and the same for /healthz, a bare JSON answer with no style sheet or script:
what a fresh browser context costs before any page of ours.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "collectors" / "flow"))

import httpx  # noqa: E402
from common import FCP_JS, launch_chromium, session_cookies, wait_ready  # noqa: E402

from flow_veth import Veth, address_veth, mac_of, tcp_pair, tcp_talk, veth_pair  # noqa: E402

PY = sys.executable
#: a cold load is measured once every chart on the page is drawn (the Overview and the host page have them)
CHARTS_DRAWN = """() => Array.from(document.querySelectorAll('figure.tchart'))
    .every((f) => f.dataset.state === 'drawn')"""
#: after a load: the HTML's time to first byte, and what went over the wire so far (a response from the
#: browser's cache has a transferSize of 0; the live-update stream is still open, so not listed)
TIMINGS_JS = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const fetched = [nav, ...performance.getEntriesByType('resource')].filter((r) => r.transferSize > 0);
    return {
        ttfb: nav.responseStart - nav.requestStart,
        html_bytes: nav.transferSize,
        bytes: fetched.reduce((n, r) => n + r.transferSize, 0),
        fetched: fetched.map((r) => r.name),
    };
}"""


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def until(what: str, check: Any, timeout: float = 60) -> Any:
    """Poll ``check()`` until it returns something true; give up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def real_data(client: httpx.Client, veth: Veth, here: str, peer: str, log: Path) -> None:
    """TCP conversations between the peer and this end until the flows, the peer as a device (the ARP
    sweep) and the appliance's heartbeat are stored."""
    until(  # the capture and the sweep open their sockets after ready: traffic before is not seen
        "the capture and the ARP sweep to start",
        lambda: all(f in log.read_text() for f in ("flow_capture_started", "discovery_started")),
    )
    for sizes in ([1000, 20_000], [500, 4000, 30_000], [100] * 20):
        _, client_sock, listener = tcp_pair("", here, veth.netns, peer)
        tcp_talk(client_sock, listener, sizes)

    def search(q: str) -> dict[str, Any]:
        answer: dict[str, Any] = client.get(f"/api/v1/search?q={quote(q)}").json()
        return answer

    until("the flows to the peer", lambda: len(search(peer)["flows"]) >= 3)
    until("the peer as a device", lambda: search(peer)["devices"])


def measure(browser: Any, base: str, cookies: dict[str, str], path: str, loads: int) -> dict[str, Any]:
    """``loads`` cold loads of ``path`` (a fresh context each), then ``loads`` warm ones in the last."""
    cold: list[float] = []
    warm: list[float] = []
    ttfb: list[float] = []
    first: dict[str, Any] = {}
    ctx = None
    for _ in range(loads):
        if ctx is not None:
            ctx.close()
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        ctx.add_cookies(session_cookies(base, cookies))
        page = ctx.new_page()
        page.goto(base + path)
        cold.append(float(page.evaluate(FCP_JS)))
        page.wait_for_function(CHARTS_DRAWN)
        timings = page.evaluate(TIMINGS_JS)
        ttfb.append(float(timings["ttfb"]))
        first = first or timings
    assert ctx is not None
    page = ctx.pages[0]
    for _ in range(loads):
        page.goto(base + path)
        warm.append(float(page.evaluate(FCP_JS)))
        page.wait_for_function(CHARTS_DRAWN)
    again = page.evaluate(TIMINGS_JS)
    ctx.close()
    return {
        "cold": cold,
        "warm": warm,
        "ttfb": ttfb,
        "html_bytes": first["html_bytes"],
        "bytes": first["bytes"],
        "requests": len(first["fetched"]),
        "urls": first["fetched"],
        "warm_bytes": again["bytes"],
        "warm_requests": len(again["fetched"]),
    }


def server_times(client: httpx.Client, path: str, n: int = 20) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"GET {path}: {r.status_code}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=7, help="cold and warm loads per page")
    parser.add_argument("--urls", action="store_true", help="list what each page fetched when cold")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise SystemExit("needs root and ip: a veth pair in a network namespace carries the real traffic")
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-pages-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    results: dict[str, dict[str, Any]] = {}
    try:
        with veth_pair() as veth:
            here, peer = address_veth(veth)
            peer_mac = mac_of(veth.netns, veth.peer)
            cfg = work / "amoskys.toml"
            cfg.write_text(
                f'[collectors.flow]\ninterface = "{veth.capture}"\n'
                "idle_timeout_seconds = 1.0\ntcp_idle_timeout_seconds = 1.0\ntcp_end_linger_seconds = 0.5\n"
                f'[collectors.discovery]\ninterface = "{veth.capture}"\nsubnets = ["{here}/29"]\n'
                "neighbour_table_interval_seconds = 1.0\n"
            )
            data, log = work / "data", work / "log"
            with open(log, "wb") as out:
                app = subprocess.Popen(
                    [
                        *(PY, "-m", "amoskys", "run", "--config", str(cfg), "--data-dir", str(data)),
                        *("--web-listen", "127.0.0.1:0", "--bus-listen", "127.0.0.1:0"),
                    ],
                    cwd=ROOT,
                    env={**env, "AMOSKYS_LOG_LEVEL": "info"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                info = wait_ready(app, data)
                base = f"http://127.0.0.1:{info['web']['port']}"
                password = (data / "admin-password").read_text().strip()
                with httpx.Client(base_url=base, timeout=30) as client:
                    r = client.post("/api/v1/login", json={"name": "admin", "password": password})
                    r.raise_for_status()
                    cookies = dict(r.cookies)
                    real_data(client, veth, here, peer, log)
                    host = f"/hosts/{quote(info['name'])}"
                    until("the appliance's first heartbeat", lambda: client.get(host).status_code == 200)
                    pages = {
                        "browser floor": "/healthz",
                        "Overview": "/",
                        "Flows": "/flows",
                        "host (this box)": host,
                        "device (the peer)": f"/devices/{quote(peer_mac)}",
                    }
                    with sync_playwright() as pw:
                        browser = launch_chromium(pw)
                        try:
                            for name, path in pages.items():
                                results[name] = measure(browser, base, cookies, path, args.loads)
                        finally:
                            browser.close()
                    for name, path in pages.items():
                        results[name]["server"] = server_times(client, path)
                        results[name]["path"] = path
            finally:
                app.send_signal(signal.SIGTERM)
                app.wait(timeout=15)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.loads, args.urls)


def report(results: dict[str, dict[str, Any]], loads: int, urls: bool) -> None:
    print("## Dashboard pages: first paint and weight (real appliance, real traffic)\n")
    print(
        f"Chromium (headless, Debian), {loads} cold loads per page (a fresh browser context each: nothing "
        f"cached, no open connection) and {loads} warm ones (the same context again). The appliance runs its "
        "own collectors plus flow capture and the ARP sweep on a veth pair whose peer holds TCP conversations "
        "with it: the flows, the host (this box's heartbeats) and the device (the peer) are its real data. "
        "Bytes and requests: what went over the wire until the page's charts were drawn (headers included; "
        "the live-update stream, still open, not counted). Server: the HTML's response time from a plain "
        "HTTP client (20 requests). `/healthz` (a bare JSON answer: no style sheet, no script) is the "
        "browser's own floor for a fresh context.\n"
    )
    print(
        "| page | cold FCP p50 / max | warm FCP p50 / max | cold: bytes / requests | warm: bytes / requests "
        "| HTML first byte in the browser, p50 | server HTML p50 / max (size) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} (`{r['path']}`) "
            f"| {statistics.median(r['cold']):.0f} / {max(r['cold']):.0f} ms "
            f"| {statistics.median(r['warm']):.0f} / {max(r['warm']):.0f} ms "
            f"| {r['bytes'] / 1024:.1f} KiB / {r['requests']} "
            f"| {r['warm_bytes'] / 1024:.1f} KiB / {r['warm_requests']} "
            f"| {statistics.median(r['ttfb']):.0f} ms "
            f"| {statistics.median(r['server']):.1f} / {max(r['server']):.1f} ms ({r['html_bytes'] / 1024:.1f} KiB) |"
        )
    print("\nTarget: cold first contentful paint p50 < 300 ms on each page.")
    if urls:
        for name, r in results.items():
            print(f"\n{name}, cold: " + ", ".join(u.split("/", 3)[-1] or "/" for u in r["urls"]))


if __name__ == "__main__":
    main()
