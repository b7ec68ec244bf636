"""Issue 16's targets: one loop that keeps its promises under load (`make bench`, or alone:
`.venv/bin/python benchmarks/run.py loop`).

    .venv/bin/python benchmarks/bench_loop.py [--minutes M] [--stress-seconds S]
    AMOSKYS_BENCH_LOOP_MINUTES=1 make bench   # the quick run (~3.5 min for this script)

About 11 minutes at the defaults on a quiet machine (2 × 5 one-minute rows + ~1 min of the rest); longer
when the appliance cannot keep up (a row lasts until loadgen's 300,000 events are acked).
AMOSKYS_BENCH_LOOP_WINDOW_SECONDS shortens a "minute" for trying the harness out.

Against a real `amoskys run` child (data dir in a tmp dir, mTLS bus, an enrolled loadgen identity, the
flow collector on one end of a veth pair):

1. idle on embedded defaults (a second child, no config): RSS, /metrics latency, loop lag;
2. bus throughput with loadgen's defaults (mTLS, signed, FULL): unary, batch 100, batch 1000;
3. the acceptance run, one row per minute (``--minutes``, env AMOSKYS_BENCH_LOOP_MINUTES, default 5;
   1 for a quick run): loadgen offers 5,000 events/s in batches of 100, tcpreplay sends 50,000 pkt/s
   into the flow collector, and Debian's `hey` (one process per endpoint, 3 workers at 5 req/s each,
   a session cookie) asks 8 API endpoints, 120 req/s in all; the bench also scrapes /metrics twice a
   second and /healthz ten times a second;
4. the ack run, as many one-minute rows: loadgen alone at 5,000 events/s in batches of 100 against the
   store the acceptance run grew, with the checkpoints each minute ran and the WAL's largest size;
5. stress (reported, not judged): 10,000 events/s + 100,000 pkt/s + 200 req/s open loop over the
   same endpoints (latency from the scheduled send time; no coordinated omission), with the 503s the
   appliance sheds, the kernel's drops and each process's CPU.

Loop lag is read from the `amoskys_event_loop_lag_seconds` histogram on /metrics (p99 = the upper
bound of the bucket holding it); when the appliance has no such series the /healthz probe's p99 (an
upper bound of the lag: it includes the HTTP round trip) stands in, and the output says so.
Needs root (a veth pair in a network namespace), tcpreplay, ip and hey (`scripts/sysdeps.sh bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_capture import write_pcap  # first: it puts tests/ on sys.path for flow_veth
from common import cpu_seconds, free_port, paced, rss_mb
from run import machine

from flow_veth import Veth, veth_pair

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
WINDOW_SECONDS = int(os.environ.get("AMOSKYS_BENCH_LOOP_WINDOW_SECONDS", "60"))  # one "minute" row
IDLE_SECONDS = 8
STRESS_GRACE_S = 10  # how long the stress phase waits for answers after its last request
LAG = "amoskys_event_loop_lag_seconds"
#: The endpoints of the issue's acceptance run: overview, events, flows, top talkers, flow search by
#: IP (an address of one replayed conversation: a rare match), processes, devices, SNMP.
ENDPOINTS = [
    "/api/v1/overview",
    "/api/v1/events?limit=50",
    "/api/v1/flows?limit=50",
    "/api/v1/flows/top",
    "/api/v1/flows?ip=10.1.0.7&limit=50",
    "/api/v1/processes",
    "/api/v1/devices",
    "/api/v1/snmp/targets",
]
HEY_WORKERS, HEY_QPS_EACH = 3, 5  # per endpoint: 15 req/s; 8 endpoints: 120 req/s


# ---------------------------------------------------------------------------------------- helpers


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def load1() -> float:
    return os.getloadavg()[0]


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def reap(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for a child and return the CPU seconds it used (its rusage from wait4); one still running
    after ``timeout`` seconds is killed and the run stops, naming it."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise SystemExit(f"{' '.join(map(str, proc.args))[:200]} still running after {timeout:.0f} s")
        time.sleep(0.05)


def kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Stop children a failed phase left running (no-op for the reaped ones)."""
    for p in procs:
        if p.returncode is None:
            p.kill()
            p.wait()


def metrics(url: str) -> dict[str, float]:
    """Every sample on /metrics, keyed by the series as written (name plus labels)."""
    out = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def lag_buckets(sample: dict[str, float]) -> list[tuple[float, float]]:
    """(le, cumulative count) of the loop-lag histogram, or [] when the appliance has none."""
    rows = []
    for key, value in sample.items():
        m = re.fullmatch(rf'{LAG}_bucket\{{(?:.*,)?le="([^"]+)"(?:,.*)?\}}', key)
        if m:
            rows.append((float(m.group(1)), value))
    return sorted(rows)


def lag_p99_ms(before: dict[str, float], after: dict[str, float]) -> float | None:
    """The p99 of the lag observed between two scrapes, as the upper bound of its bucket (ms)."""
    b0, b1 = dict(lag_buckets(before)), lag_buckets(after)
    if not b1:
        return None
    deltas = [(le, count - b0.get(le, 0.0)) for le, count in b1]
    total = deltas[-1][1]
    if total <= 0:
        return None
    for le, count in deltas:
        if count >= 0.99 * total:
            return le * 1000
    return float("inf")


def counter(sample: dict[str, float], name: str) -> float:
    return sum(v for k, v in sample.items() if k == name or k.startswith(name + "{"))


def mark(ok: bool, acceptance: bool) -> str:
    if acceptance:
        return "**pass**" if ok else "**FAIL**"
    return "met" if ok else "missed"


def ms(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x:.1f} ms"


# -------------------------------------------------------------------------------------- the child
@dataclass
class Appliance:
    proc: subprocess.Popen[bytes]
    url: str
    bus_port: int
    data: Path
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_appliance(work: Path, config: str | None) -> Appliance:
    data = work / "data"
    init = subprocess.run(
        [PY, "-m", "amoskys", "certs", "init", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if init.returncode != 0:
        raise SystemExit(f"amoskys certs init failed:\n{init.stdout}{init.stderr}")
    bus_port = free_port()
    args = [PY, "-m", "amoskys", "run", "--data-dir", str(data)]
    if config is not None:
        (work / "amoskys.toml").write_text(config)
        args += ["--config", str(work / "amoskys.toml")]
    args += ["--web-listen", "127.0.0.1:0", "--bus-listen", f"127.0.0.1:{bus_port}", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    log = work / "appliance.log"
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"appliance exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            info = json.loads((data / "run.json").read_text())
            url = f"http://127.0.0.1:{info['web']['port']}"
            if info["pid"] == proc.pid and httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return Appliance(proc, url, bus_port, data, log)
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("appliance not ready in 60 s")


def enroll_loadgen(work: Path, app: Appliance) -> Path:
    out = work / "loadgen"
    subprocess.run(
        [
            PY,
            "-m",
            "amoskys",
            "agents",
            "enroll",
            "bench-loadgen",
            "--role",
            "loadgen",
            "--out",
            str(out),
            "--data-dir",
            str(app.data),
            "--bus-address",
            f"127.0.0.1:{app.bus_port}",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return out


def login(app: Appliance) -> dict[str, str]:
    password = (app.data / "admin-password").read_text().strip()
    r = httpx.post(app.url + "/api/v1/login", json={"name": "admin", "password": password}, timeout=30)
    r.raise_for_status()
    return dict(r.cookies)


# -------------------------------------------------------------------------------------- load makers
def start_loadgen(bundle: Path, app: Appliance, out: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            PY,
            "-m",
            "amoskys",
            "loadgen",
            "--identity",
            str(bundle),
            "--bus",
            f"127.0.0.1:{app.bus_port}",
            "--json",
            "--quiet",
            *args,
        ],
        cwd=ROOT,
        stdout=out.open("wb"),
        stderr=subprocess.DEVNULL,
    )


def loadgen_summary(out: Path) -> dict[str, float]:
    lines = out.read_text().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def start_replay(veth: Veth, pcap: Path, pps: int, seconds: float) -> subprocess.Popen[bytes]:
    """tcpreplay at ``pps`` for about ``seconds`` (terminated by the caller when done)."""
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            veth.netns,
            "tcpreplay",
            "-q",
            f"--pps={pps}",
            "--loop=0",
            f"--limit={int(pps * seconds)}",
            "-i",
            veth.peer,
            str(pcap),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_hey(
    url: str, cookies: dict[str, str], seconds: int, outdir: Path
) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    started = []
    for i, path in enumerate(ENDPOINTS):
        out = outdir / f"hey-{i}.csv"
        proc = subprocess.Popen(
            [
                "hey",
                "-z",
                f"{seconds}s",
                "-c",
                str(HEY_WORKERS),
                "-q",
                str(HEY_QPS_EACH),
                "-t",
                "10",
                "-H",
                f"Cookie: {cookie}",
                "-o",
                "csv",
                url + path,
            ],
            stdout=out.open("wb"),
            stderr=subprocess.DEVNULL,
        )
        started.append((path, proc, out))
    return started


def hey_rows(out: Path) -> list[tuple[float, int]]:
    """(seconds, status) of every answered request in hey's CSV (timeouts and errors have no row)."""
    with out.open() as f:
        return [(float(r["response-time"]), int(r["status-code"])) for r in csv.DictReader(f)]


@dataclass
class Probes:
    """/metrics twice a second and /healthz ten times a second, in threads, while load runs."""

    url: str
    scrape_s: list[float] = field(default_factory=list)
    health_s: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self, path: str, every: float, into: list[float]) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    client.get(path)
                except httpx.HTTPError:
                    pass
                took = time.perf_counter() - t0
                into.append(took)
                self.stop.wait(max(0.0, every - took))

    @contextmanager
    def running(self) -> Iterator[Probes]:
        threads = [
            threading.Thread(target=self._loop, args=("/metrics", 0.5, self.scrape_s), daemon=True),
            threading.Thread(target=self._loop, args=("/healthz", 0.1, self.health_s), daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in threads:
                t.join()


# --------------------------------------------------------------------------------------- phases
def idle_on_defaults(work: Path) -> dict[str, float | None]:
    app = start_appliance(work, None)
    try:
        time.sleep(2)  # start-up work settles (first collector samples)
        m0 = metrics(app.url)
        rss = []
        probes = Probes(app.url)
        deadline = time.monotonic() + IDLE_SECONDS
        with probes.running():
            while time.monotonic() < deadline:
                rss.append(rss_mb(app.proc.pid))
                time.sleep(0.5)
        lag = lag_p99_ms(m0, metrics(app.url))
        scrape = []
        # one client, as a scraper keeps: httpx.get() makes an SSL context per call (~20 ms of this
        # process's own time, which the figure used to include)
        with httpx.Client(base_url=app.url, timeout=10) as client:
            for _ in range(100):
                t0 = time.perf_counter()
                client.get("/metrics")
                scrape.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)
    finally:
        app.stop()
    return {
        "rss_max": max(rss),
        "rss_end": rss[-1],
        "metrics_p50": pct(scrape, 50),
        "metrics_p99": pct(scrape, 99),
        "lag_p99": lag,
        "health_p99": pct([x * 1000 for x in probes.health_s], 99),
    }


def bus_rows(work: Path, app: Appliance, bundle: Path) -> list[tuple[str, dict[str, float], float]]:
    runs = [
        ("unary Publish, batch 1", ["--events", "3000", "--batch", "1", "--unary"]),
        ("batch 100", ["--events", "100000", "--batch", "100"]),
        ("batch 1000", ["--events", "200000", "--batch", "1000"]),
    ]
    rows = []
    for label, args in runs:
        c0, t0 = cpu_seconds(app.proc.pid), time.monotonic()
        out = work / "bus.json"
        gen = start_loadgen(bundle, app, out, *args)
        try:
            reap(gen, 180)
        finally:
            kill_all([gen])
        cpu = 100 * (cpu_seconds(app.proc.pid) - c0) / (time.monotonic() - t0)
        rows.append((label, loadgen_summary(out), cpu))
    return rows


def minute(
    work: Path, app: Appliance, bundle: Path, cookies: dict[str, str], index: int
) -> tuple[dict[str, float | None], dict[str, list[tuple[float, int]]]]:
    load = load1()
    m0 = metrics(app.url)
    c0, s0, t0 = cpu_seconds(app.proc.pid), self_cpu(), time.monotonic()
    gen_out = work / f"minute-{index}.json"
    gen = start_loadgen(
        bundle, app, gen_out, "--events", str(5000 * WINDOW_SECONDS), "--batch", "100", "--rate", "5000"
    )
    heys = start_hey(app.url, cookies, WINDOW_SECONDS, work)
    probes = Probes(app.url)
    try:
        with probes.running():
            gen_cpu = reap(gen, WINDOW_SECONDS + 60)
            hey_cpu = sum(reap(p, WINDOW_SECONDS + 30) for _, p, _ in heys)
    finally:
        kill_all([gen, *(p for _, p, _ in heys)])
    took = time.monotonic() - t0
    m1 = metrics(app.url)
    ingest = loadgen_summary(gen_out)
    per_endpoint = {path: hey_rows(out) for path, _, out in heys}
    answered = [r for rows in per_endpoint.values() for r in rows]
    lat = [s * 1000 for s, _ in answered]
    wal = app.data / "events.db-wal"
    seen = counter(m1, "amoskys_flow_kernel_packets_total") - counter(m0, "amoskys_flow_kernel_packets_total")
    row: dict[str, float | None] = {
        "load": load,
        "ack_p50": ingest.get("ack_p50_ms"),
        "ack_p99": ingest.get("ack_p99_ms"),
        "eps": ingest.get("events_per_second"),
        "api_n": len(lat),
        "api_rps": len(lat) / took,
        "api_p50": pct(lat, 50),
        "api_p99": pct(lat, 99),
        "shed": sum(1 for _, s in answered if s == 503),
        "non200": sum(1 for _, s in answered if s != 200),
        "lag_p99": lag_p99_ms(m0, m1),
        "health_p99": pct([x * 1000 for x in probes.health_s], 99),
        "metrics_p99": pct([x * 1000 for x in probes.scrape_s], 99),
        "pps": (counter(m1, "amoskys_flow_packets_total") - counter(m0, "amoskys_flow_packets_total")) / took,
        "drop_pct": 100
        * (counter(m1, "amoskys_flow_kernel_drops_total") - counter(m0, "amoskys_flow_kernel_drops_total"))
        / max(1.0, seen),
        "app_cpu": 100 * (cpu_seconds(app.proc.pid) - c0) / took,
        "loadgen_cpu": 100 * gen_cpu / took,
        "hey_cpu": 100 * hey_cpu / took,
        "bench_cpu": 100 * (self_cpu() - s0) / took,
        "wal_mb": wal.stat().st_size / 2**20 if wal.exists() else 0.0,
        "rss": rss_mb(app.proc.pid),
    }
    return row, per_endpoint


def checkpoint_counts(sample: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Per checkpoint mode: (count, seconds) so far, from amoskys_store_checkpoint_seconds."""
    out = {}
    for mode in ("passive", "restart", "truncate"):
        label = f'{{mode="{mode}"}}'
        out[mode] = (
            sample.get(f"amoskys_store_checkpoint_seconds_count{label}", 0.0),
            sample.get(f"amoskys_store_checkpoint_seconds_sum{label}", 0.0),
        )
    return out


def ack_minute(work: Path, app: Appliance, bundle: Path, index: int) -> dict[str, float | None]:
    """One minute of loadgen alone at 5,000 ev/s in batches of 100: its acks, the appliance's
    checkpoints (count and mean per mode) and the WAL's largest size (sampled every 0.25 s)."""
    load = load1()
    m0, t0 = metrics(app.url), time.monotonic()
    out = work / f"ack-{index}.json"
    gen = start_loadgen(
        bundle, app, out, "--events", str(5000 * WINDOW_SECONDS), "--batch", "100", "--rate", "5000"
    )
    wal, largest, stop = app.data / "events.db-wal", [0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.25):
            try:
                largest[0] = max(largest[0], wal.stat().st_size)
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        reap(gen, WINDOW_SECONDS + 60)
    finally:
        stop.set()
        watcher.join()
        kill_all([gen])
    c0, c1 = checkpoint_counts(m0), checkpoint_counts(metrics(app.url))
    ingest = loadgen_summary(out)
    row: dict[str, float | None] = {
        "load": load,
        "ack_p50": ingest.get("ack_p50_ms"),
        "ack_p99": ingest.get("ack_p99_ms"),
        "eps": ingest.get("events_per_second"),
        "wal_max_mb": largest[0] / 2**20,
        "seconds": time.monotonic() - t0,
    }
    for mode in c0:
        n = c1[mode][0] - c0[mode][0]
        row[f"{mode}_n"] = n
        row[f"{mode}_ms"] = 1000 * (c1[mode][1] - c0[mode][1]) / n if n else None
    return row


async def get(host: str, port: int, path: str, cookie: str) -> str:
    """One GET on a fresh connection (HTTP/1.1, Connection: close); the status code. Raw streams, not an
    HTTP client's pool: a pool's queue of thousands of waiting requests costs the generator more CPU than
    the appliance, and the generator must not be what is measured."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n".encode()
        )
        status = (await reader.readline()).split(b" ", 2)[1].decode()
        while await reader.read(65536):
            pass
        return status
    finally:
        writer.close()


async def open_loop(
    url: str, cookies: dict[str, str], rps: int, seconds: int
) -> tuple[list[float], dict[str, int]]:
    """bench_web's design over ENDPOINTS: a request every 1/rps s whatever the answers do, latency from
    the scheduled time. A request not answered STRESS_GRACE_S after the last one was due counts as
    "unanswered", its wait so far (a lower bound) in the list: the phase ends on time."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    host, port = url.removeprefix("http://").rsplit(":", 1)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    deadline = asyncio.get_running_loop().time() + seconds + STRESS_GRACE_S

    async def one(path: str, scheduled: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                status = await get(host, int(port), path, cookie)
        except TimeoutError:
            status = "unanswered"
        except (OSError, IndexError):
            status = "error"
        statuses[status] = statuses.get(status, 0) + 1
        latencies.append((time.perf_counter() - scheduled) * 1000)

    await paced(rps, seconds, lambda i, scheduled: one(ENDPOINTS[i % len(ENDPOINTS)], scheduled))
    return latencies, statuses


def stress(
    work: Path, app: Appliance, bundle: Path, cookies: dict[str, str], veth: Veth, pcap: Path, seconds: int
) -> dict[str, object]:
    load = load1()
    gen_out = work / "stress.json"
    started = time.monotonic()
    gen = start_loadgen(
        bundle, app, gen_out, "--events", str(10_000 * (seconds + 4)), "--batch", "100", "--rate", "10000"
    )
    replay = start_replay(veth, pcap, 100_000, seconds + 30)
    try:
        time.sleep(2)  # ingestion and replay reach their rates first
        m0 = metrics(app.url)
        c0, s0, t0 = cpu_seconds(app.proc.pid), self_cpu(), time.monotonic()
        latencies, statuses = asyncio.run(open_loop(app.url, cookies, 200, seconds))
        took = time.monotonic() - t0
        m1 = metrics(app.url)
        app_cpu, bench_cpu = cpu_seconds(app.proc.pid) - c0, self_cpu() - s0
        os.kill(replay.pid, signal.SIGTERM)  # not Popen.terminate: its poll() would reap, losing the rusage
        replay_cpu = reap(replay, 30)
        replay_took = time.monotonic() - started
        gen_cpu = reap(gen, 120)
        gen_took = time.monotonic() - started
    finally:
        kill_all([gen, replay])
    seen = counter(m1, "amoskys_flow_kernel_packets_total") - counter(m0, "amoskys_flow_kernel_packets_total")
    drops = counter(m1, "amoskys_flow_kernel_drops_total") - counter(m0, "amoskys_flow_kernel_drops_total")
    return {
        "load": load,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "n": len(latencies),
        "statuses": statuses,
        "lag_p99": lag_p99_ms(m0, m1),
        "ingest": loadgen_summary(gen_out),
        "pps": (counter(m1, "amoskys_flow_packets_total") - counter(m0, "amoskys_flow_packets_total")) / took,
        "drops": drops,
        "drop_pct": 100 * drops / max(1.0, seen),
        "app_cpu": 100 * app_cpu / took,
        "bench_cpu": 100 * bench_cpu / took,
        "replay_cpu": 100 * replay_cpu / replay_took,
        "loadgen_cpu": 100 * gen_cpu / gen_took,
    }


# --------------------------------------------------------------------------------------- report
def report(
    idle: dict[str, float | None],
    idle_load: float,
    bus: list[tuple[str, dict[str, float], float]],
    bus_load: float,
    rows: list[dict[str, float | None]],
    endpoints: dict[str, list[tuple[float, int]]],
    acks: list[dict[str, float | None]],
    st: dict[str, object],
    took: float,
) -> None:
    has_lag = any(r["lag_p99"] is not None for r in rows)
    lag_name = (
        "loop lag p99 (`amoskys_event_loop_lag_seconds`, bucket bound)"
        if has_lag
        else (
            "loop lag p99 — **probe**: /healthz latency p99 (`amoskys_event_loop_lag_seconds` not on /metrics yet)"
        )
    )
    all_api = [s * 1000 for rs in endpoints.values() for s, _ in rs]
    api_p99 = pct(all_api, 99)
    lag_p99 = (
        max((r["lag_p99"] or 0.0) for r in rows) if has_lag else max(r["health_p99"] or 0.0 for r in rows)
    )
    metrics_p99 = max(r["metrics_p99"] or 0.0 for r in rows)
    ack_loaded = max(r["ack_p99"] or 0.0 for r in rows)
    ack_worst = max(r["ack_p99"] or 0.0 for r in acks)
    by_label = {label: r for label, r, _ in bus}
    b100 = by_label["batch 100"].get("events_per_second", 0.0)
    b1000 = by_label["batch 1000"].get("events_per_second", 0.0)
    unary = by_label["unary Publish, batch 1"].get("events_per_second", 0.0)
    idle_metrics = idle["metrics_p99"] or 0.0
    rss = idle["rss_max"] or 0.0
    minutes = len(rows)

    print("## One loop under load (issue 16 targets)\n")
    print(
        f"Machine: {machine()}; the load generators (loadgen, tcpreplay, hey, this script) share its cores "
        f"with the appliance. 1-minute load average before each run is in its row. Acceptance run: {minutes} × "
        f"{WINDOW_SECONDS} s (AMOSKYS_BENCH_LOOP_MINUTES / --minutes). **pass/FAIL** marks acceptance "
        "figures (they must hold on a quiet machine), met/missed the goals.\n"
    )
    print("| target | measured | threshold | result |")
    print("|---|---|---|---|")
    print(
        f"| API p99, `hey` 120 req/s over {len(ENDPOINTS)} endpoints + 5,000 ev/s + 50k pkt/s, "
        f"{minutes} min ({len(all_api):,} requests) | {ms(api_p99)} | < 50 ms | {mark(api_p99 < 50, True)} |"
    )
    shed = sum(1 for rs in endpoints.values() for _, st_ in rs if st_ == 503)
    print(f"| requests shed (503) in that run (reported) | {shed:,} of {len(all_api):,} | — | — |")
    print(f"| {lag_name}, worst minute | {ms(lag_p99)} | < 20 ms | {mark(lag_p99 < 20, True)} |")
    print(
        f"| /metrics p99, idle (defaults, 100 scrapes) | {ms(idle_metrics)} | < 25 ms | {mark(idle_metrics < 25, True)} |"
    )
    print(
        f"| /metrics p99 in the acceptance run, worst minute | {ms(metrics_p99)} | < 50 ms | {mark(metrics_p99 < 50, True)} |"
    )
    print(
        f"| bus, batch 1000 (load avg {bus_load:.2f}) | {b1000:,.0f} ev/s | ≥ 50,000 | {mark(b1000 >= 50_000, True)} |"
    )
    print(f"| bus, batch 100 | {b100:,.0f} ev/s | ≥ 30,000 | {mark(b100 >= 30_000, True)} |")
    print(f"| bus, unary | {unary:,.0f} ev/s | ≥ 1,000 (goal) | {mark(unary >= 1000, False)} |")
    print(
        f"| ack p99 at 5,000 ev/s, batch 100 (loadgen alone), worst minute of {len(acks)} | {ms(ack_worst)} | "
        f"≤ 15 ms | {mark(ack_worst <= 15, True)} |"
    )
    print(f"| ack p99, same | {ms(ack_worst)} | ≤ 10 ms (goal) | {mark(ack_worst <= 10, False)} |")
    print(f"| ack p99 in the acceptance run above (reported), worst minute | {ms(ack_loaded)} | — | — |")
    sp99 = float(st["p99"])  # type: ignore[arg-type]
    print(f"| stress API p99 (below) | {ms(sp99)} | < 150 ms (goal) | {mark(sp99 < 150, False)} |")
    print(
        f"| idle RSS on defaults, max over {IDLE_SECONDS} s (load avg {idle_load:.2f}) | {rss:.1f} MB | < 60 MB (goal) | "
        f"{mark(rss < 60, False)} |"
    )

    loads = [idle_load, bus_load, *(float(r["load"] or 0.0) for r in (*rows, *acks))]
    busy = max(loads) >= 1.0
    print(
        "\nAPI latencies count every answer (503s included). 1-minute load average before the runs "
        "(idle, bus, each minute of the acceptance run, each minute of the ack run): "
        + ", ".join(f"{x:.2f}" for x in loads)
        + (" — **not a quiet machine**: the acceptance marks above are provisional." if busy else " (quiet).")
    )
    print(
        f"\n**Per minute** (loadgen 5,000 ev/s offered, batch 100; tcpreplay 50k pkt/s of 64-byte frames into the "
        f"flow collector; `hey` -c {HEY_WORKERS} -q {HEY_QPS_EACH} per endpoint with a session cookie — closed loop "
        "per worker, as `hey` measures; /metrics scraped 2/s, /healthz 10/s). CPU is % of one core.\n"
    )
    print(
        "| min | load 1m | ack p50 / p99 | bus ev/s | API req/s | API p50 / p99 | non-200 (503) | loop lag p99 "
        "| /healthz p99 | /metrics p99 | pkt/s metered | kernel drops | CPU: appliance / loadgen / hey / bench "
        "| WAL | RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(
            f"| {i} | {r['load']:.2f} | {r['ack_p50'] or 0:.1f} / {r['ack_p99'] or 0:.1f} ms | {r['eps'] or 0:,.0f} | "
            f"{r['api_rps']:.0f} | {r['api_p50']:.1f} / {r['api_p99']:.1f} ms | {r['non200']:.0f} ({r['shed']:.0f}) | "
            f"{ms(r['lag_p99'])} | {ms(r['health_p99'])} | {ms(r['metrics_p99'])} | {r['pps']:,.0f} | "
            f"{r['drop_pct']:.3f}% | {r['app_cpu']:.0f}% / {r['loadgen_cpu']:.0f}% / {r['hey_cpu']:.0f}% / "
            f"{r['bench_cpu']:.0f}% | {r['wal_mb']:.1f} MB | {r['rss']:.0f} MB |"
        )

    print(
        "\n**Ack latency per minute** (loadgen alone, 5,000 ev/s offered in batches of 100, after the "
        "acceptance run: the store is at its largest). Checkpoints: how many of each mode ran in the "
        "minute and their mean time; the WAL's largest size (sampled every 0.25 s). A RESTART holds "
        "commits off for its time (see amoskys/store/checkpoint.py).\n"
    )
    print(
        "| min | load 1m | ack p50 / p99 | ev/s | PASSIVE n / mean | RESTART n / mean | TRUNCATE n | WAL max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(acks, 1):
        print(
            f"| {i} | {r['load']:.2f} | {r['ack_p50'] or 0:.1f} / {r['ack_p99'] or 0:.1f} ms | {r['eps'] or 0:,.0f} | "
            f"{r['passive_n']:.0f} / {ms(r['passive_ms'])} | {r['restart_n']:.0f} / {ms(r['restart_ms'])} | "
            f"{r['truncate_n']:.0f} | {r['wal_max_mb']:.1f} MB |"
        )

    print("\n**API by endpoint** over the whole acceptance run (`hey`; seconds from send to last byte):\n")
    print("| endpoint | requests | p50 | p99 | max | non-200 |")
    print("|---|---|---|---|---|---|")
    for path, rs in endpoints.items():
        lat = [s * 1000 for s, _ in rs]
        bad = sum(1 for _, s in rs if s != 200)
        print(
            f"| `{path}` | {len(rs):,} | {ms(pct(lat, 50))} | {ms(pct(lat, 99))} | {ms(max(lat, default=float('nan')))} | {bad} |"
        )

    ingest = st["ingest"]
    statuses = st["statuses"]
    assert isinstance(ingest, dict) and isinstance(statuses, dict)
    other = {k: v for k, v in statuses.items() if k not in ("200", "503")}
    print(
        f"\n**Stress** (reported, not judged; load avg {st['load']:.2f} before): loadgen 10,000 ev/s offered "
        f"(batch 100), tcpreplay 100k pkt/s, open loop 200 req/s over the {len(ENDPOINTS)} endpoints (latency from "
        "the scheduled send).\n"
    )
    print("| measure | result |")
    print("|---|---|")
    late = statuses.get("unanswered", 0)
    bound = (
        f"; ≥: {late:,} unanswered {STRESS_GRACE_S} s after the last was due, counted at their wait so far"
        if late
        else ""
    )
    print(
        f"| API p50 / p99 ({st['n']:,} requests) | {ms(st['p50'])} / {ms(st['p99'])} (goal p99 < 150 ms{bound}) |"
    )  # type: ignore[arg-type]
    print(
        f"| shed (503) / other non-200 | {statuses.get('503', 0):,} / {sum(other.values()):,} {other or ''} |"
    )
    print(f"| loop lag p99 | {ms(st['lag_p99'])} |")  # type: ignore[arg-type]
    print(
        f"| bus | {ingest.get('events_per_second', 0):,.0f} ev/s acked, ack p99 {ingest.get('ack_p99_ms', 0):.1f} ms |"
    )
    print(
        f"| flow collector | {st['pps']:,.0f} pkt/s metered, kernel drops {st['drops']:,.0f} ({st['drop_pct']:.3f}%) |"
    )
    print(
        f"| CPU (% of one core) | appliance {st['app_cpu']:.0f}%, loadgen {st['loadgen_cpu']:.0f}%, "
        f"tcpreplay {st['replay_cpu']:.0f}%, this script (the HTTP generator) {st['bench_cpu']:.0f}% |"
    )

    print(
        f"\n**Bus throughput** (loadgen defaults: mTLS, Ed25519-signed batches, SQLite FULL; load avg {bus_load:.2f}):\n"
    )
    print("| run | events/s | ack p50 | ack p99 | appliance CPU | target |")
    print("|---|---|---|---|---|---|")
    targets = {
        "unary Publish, batch 1": "≥ 1,000/s (goal)",
        "batch 100": "≥ 30,000/s",
        "batch 1000": "≥ 50,000/s",
    }
    for label, r, cpu in bus:
        print(
            f"| {label} | {r.get('events_per_second', 0):,.0f} | {r.get('ack_p50_ms', 0):.2f} ms | "
            f"{r.get('ack_p99_ms', 0):.2f} ms | {cpu:.0f}% | {targets[label]} |"
        )
    print(
        f"\n**Idle on embedded defaults** (load avg {idle_load:.2f}): RSS max {rss:.1f} MB (at the end "
        f"{idle['rss_end']:.1f} MB); /metrics p50 / p99 {ms(idle['metrics_p50'])} / {ms(idle['metrics_p99'])}; "
        f"loop lag p99 {ms(idle['lag_p99'])}; /healthz p99 {ms(idle['health_p99'])}.\n"
    )
    print(f"Whole run: {took:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=int,
        default=int(os.environ.get("AMOSKYS_BENCH_LOOP_MINUTES", "5")),
        help="length of the acceptance run, one row a minute (env AMOSKYS_BENCH_LOOP_MINUTES; default 5)",
    )
    parser.add_argument(
        "--stress-seconds",
        type=int,
        default=int(os.environ.get("AMOSKYS_BENCH_LOOP_STRESS_SECONDS", "15")),
        help="length of the stress run (env AMOSKYS_BENCH_LOOP_STRESS_SECONDS; default 15)",
    )
    args = parser.parse_args()
    missing = [t for t in ("tcpreplay", "ip", "hey") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        raise SystemExit(f"needs root and tcpreplay, ip, hey (scripts/sysdeps.sh bench); missing: {missing}")
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-loop-"))
    try:
        pcap = work / "frames.pcap"
        write_pcap(pcap)
        idle_load = load1()
        (work / "idle").mkdir()
        print(f"  {time.monotonic() - t_start:.0f} s: idle on defaults", file=sys.stderr, flush=True)
        idle = idle_on_defaults(work / "idle")
        with veth_pair() as veth:
            (work / "load").mkdir()
            config = (
                f'[collectors.flow]\ninterface = "{veth.capture}"\nring_size_mib = 64\n'
                # one publisher may use the whole box: the per-source quota is not what is measured
                "[bus]\nquota_events_per_second = 10000000\nquota_burst_events = 10000000\n"
                # nor the space ladder: the whole run stores ~3.3M events (~2 GB), past the default
                # 2 GB high-water mark, where the stress run's loadgen would be told to retry
                "[store]\nhigh_water_mb = 16384\nhard_cap_mb = 20480\n"
            )
            app = start_appliance(work / "load", config)
            try:
                bundle = enroll_loadgen(work / "load", app)
                cookies = login(app)
                bus_load = load1()
                print(f"  {time.monotonic() - t_start:.0f} s: bus throughput", file=sys.stderr, flush=True)
                bus = bus_rows(work / "load", app, bundle)
                replay = start_replay(veth, pcap, 50_000, args.minutes * (WINDOW_SECONDS + 15) + 30)
                rows, endpoints = [], {p: [] for p in ENDPOINTS}
                try:
                    for i in range(args.minutes):
                        row, per = minute(work / "load", app, bundle, cookies, i)
                        rows.append(row)
                        for path, rs in per.items():
                            endpoints[path] += rs
                        print(
                            f"  {time.monotonic() - t_start:.0f} s: minute {i + 1}: {json.dumps(row)}",
                            file=sys.stderr,
                            flush=True,
                        )
                finally:
                    replay.terminate()
                    replay.wait()
                acks = []
                for i in range(args.minutes):
                    acks.append(ack_minute(work / "load", app, bundle, i))
                    print(
                        f"  {time.monotonic() - t_start:.0f} s: ack minute {i + 1}: {json.dumps(acks[-1])}",
                        file=sys.stderr,
                        flush=True,
                    )
                print(f"  {time.monotonic() - t_start:.0f} s: stress", file=sys.stderr, flush=True)
                st = stress(work / "load", app, bundle, cookies, veth, pcap, args.stress_seconds)
            finally:
                app.stop()
                if app.proc.returncode not in (0, -signal.SIGTERM):
                    print(app.log.read_text()[-3000:], file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(idle, idle_load, bus, bus_load, rows, endpoints, acks, st, time.monotonic() - t_start)


if __name__ == "__main__":
    main()
