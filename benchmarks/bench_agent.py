"""Issue 20's targets: an agent drains its outbox into an appliance, and idles on its defaults
(`make bench`, or alone: `.venv/bin/python benchmarks/run.py agent`, or
`.venv/bin/python benchmarks/bench_agent.py` for the section on stdout).

About a minute on a quiet machine (up to 3 minutes when the drain is slow: it waits at most
DRAIN_DEADLINE_S). Needs no root.

Against a real `amoskys run` child (data dir in a tmp dir, mTLS bus on a free port, only its heartbeat
collector: the figures are the forwarding path's) and real `amoskys agent` children, all on this
machine's cores:

1. drain: this script fills an agent's outbox (its store, opened with the agent's store config) with
   300,000 loadgen-like events of every kind, source = the agent's name (not synthetic), while no agent
   runs; then it starts `amoskys agent` with only the heartbeat collector (so it forwards the outbox,
   batch 1000 and the default window) and reads the agent's /metrics until
   `amoskys_forwarder_sent_total{sink="bus"}` passes 300,000 with `amoskys_forwarder_lag_events` ~0.
   The rate counts from the first ack seen (the agent's start-up is reported apart); CPU is % of one
   core over the same time, from /proc; the agent's RSS is its peak (VmHWM). Afterwards the appliance's
   store is counted: it must hold all 300,000;
2. idle: a second agent (its own identity and data dir) on its default collectors (heartbeat, host,
   process; flow and discovery have no interface, SNMP is off on agents) forwarding to the same
   appliance; after IDLE_SETTLE_S of start-up, its RSS (max of samples) and CPU over IDLE_SECONDS, and
   the events its collectors made meanwhile (the process collector reports every exec and exit on the
   host: other work on the machine shows in the idle agent's CPU).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import httpx
from bench_loop import Appliance, load1, mark, self_cpu, start_appliance
from common import cpu_seconds, rss_mb
from run import machine

from amoskys import agent as agent_config
from amoskys import logs
from amoskys.config import Config
from amoskys.events import EnvelopeStamper
from amoskys.loadgen import SyntheticEvents
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.proto import events_pb2 as ev
from amoskys.store import Outcome, Record, Store

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
EVENTS = 300_000
PREFILL_CHUNK = 10_000  # events per store submit while filling the outbox
DRAIN_DEADLINE_S = 120
IDLE_SETTLE_S = 10
IDLE_SECONDS = 30
SENT = 'amoskys_forwarder_sent_total{sink="bus"}'
LAG = 'amoskys_forwarder_lag_events{sink="bus"}'
RETRIES = 'amoskys_forwarder_retries_total{sink="bus"}'
DUPLICATES = 'amoskys_forwarder_duplicates_total{sink="bus"}'
COMMITTED = "amoskys_store_events_committed_total{"  # by kind

#: The appliance runs only its heartbeat: its CPU is the bus's and the store's.
QUIET_APPLIANCE = """\
[collectors.host]
enabled = false
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
"""

#: The draining agent: every collector off but the heartbeat; forwarding as the agent's defaults have it.
DRAIN_AGENT = """\
[collectors.host]
enabled = false
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[collectors.snmp]
enabled = false
"""


def progress(t_start: float, what: str) -> None:
    print(f"  {time.monotonic() - t_start:.0f} s: {what}", file=sys.stderr, flush=True)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(client: httpx.Client) -> dict[str, float]:
    """Every sample on /metrics, keyed by the series as written (one client: no TLS set-up per call)."""
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def by_kind(sample: dict[str, float]) -> dict[str, float]:
    """The events a process's store committed, by kind (`amoskys_store_events_committed_total`)."""
    return {
        key[len(COMMITTED) :].split('"')[1]: value
        for key, value in sample.items()
        if key.startswith(COMMITTED)
    }


def enroll(app: Appliance, names: list[str], work: Path) -> dict[str, Path]:
    """`amoskys agents enroll NAME --out DIR` for each name, side by side."""
    out = {name: work / f"bundle-{name}" for name in names}
    procs = [
        subprocess.Popen(
            [
                PY,
                "-m",
                "amoskys",
                "agents",
                "enroll",
                name,
                "--out",
                str(bundle),
                "--data-dir",
                str(app.data),
                "--bus-address",
                f"127.0.0.1:{app.bus_port}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name, bundle in out.items()
    ]
    for name, proc in zip(names, procs, strict=True):
        text, _ = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"amoskys agents enroll {name} failed:\n{text.decode(errors='replace')}")
    return out


# ---------------------------------------------------------------------------------------- the outbox
async def fill_outbox(db: Path, config: Config, n: int) -> tuple[str, int]:
    """Submit `n` loadgen-like events of the agent (`config.appliance.name`) to its store as its own
    collectors would (local), in chunks, two in flight; returns their boot_id and the store's last seq."""
    name = config.appliance.name
    store = await Store.open(db, config.store, Metrics(), stamper=EnvelopeStamper(name))
    writer = asyncio.create_task(store.run(), name="prefill-writer")
    events = SyntheticEvents(name)
    committed = 0
    try:
        pending: asyncio.Future[list[Outcome]] | None = None
        for start in range(0, n, PREFILL_CHUNK):
            records = []
            for at in range(start, min(n, start + PREFILL_CHUNK), 1000):
                _, raws = events.make(min(1000, n - at))  # one batch: one timestamp, as loadgen's
                records += [Record.from_envelope(ev.Envelope.FromString(raw), raw) for raw in raws]
            future = store.submit(records, local=True)
            if pending is not None:
                committed += (await pending).count(Outcome.COMMITTED)
            pending = future
        if pending is not None:
            committed += (await pending).count(Outcome.COMMITTED)
        last_seq = store.last_seq
    finally:
        await store.close()
        await writer
    if committed != n:
        raise SystemExit(f"the outbox took {committed:,} of {n:,} events")
    return events.boot_id, last_seq


def count_stored(db: Path, source: str, boot_id: str) -> int:
    """Rows of `source` and `boot_id` in a store (read-only: its owner is running)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM events WHERE source = ? AND boot_id = ?", (source, boot_id)
        ).fetchone()
    return int(row[0])


# ---------------------------------------------------------------------------------------- the agent
def start_agent(
    bundle: Path, app: Appliance, data: Path, config: Path | None, log: Path
) -> subprocess.Popen[bytes]:
    args = [PY, "-m", "amoskys", "agent", "--identity", str(bundle), "--bus", f"127.0.0.1:{app.bus_port}"]
    if config is not None:
        args += ["--config", str(config)]
    args += ["--data-dir", str(data), "--web-listen", "127.0.0.1:0", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOSKYS_", "XDG_", "STATE_"))}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def agent_url(proc: subprocess.Popen[bytes], data: Path, log: Path, deadline: float) -> str:
    """The agent's web address once its run.json names it (and this process)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"agent exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            info = json.loads((data / "run.json").read_text())
            if info["pid"] == proc.pid:
                return f"http://127.0.0.1:{info['web']['port']}"
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    raise SystemExit(f"agent wrote no run.json in time:\n{log.read_text()[-3000:]}")


def wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"agent exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"agent not ready in time:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------- phases
def drain(work: Path, app: Appliance, bundle: Path, procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    data = work / "agent-drain"
    config_path = work / "agent-drain.toml"
    config_path.write_text(DRAIN_AGENT)
    loaded = agent_config.load(
        config_path, {}, data_dir=str(data), identity=str(bundle), bus=f"127.0.0.1:{app.bus_port}"
    ).config
    name = loaded.appliance.name
    layout = Layout(data)
    layout.ensure()
    t0 = time.monotonic()
    boot_id, last_seq = asyncio.run(fill_outbox(layout.db, loaded, EVENTS))
    fill_s = time.monotonic() - t0
    outbox_mb = sum(p.stat().st_size for p in data.glob("events.db*")) / 2**20

    load = load1()
    log = work / "agent-drain.log"
    t_start = time.monotonic()
    proc = start_agent(bundle, app, data, config_path, log)
    procs.append(proc)
    url = agent_url(proc, data, log, t_start + 60)
    bench0 = self_cpu()
    first: tuple[float, float, float, float] | None = None  # time, sent, agent CPU, appliance CPU
    sent = lag = 0.0
    sample: dict[str, float] = {}
    deadline = t_start + DRAIN_DEADLINE_S
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"agent exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                sample = scrape(client)
            except httpx.HTTPError:  # the web port is up before the forwarder is wired
                sample = {}
            now = time.monotonic()
            sent, lag = sample.get(SENT, 0.0), sample.get(LAG, float(EVENTS))
            if first is None and sent > 0:
                first = (now, sent, cpu_seconds(proc.pid), cpu_seconds(app.proc.pid))
            if sent >= EVENTS and lag <= 10:  # the agent's own heartbeats may be on their way
                break
            if now > deadline:
                break
            time.sleep(0.1)  # the drain takes seconds: 0.1 s is its timing resolution
        t_end = time.monotonic()
        agent_cpu, app_cpu, bench_cpu = cpu_seconds(proc.pid), cpu_seconds(app.proc.pid), self_cpu() - bench0
        rss_peak = peak_rss_mb(proc.pid)
    stop(proc)
    if first is None:
        raise SystemExit(f"the agent sent nothing in {DRAIN_DEADLINE_S} s:\n{log.read_text()[-3000:]}")
    t_first, sent_first, agent_cpu0, app_cpu0 = first
    window = max(t_end - t_first, 1e-6)
    stored = count_stored(app.data / "events.db", name, boot_id)
    return {
        "load": load,
        "fill_s": fill_s,
        "outbox_mb": outbox_mb,
        "last_seq": float(last_seq),
        "startup_s": t_first - t_start,
        "drain_s": window,
        "total_s": t_end - t_start,
        "sent": sent,
        "lag": lag,
        "done": float(sent >= EVENTS),
        "eps": (min(sent, EVENTS) - sent_first) / window,
        "eps_from_start": min(sent, EVENTS) / (t_end - t_start),
        "agent_cpu": (agent_cpu - agent_cpu0) / window * 100,
        "app_cpu": (app_cpu - app_cpu0) / window * 100,
        "bench_cpu": bench_cpu / (t_end - t_start) * 100,
        "rss_peak": rss_peak,
        "retries": sample.get(RETRIES, 0.0),
        "duplicates": sample.get(DUPLICATES, 0.0),
        "stored": float(stored),
    }


def idle(work: Path, app: Appliance, bundle: Path, procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    data = work / "agent-idle"
    data.mkdir(mode=0o700)
    log = work / "agent-idle.log"
    load = load1()
    t_start = time.monotonic()
    proc = start_agent(bundle, app, data, None, log)  # no config: the agent's defaults
    procs.append(proc)
    url = agent_url(proc, data, log, t_start + 60)
    with httpx.Client(base_url=url, timeout=10) as client:
        wait_ready(client, proc, log, t_start + 60)
        ready_s = time.monotonic() - t_start
        time.sleep(IDLE_SETTLE_S)  # start-up settles: the first samples of every collector
        if proc.poll() is not None:
            raise SystemExit(f"agent exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        rss = []
        before = by_kind(scrape(client))  # before the window: the scrapes are not in the figures
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - t0 < IDLE_SECONDS:
            rss.append(rss_mb(proc.pid))
            time.sleep(0.5)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        rss.append(rss_mb(proc.pid))
        sample = scrape(client)
    stop(proc)
    made = {k: v - before.get(k, 0.0) for k, v in by_kind(sample).items()}
    return {
        "load": load,
        "ready_s": ready_s,
        "rss_max": max(rss),
        "rss_end": rss[-1],
        "cpu": (cpu1 - cpu0) / (t1 - t0) * 100,
        "sent": sample.get(SENT, 0.0),
        "lag": sample.get(LAG, 0.0),
        "made": sum(made.values()),
        "made_process": made.get("process", 0.0),
    }


# --------------------------------------------------------------------------------------- report
def report(d: dict[str, float], i: dict[str, float], app_load: float, window: str, took: float) -> None:
    print("## Agent → appliance forwarding (issue 20 targets)\n")
    print(
        f"Machine: {machine()}; the appliance (`amoskys run`, heartbeat collector only), the agent and this "
        "script (reading the agent's /metrics 10 times a second in the drain) share its cores. CPU is % of one core. "
        "met/missed mark the goals.\n"
    )
    print("| figure | measured | goal | result |")
    print("|---|---|---|---|")
    done = "" if d["done"] else f" — **only {d['sent']:,.0f} sent by the {DRAIN_DEADLINE_S} s deadline**"
    print(
        f"| drain a pre-filled outbox of {EVENTS:,} events ({window}; load avg {d['load']:.2f}), from the "
        f"first ack | {d['eps']:,.0f} ev/s ({d['drain_s']:.1f} s){done} | ≥ 30,000 ev/s | "
        f"{mark(bool(d['done']) and d['eps'] >= 30_000, False)} |"
    )
    print(
        f"| same, from the agent's start (start-up to the first ack: {d['startup_s']:.1f} s) | "
        f"{d['eps_from_start']:,.0f} ev/s ({d['total_s']:.1f} s) | — | — |"
    )
    print(
        f"| CPU over the drain: agent / appliance (this script: {d['bench_cpu']:.0f}%) | "
        f"{d['agent_cpu']:.0f}% / {d['app_cpu']:.0f}% | — | — |"
    )
    print(f"| agent's peak RSS (VmHWM) in the drain | {d['rss_peak']:.1f} MB | — | — |")
    held = d["stored"] >= EVENTS
    print(
        f"| the appliance holds the drained events (its store, counted after) | {d['stored']:,.0f} of {EVENTS:,} | "
        f"all | {mark(held, False)} |"
    )
    print(
        f"| idle agent on its default collectors (heartbeat, host, process), RSS max over {IDLE_SECONDS} s "
        f"(load avg {i['load']:.2f}) | {i['rss_max']:.1f} MB | < 60 MB | {mark(i['rss_max'] < 60, False)} |"
    )
    print(
        f"| idle agent, CPU over the same {IDLE_SECONDS} s | {i['cpu']:.2f}% | < 1% of a core | "
        f"{mark(i['cpu'] < 1, False)} |"
    )
    print(
        f"\nDrain: the outbox (the agent's store config; {d['outbox_mb']:.0f} MB with its WAL, store_seq up to "
        f"{d['last_seq']:,.0f}) was filled by this script in {d['fill_s']:.1f} s with loadgen-like events of "
        f"every kind, source the agent's name, not synthetic. The agent ran the heartbeat collector only. "
        f"Forwarder: {d['retries']:,.0f} retries, {d['duplicates']:,.0f} duplicates; not acked at the "
        f"end: {d['lag']:,.0f} (its own heartbeats)."
    )
    print(
        f"\nIdle: ready {i['ready_s']:.1f} s after its start, measured after {IDLE_SETTLE_S} s more; RSS at the "
        f"end {i['rss_end']:.1f} MB. In the window its collectors made {i['made']:,.0f} events "
        f"({i['made_process']:,.0f} of them process events: the process collector reports every exec and exit on "
        f"the host, so other work on the machine costs the idle agent CPU); {i['sent']:,.0f} forwarded in all, "
        f"{i['lag']:,.0f} not acked yet at the end."
    )
    print(
        "\n1-minute load average before each phase (appliance start, drain, idle): "
        f"{app_load:.2f}, {d['load']:.2f}, {i['load']:.2f}. Whole run: {took:.0f} s."
    )


def main() -> None:
    logs.setup("warning", "human")  # the outbox store this script opens logs on stderr, not in the section
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-agent-"))
    procs: list[subprocess.Popen[bytes]] = []
    app: Appliance | None = None
    try:
        app_load = load1()
        progress(t_start, "appliance")
        app = start_appliance(work, QUIET_APPLIANCE)
        bundles = enroll(app, ["bench-agent", "bench-idle"], work)
        progress(t_start, f"filling the outbox with {EVENTS:,} events, then the drain")
        d = drain(work, app, bundles["bench-agent"], procs)
        progress(t_start, f"drain: {json.dumps({k: round(v, 2) for k, v in d.items()})}")
        i = idle(work, app, bundles["bench-idle"], procs)
        progress(t_start, f"idle: {json.dumps({k: round(v, 2) for k, v in i.items()})}")
        bus = agent_config.load(None, {}, identity=str(bundles["bench-agent"])).config.forwarders.bus
        window = (
            f"batch {bus.batch_events}, {bus.max_in_flight_batches} batches in flight, "
            f"wait {bus.batch_wait_ms} ms"
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if app is not None:
            app.stop()
            if app.proc.returncode not in (0, -signal.SIGTERM):
                print(app.log.read_text()[-3000:], file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    report(d, i, app_load, window, time.monotonic() - t_start)


if __name__ == "__main__":
    main()
