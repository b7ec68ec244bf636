"""Helpers the benchmark scripts share: ports, a child's CPU time and memory from /proc, the open-loop
request schedule, waiting for a started appliance, and Debian's chromium with the paint timings a page
reports."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from typing import Any

from chromium import CHROMIUM_ARGS

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def paced(rps: int, seconds: int, fire: Callable[[int, float], Coroutine[Any, Any, None]]) -> None:
    """Open loop: request i is started at its scheduled time t0 + i / rps, whether or not the earlier
    ones were answered (no coordinated omission); returns when every one has finished.
    ``fire(i, scheduled)`` makes request i."""
    tasks = []
    t0 = time.perf_counter()
    for i in range(rps * seconds):
        scheduled = t0 + i / rps
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, scheduled)))
    await asyncio.gather(*tasks)


def wait_ready(proc: subprocess.Popen[bytes], data: Path, timeout: float = 30) -> dict[str, Any]:
    """run.json of the `amoskys run` child ``proc`` (data dir ``data``) once its /readyz answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"appliance exited with {proc.returncode}")
        try:
            info: dict[str, Any] = json.loads((data / "run.json").read_text())
            if info["pid"] == proc.pid:
                with urllib.request.urlopen(f"http://127.0.0.1:{info['web']['port']}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return info
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise SystemExit("appliance not ready")


#: Debian's chromium under Playwright, no browser download (DESIGN.md, "Verified on this kind of machine")
CHROMIUM = "/usr/bin/chromium"

#: In the page: its first contentful paint in ms from the navigation's start (-1: none within 5 s)
FCP_JS = """() => new Promise((resolve) => {
    new PerformanceObserver((list) => {
        const e = list.getEntries().find((x) => x.name === 'first-contentful-paint');
        if (e) resolve(e.startTime);
    }).observe({ type: 'paint', buffered: true });
    setTimeout(() => resolve(-1), 5000);
})"""


def launch_chromium(pw: Any) -> Any:
    """A headless chromium browser from a running ``sync_playwright()``."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def session_cookies(base: str, cookies: dict[str, str]) -> list[dict[str, str]]:
    """``cookies`` (name → value) for a browser context's add_cookies, scoped to ``base``'s host."""
    host = base.split("//")[1].split(":")[0]
    return [{"name": k, "value": v, "domain": host, "path": "/"} for k, v in cookies.items()]
