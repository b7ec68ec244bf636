"""Detections end to end: exec → stored alert latency through a running `amoskys run` (root: the process
collector reads the netlink proc connector).

SAMPLES generated Sigma rules each match `sleep` run in its own working directory, beside bench_sigma's 120
rules in SigmaHQ's Linux style; the benchmark starts one such `sleep` at a time (a real process) and times
from just before its start until the alerts row of its rule is committed (read from the store's file,
polled every millisecond): the process collector's exec event, the group commit, the live fan-out,
evaluation, the Alert event and its commit. Twice: on a quiet appliance, and while `amoskys loadgen`
offers 7,000 events/s (1,000 of them exec events, which the engine evaluates like an agent's).
Knobs: AMOSKYS_BENCH_DETECT_SAMPLES (default 100), AMOSKYS_BENCH_DETECT_LOADED_SAMPLES (default 50).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

import bench_loop as bl
import bench_sigma

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = int(os.environ.get("AMOSKYS_BENCH_DETECT_SAMPLES", "100"))
LOADED_SAMPLES = int(os.environ.get("AMOSKYS_BENCH_DETECT_LOADED_SAMPLES", "50"))
LOAD_EVENTS_PER_SECOND = 7000  # loadgen's round of 7 kinds: 1,000 exec events/s
GOAL_P99_S = 1.0

RULE = """title: Benchmark {n}
id: {id}
status: test
description: Sleep started in the benchmark's directory {n}.
author: AMOSKYS benchmark
date: 2026-12-03
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/sleep'
        CurrentDirectory|endswith: '/amoskys-bench-{n}'
    condition: selection
level: low
"""

CONFIG = """
[detections]
sigma_paths = ["{rules}"]
[collectors.process]
mode = "netlink"
snapshot_interval_seconds = 3600.0
[collectors.host]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
"""


def wait_ready(data: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until `amoskys run` (data dir `data`) wrote its run.json (bench_sinks starts its own appliance)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"amoskys run exited with {proc.returncode}")
        try:
            info = json.loads((data / "run.json").read_text())
            if info.get("pid") == proc.pid:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise SystemExit("amoskys run was not ready in time")


def timed(conn: sqlite3.Connection, work: Path, rule_id: str, n: int) -> float:
    """Seconds from just before a marked `sleep` starts until its rule's alert row is committed (it lives
    0.2 s: long enough for the collector to read its working directory on a busy machine)."""
    t0 = time.monotonic()
    child = subprocess.Popen(["sleep", "0.2"], cwd=work / f"amoskys-bench-{n}")
    while not conn.execute("SELECT 1 FROM alerts WHERE rule_id = ?", (rule_id,)).fetchone():
        if time.monotonic() - t0 > 10:
            raise SystemExit(f"no alert for sample {n} within 10 s")
        time.sleep(0.001)
    took = time.monotonic() - t0
    child.wait()
    return took


def row(label: str, latencies: list[float], extra: str = "") -> str:
    latencies = sorted(latencies)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    verdict = "met" if p99 < GOAL_P99_S else "missed"
    return (
        f"| {label} | {len(latencies)} | {p50 * 1000:.1f} ms | {p99 * 1000:.1f} ms | "
        f"{latencies[-1] * 1000:.1f} ms | {extra} | {verdict} |"
    )


def evaluated(app: bl.Appliance) -> float:
    return sum(
        v for k, v in bl.metrics(app.url).items() if k.startswith("amoskys_detections_events_evaluated_total")
    )


def main() -> int:
    if os.geteuid() != 0:
        print("## detect\n\nSkipped: needs root (the netlink proc connector).")
        return 0
    base = Path(tempfile.mkdtemp(prefix="amoskys-bench-detect-"))
    try:
        rules, work = base / "rules", base / "work"
        rules.mkdir()
        ids = []
        for n in range(SAMPLES + LOADED_SAMPLES):
            ids.append(str(uuid.uuid4()))
            (rules / f"bench_{n}.yml").write_text(RULE.format(n=n, id=ids[-1]))
            (work / f"amoskys-bench-{n}").mkdir(parents=True)
        for n, text in enumerate(bench_sigma.rule_texts()):
            (rules / f"sigmahq_style_{n}.yml").write_text(text)
        (base / "app").mkdir()
        app = bl.start_appliance(base / "app", CONFIG.format(rules=rules))
        try:
            db = app.data / "events.db"
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                quiet = [timed(conn, work, ids[n], n) for n in range(SAMPLES)]
                bundle = bl.enroll_loadgen(base / "app", app)
                seconds = LOADED_SAMPLES * 0.2 + 30
                gen = bl.start_loadgen(
                    bundle, app, base / "loadgen.json", "--events", str(int(LOAD_EVENTS_PER_SECOND * seconds)),
                    "--batch", "100", "--rate", str(LOAD_EVENTS_PER_SECOND),
                )  # fmt: skip
                try:
                    time.sleep(5)  # the load's first seconds: the engine reaches its pace
                    e0, c0, t0 = evaluated(app), bl.cpu_seconds(app.proc.pid), time.monotonic()
                    loaded = [timed(conn, work, ids[SAMPLES + i], SAMPLES + i) for i in range(LOADED_SAMPLES)]
                    took = time.monotonic() - t0
                    rate = (evaluated(app) - e0) / took
                    cpu = 100 * (bl.cpu_seconds(app.proc.pid) - c0) / took
                finally:
                    bl.kill_all([gen])
        finally:
            app.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    n_rules = SAMPLES + LOADED_SAMPLES + len(bench_sigma.rule_texts())
    print(
        f"## detect\n\nexec → stored alert through `amoskys run` (netlink process collector; {n_rules} rules: "
        f"one per marked `sleep` and bench_sigma's 120 in SigmaHQ's Linux style; one real `sleep` at a time, "
        f"each opening its own alert). Loaded: `amoskys loadgen` offers {LOAD_EVENTS_PER_SECOND:,} events/s "
        f"(its round of kinds: 1,000 exec events/s, evaluated like an agent's).\n\n"
        f"| run | samples | p50 | p99 | max | | goal p99 < {GOAL_P99_S:g} s |\n|---|---|---|---|---|---|---|\n"
        + row("quiet", quiet)
        + "\n"
        + row("loaded", loaded, f"{rate:,.0f} events evaluated/s, appliance CPU {cpu:.0f}%")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
