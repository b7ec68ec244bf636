"""Dashboard and API under load: open-loop 200 requests/s over the main API endpoints while the bus
ingests 10,000 events/s; overview time to first paint in chromium; /metrics scrape time."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import FCP_JS, free_port, launch_chromium, paced, session_cookies, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RPS = 200
SECONDS = 15
ENDPOINTS = [
    "/api/v1/overview",
    "/api/v1/events?limit=50",
    "/api/v1/collectors",
    "/api/v1/flows?limit=50",
    "/api/v1/events?kind=flow&limit=50",
    "/api/v1/audit?limit=50",
]


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


async def open_loop(base: str, cookies: dict[str, str]) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=10) as client:

        async def one(path: str, scheduled: float) -> None:
            nonlocal errors
            try:
                r = await client.get(path)
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(
                time.perf_counter() - scheduled
            )  # from the scheduled time: no coordinated omission

        await paced(RPS, SECONDS, lambda i, scheduled: one(ENDPOINTS[i % len(ENDPOINTS)], scheduled))
    return latencies, errors


def first_paint(base: str, cookies: dict[str, str]) -> list[float]:
    """The overview's first contentful paint, 5 loads in one browser context (its assets cached after
    the first); benchmarks/bench_pages.py measures cold and warm loads of several pages apart."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as pw:
        b = launch_chromium(pw)
        ctx = b.new_context()
        ctx.add_cookies(session_cookies(base, cookies))
        page = ctx.new_page()
        for _ in range(5):
            page.goto(base + "/")
            out.append(float(page.evaluate(FCP_JS)))
        b.close()
    return out


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-web-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    try:
        data = work / "data"
        subprocess.run(
            [PY, "-m", "amoskys", "certs", "init", "--data-dir", str(data)],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        bus_port = free_port()
        subprocess.run(
            [
                PY,
                "-m",
                "amoskys",
                "agents",
                "enroll",
                "lg",
                "--role",
                "loadgen",
                "--out",
                str(work / "lg"),
                "--data-dir",
                str(data),
                "--bus-address",
                f"127.0.0.1:{bus_port}",
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        app = subprocess.Popen(
            [
                PY,
                "-m",
                "amoskys",
                "run",
                "--data-dir",
                str(data),
                "--web-listen",
                "127.0.0.1:0",
                "--bus-listen",
                f"127.0.0.1:{bus_port}",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            info = wait_ready(app, data)
            base = f"http://127.0.0.1:{info['web']['port']}"
            password = (data / "admin-password").read_text().strip()
            r = httpx.post(base + "/api/v1/login", json={"name": "admin", "password": password})
            cookies = dict(r.cookies)
            load = subprocess.Popen(
                [
                    PY,
                    "-m",
                    "amoskys",
                    "loadgen",
                    "--identity",
                    str(work / "lg"),
                    "--bus",
                    f"127.0.0.1:{bus_port}",
                    "--events",
                    str(10_000 * (SECONDS + 10)),
                    "--batch",
                    "100",
                    "--rate",
                    "10000",
                    "--quiet",
                    "--json",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(3)  # let ingestion reach its rate first
            latencies, errors = asyncio.run(open_loop(base, cookies))
            scrape = []
            with httpx.Client(base_url=base) as client:  # httpx.get() would time its own SSL setup too
                for _ in range(50):
                    t0 = time.perf_counter()
                    client.get("/metrics")
                    scrape.append(time.perf_counter() - t0)
            fcp = first_paint(base, cookies)
            out, _ = load.communicate(timeout=300)
            ingest = json.loads(out.strip().splitlines()[-1])
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=15)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ms = [x * 1000 for x in latencies]
    print("## Dashboard and API (while the bus ingests ~10,000 events/s)\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| API, open loop {RPS} req/s for {SECONDS} s over {len(ENDPOINTS)} endpoints: p50 / p99 | "
        f"{pct(ms, 50):.1f} ms / {pct(ms, 99):.1f} ms ({errors} errors of {len(ms)}) | p99 < 50 ms |"
    )
    print(
        f"| bus ingest during the run (offered 10,000/s) | {ingest['events_per_second']:,.0f} events/s, ack p99 "
        f"{ingest['ack_p99_ms']:.1f} ms | |"
    )
    print(
        f"| overview first contentful paint (chromium, median of 5 loads in one context: cached after the first; cold loads: bench_pages) | {statistics.median(fcp):.0f} ms | < 300 ms |"
    )
    sm = [x * 1000 for x in scrape]
    print(
        f"| /metrics scrape, default collectors (50 scrapes): p50 / max | {statistics.median(sm):.1f} ms / "
        f"{max(sm):.1f} ms | < 25 ms |"
    )


if __name__ == "__main__":
    main()
