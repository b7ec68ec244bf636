"""Hub ingest: an otherwise idle `amoskys run` with [sources.nats] draining a pre-filled JetStream stream
(a fleet's events: 20 boxes, alerts and host metrics) into its store (SQLite FULL, AckAll after each
commit), against a bare nats-py pull consumer draining the same messages (fetch, ack, nothing stored)
in the same run. Events/s from the hub's first delivery until its consumer has nothing pending or
unacked. `AMOSKYS_BENCH_HUB_EVENTS` sets how many (default 100000)."""

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

import nats
from common import cpu_seconds, free_port, rss_mb
from nats.js import api

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NATS_SERVER = Path(PY).with_name("nats-server")
EVENTS = int(os.environ.get("AMOSKYS_BENCH_HUB_EVENTS", "100000"))
BOXES = 20
STREAM = "AMOSKYS"
BATCH = 500

HUB_CONFIG = """\
[appliance]
name = "central"
[collectors.host]
enabled = false
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[sources.nats]
enabled = true
servers = ["{url}"]
batch = {batch}
subjects = ["amoskys.>"]
"""


def wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("nats-server not listening")


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


def payloads(n: int) -> list[tuple[str, bytes, str]]:
    """(subject, envelope bytes, Msg-Id) of n events spread over the boxes and an agent each."""
    from amoskys.nats.subjects import event_subject, msg_id
    from amoskys.proto import events_pb2 as ev

    t0 = time.time_ns()
    out = []
    for i in range(n):
        box = f"box{i % BOXES:02d}"
        source = box if i % 4 else f"agent{i % BOXES:02d}"
        seq = i // BOXES + 1
        env = ev.Envelope(
            event_id=f"01900000-0000-7000-8000-{i:012x}",
            source=source,
            boot_id="0b0b0b0b-0000-4000-8000-00000000000d",
            source_seq=seq,
            ts_ns=t0 + i,
        )
        if i % 2:
            env.alert.CopyFrom(ev.Alert(rule="bench.rule", summary=f"alert {i}", attributes={"n": str(i)}))
            kind = "alert"
        else:
            env.host.CopyFrom(ev.HostMetrics(cpu_percent=12.5, memory_used_bytes=1 << 30, load1=0.5))
            kind = "host"
        out.append(
            (event_subject("site1", box, source, kind), env.SerializeToString(), msg_id(source, env.event_id))
        )
    return out


async def fill(url: str, msgs: list[tuple[str, bytes, str]]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=4000)
        await js.add_stream(
            api.StreamConfig(
                name=STREAM, subjects=["amoskys.>"], storage=api.StorageType.FILE, allow_direct=True
            )
        )
        for i in range(0, len(msgs), 2000):
            futures = [
                await js.publish_async(s, d, headers={"Nats-Msg-Id": m}) for s, d, m in msgs[i : i + 2000]
            ]
            await asyncio.gather(*futures)
    finally:
        await nc.close()


async def bare_drain(url: str, n: int) -> float:
    """A bare pull consumer (AckAll) taking n messages: fetch BATCH, ack the last. Events/s."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            "amoskys.>",
            durable="bench-bare",
            stream=STREAM,
            config=api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, max_ack_pending=10_000),
        )
        got = 0
        t0 = time.perf_counter()
        while got < n:
            msgs = await sub.fetch(BATCH, timeout=5)
            for m in msgs:  # what any consumer does per message: its payload, its stream sequence
                _ = (m.data, m.metadata.sequence.stream)
            await msgs[-1].ack()
            got += len(msgs)
        return n / (time.perf_counter() - t0)
    finally:
        await nc.close()


async def consumer(url: str, name: str) -> tuple[int, int, int]:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(STREAM, name)
        return int(info.num_pending or 0), int(info.num_ack_pending or 0), int(info.delivered.stream_seq or 0)
    except nats.js.errors.NotFoundError:
        return -1, -1, 0
    finally:
        await nc.close()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="amoskys-bench-hub-"))
    port = free_port()
    server = subprocess.Popen(
        [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(work / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"nats://127.0.0.1:{port}"
    hub = None
    try:
        wait_port(port)
        msgs = payloads(EVENTS)
        t0 = time.perf_counter()
        asyncio.run(fill(url, msgs))
        fill_rate = EVENTS / (time.perf_counter() - t0)
        bare = asyncio.run(bare_drain(url, EVENTS))

        data = work / "data"
        config = work / "hub.toml"
        config.write_text(HUB_CONFIG.format(url=url, batch=BATCH))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")} | {
            "AMOSKYS_LOG_LEVEL": "warning"
        }
        cmd = [PY, "-m", "amoskys", "run", "--config", str(config), "--data-dir", str(data)]
        cmd += ["--web-listen", "127.0.0.1:0", "--bus-listen", "127.0.0.1:0"]
        hub = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(hub, data)
        cpu0 = cpu_seconds(hub.pid)
        started = None
        peak_rss = 0.0
        while True:
            pending, unacked, delivered = asyncio.run(consumer(url, "amoskys-hub-central"))
            now = time.perf_counter()
            if started is None and delivered > 0:
                started = now
            peak_rss = max(peak_rss, rss_mb(hub.pid))
            if started is not None and pending == 0 and unacked == 0:
                break
            if hub.poll() is not None:
                raise SystemExit(f"hub exited with {hub.returncode}")
            time.sleep(0.05)
        took = now - started
        cpu = cpu_seconds(hub.pid) - cpu0
        rate = EVENTS / took
        print("## bench_hub\n")
        print(
            f"Hub ingest ([sources.nats], batch {BATCH}, AckAll after each commit, SQLite FULL) of {EVENTS} "
            f"events from {BOXES} boxes (alerts and host metrics) pre-filled in one stream; a bare nats-py "
            "pull consumer (fetch, ack the last, nothing stored) over the same messages as the ceiling.\n"
        )
        print("| | events/s | |")
        print("|---|---|---|")
        print(
            f"| hub (`amoskys run`) | {rate:,.0f} | {cpu / took * 100:.0f}% CPU, peak RSS {peak_rss:.0f} MB |"
        )
        print(f"| bare nats-py consumer | {bare:,.0f} | hub = {rate / bare * 100:.0f}% of it |")
        print(f"| (pre-fill, publish_async) | {fill_rate:,.0f} | |")
    finally:
        if hub is not None and hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(15)
            except subprocess.TimeoutExpired:
                hub.kill()
        server.kill()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
