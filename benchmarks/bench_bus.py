"""EventBus throughput and ack latency: loadgen (another process) → mTLS gRPC → signed batches →
SQLite FULL → ack; 500 concurrent publishers; and the design we replace as the baseline."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import cpu_seconds, free_port, rss_mb

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PUBLISHERS = int(os.environ.get("AMOSKYS_BENCH_PUBLISHERS", "500"))


def amoskys(*args: str) -> str:
    return subprocess.run(
        [PY, "-m", "amoskys", *args], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout


def wait_ready(proc: subprocess.Popen[bytes], data: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"appliance exited with {proc.returncode}")
        try:
            info = json.loads((data / "run.json").read_text())
            if info["pid"] == proc.pid:
                with urllib.request.urlopen(f"http://127.0.0.1:{info['web']['port']}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    raise SystemExit("appliance not ready")


def enroll_many(data: Path, out: Path, n: int) -> None:
    from amoskys.config import StoreConfig
    from amoskys.metrics import Metrics
    from amoskys.pki.enrolment import enroll_agent
    from amoskys.pki.layout import ApplianceCredentials
    from amoskys.store import Store

    creds = ApplianceCredentials.in_dir(data / "pki")

    async def run() -> None:
        store = await Store.open(data / "events.db", StoreConfig(), Metrics())
        try:
            for i in range(n):
                b = enroll_agent(
                    creds,
                    name=f"pub-{i:03d}",
                    role="agent",
                    trust_domain="amoskys.local",
                    bus_address="",
                    out_dir=out / f"pub-{i:03d}",
                )
                await store.state.enroll_identity(b.name, "agent", b.public_key_raw, str(b.cert_serial))
        finally:
            await store.close()

    asyncio.run(run())


def loadgen(bundle: Path, port: int, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [
            PY,
            "-m",
            "amoskys",
            "loadgen",
            "--identity",
            str(bundle),
            "--bus",
            f"127.0.0.1:{port}",
            "--json",
            "--quiet",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def baseline(data: Path, bundle: Path, work: Path, n: int) -> float:
    port = free_port()
    server = subprocess.Popen(
        [
            PY,
            str(ROOT / "benchmarks" / "baseline_predecessor.py"),
            "serve",
            str(data / "pki"),
            str(work / "baseline.db"),
            str(port),
        ],
        cwd=ROOT,
    )
    try:
        out = subprocess.run(
            [
                PY,
                str(ROOT / "benchmarks" / "baseline_predecessor.py"),
                "publish",
                str(bundle),
                str(port),
                str(n),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        return float(out.strip())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-bus-"))
    try:
        data = work / "data"
        amoskys("certs", "init", "--data-dir", str(data))
        port = free_port()
        amoskys(
            "agents",
            "enroll",
            "loadgen",
            "--role",
            "loadgen",
            "--out",
            str(work / "loadgen"),
            "--data-dir",
            str(data),
            "--bus-address",
            f"127.0.0.1:{port}",
        )
        enroll_many(data, work / "pubs", PUBLISHERS)
        config = work / "bench.toml"
        # one publisher may use the whole box here: the per-source quota is not what is measured
        config.write_text("[bus]\nquota_events_per_second = 10000000\nquota_burst_events = 10000000\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
        app = subprocess.Popen(
            [
                PY,
                "-m",
                "amoskys",
                "run",
                "--config",
                str(config),
                "--data-dir",
                str(data),
                "--bus-listen",
                f"127.0.0.1:{port}",
                "--web-listen",
                "127.0.0.1:0",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        rows = []
        try:
            wait_ready(app, data)
            runs = [
                ("unary Publish, batch 1", ["--events", "3000", "--batch", "1", "--unary"]),
                ("batch 100", ["--events", "100000", "--batch", "100"]),
                ("batch 1000", ["--events", "200000", "--batch", "1000"]),
                (
                    "5,000 events/s offered, batch 100",
                    ["--events", "50000", "--batch", "100", "--rate", "5000"],
                ),
            ]
            for label, args in runs:
                c0, t0 = cpu_seconds(app.pid), time.monotonic()
                r = loadgen(work / "loadgen", port, *args)
                cpu = 100 * (cpu_seconds(app.pid) - c0) / (time.monotonic() - t0)
                rows.append((label, r, cpu, rss_mb(app.pid)))
            rss_before = rss_mb(app.pid)
            pubs = subprocess.Popen(
                [
                    PY,
                    str(ROOT / "benchmarks" / "publishers.py"),
                    str(work / "pubs"),
                    f"127.0.0.1:{port}",
                    "20",
                    "10",
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            if pubs.stdout is None or pubs.stdin is None or pubs.stdout.readline().strip() != "connected":
                raise SystemExit("publishers failed to connect")
            rss_connected = rss_mb(app.pid)
            c0 = cpu_seconds(app.pid)
            out, _ = pubs.communicate("go\n", timeout=600)
            many = json.loads(out.strip().splitlines()[-1])
            many_cpu = 100 * (cpu_seconds(app.pid) - c0) / many["seconds"]
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=15)
        base_rate = baseline(data, work / "loadgen", work, 1500)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        "## EventBus (`amoskys loadgen` in another process → mTLS gRPC → Ed25519-signed batch → SQLite FULL → ack)\n"
    )
    print("| run | events/s | ack p50 | ack p99 | retries | appliance CPU | appliance RSS | target |")
    print("|---|---|---|---|---|---|---|---|")
    targets = {
        "unary Publish, batch 1": "≥ 1,000/s",
        "batch 100": "≥ 30,000/s",
        "batch 1000": "≥ 50,000/s",
        "5,000 events/s offered, batch 100": "ack p99 ≤ 10 ms",
    }
    for label, r, cpu, rss in rows:
        print(
            f"| {label} | {r['events_per_second']:,.0f} | {r['ack_p50_ms']:.2f} ms | {r['ack_p99_ms']:.2f} ms | "
            f"{r['retries']} | {cpu:.0f}% | {rss:.0f} MB | {targets[label]} |"
        )
    batch100 = next(r for label, r, _, _ in rows if label == "batch 100")["events_per_second"]
    unary = rows[0][1]["events_per_second"]
    print(
        f"| baseline: the design we replace (RPC + fresh mTLS channel + SQLite connection + fsync per event) | "
        f"{base_rate:,.0f} | | | | | | |"
    )
    print(
        f"\nRatio to the baseline: batch 100 = {batch100 / base_rate:,.0f}×, unary = {unary / base_rate:,.1f}×.\n"
    )
    per_conn = (rss_connected - rss_before) * 1024 / max(1, many["publishers"])
    print(
        f"**{many['publishers']} concurrent publishers** on long-lived mTLS channels, 20 batches of 10 events each: "
        f"{many['events'] / many['seconds']:,.0f} events/s aggregate, {many['errors']} errors "
        f"(error rate {many['errors'] / (many['publishers'] * 20):.2%}), {many['retries']} retries; "
        f"appliance RSS {rss_before:.0f} → {rss_connected:.0f} MB once all connected "
        f"(≈ {per_conn:.0f} KiB per connection), appliance CPU {many_cpu:.0f}%."
    )


if __name__ == "__main__":
    main()
