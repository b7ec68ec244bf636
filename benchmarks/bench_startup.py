"""`amoskys run`: time to ready, idle CPU and RSS, and what the running appliance imports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import cpu_seconds, rss_mb

ROOT = Path(__file__).resolve().parent.parent
IDLE_SECONDS = int(os.environ.get("AMOSKYS_BENCH_IDLE_SECONDS", "60"))


def start(data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    cmd = [
        sys.executable,
        "-m",
        "amoskys",
        "run",
        "--data-dir",
        str(data_dir),
        "--web-listen",
        "127.0.0.1:0",
        "--bus-listen",
        "127.0.0.1:0",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)


def wait_ready(proc: subprocess.Popen[bytes], data_dir: Path, deadline: float = 30.0) -> float:
    t0 = time.monotonic()
    run_json = data_dir / "run.json"
    while time.monotonic() - t0 < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"amoskys exited with {proc.returncode}")
        if run_json.exists():
            port = json.loads(run_json.read_text())["web"]["port"]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError):
                pass
        time.sleep(0.005)
    raise SystemExit("not ready in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def imports() -> tuple[int, float, bool]:
    """Modules the appliance's code imports, their total import time, and whether scapy is among them."""
    code = "import amoskys.app, amoskys.cli, sys; print(int('scapy' in sys.modules))"
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("import time:") and "|" in ln]
    top = [ln for ln in lines[1:] if not ln.split("|")[2].startswith("  ")]
    total_us = sum(int(ln.split("|")[1]) for ln in top)
    return len(lines) - 1, total_us / 1e6, r.stdout.strip() == "1"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-"))
    try:
        first, reused = [], []
        for i in range(5):
            d = work / f"d{i}"
            p = start(d)
            first.append(wait_ready(p, d))
            stop(p)
            p = start(d)
            reused.append(wait_ready(p, d))
            stop(p)
        d = work / "idle"
        p = start(d)
        wait_ready(p, d)
        time.sleep(2)  # let start-up settle before measuring idle
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        rss_samples = []
        while time.monotonic() - t0 < IDLE_SECONDS:
            time.sleep(1)
            rss_samples.append(rss_mb(p.pid))
        cpu_pct = 100 * (cpu_seconds(p.pid) - c0) / (time.monotonic() - t0)
        stop(p)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_mod, import_s, scapy = imports()
    print("## Appliance start-up and idle (`amoskys run`, embedded defaults)\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| time to ready, first run (creates CA, certs, identity), median of 5 | {statistics.median(first):.2f} s (max {max(first):.2f}) | < 2 s |"
    )
    print(
        f"| time to ready, later runs, median of 5 | {statistics.median(reused):.2f} s (max {max(reused):.2f}) | < 2 s |"
    )
    print(f"| idle CPU over {IDLE_SECONDS} s | {cpu_pct:.2f}% of one core | < 1% |")
    print(f"| idle RSS (max over {IDLE_SECONDS} s) | {max(rss_samples):.1f} MB | < 60 MB |")
    print(f"| modules imported by amoskys.app + cli | {n_mod} ({import_s:.2f} s of import time) | |")
    print(f"| scapy imported by the running appliance | {'YES' if scapy else 'no'} | no |")


if __name__ == "__main__":
    main()
