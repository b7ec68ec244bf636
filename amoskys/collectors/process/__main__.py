"""Run the process collector alone and print what it sees: ``python -m amoskys.collectors.process``.

For troubleshooting (which mode, which events, what is unreadable), for tests that must run it as
another user (``setpriv``), and for the benchmark. Output, one JSON object per line on stdout:
``{"mode": ...}`` once the mode is known, then (with ``--events stdout``) one line per event, and
at the end ``{"summary": ...}``. Logs go to stderr. Stops after ``--seconds``, on SIGINT/SIGTERM, or
when stdin closes (``--until-stdin-closes``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from amoskys import __version__, logs
from amoskys.collectors.context import ApplianceInfo, CollectorContext
from amoskys.collectors.process.collector import ProcessCollector
from amoskys.collectors.process.config import ProcessConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m amoskys.collectors.process", description=__doc__.split("\n")[0]
    )
    p.add_argument("--mode", choices=("auto", "netlink", "polling"), default="auto")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: run until stopped)")
    p.add_argument("--poll-interval", type=float, default=1.0, help="polling mode: seconds between diffs")
    p.add_argument("--snapshot-interval", type=float, default=300.0, help="seconds between snapshots")
    p.add_argument(
        "--events",
        choices=("stdout", "none"),
        default="stdout",
        help="stdout: print each event as it is published; none: only count them",
    )
    p.add_argument("--output", type=Path, help="write every event as a JSON line to this file at the end")
    p.add_argument("--until-stdin-closes", action="store_true", help="also stop when stdin reaches EOF")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    return p.parse_args(argv)


def to_json(envelope: events_pb2.Envelope) -> dict[str, Any]:
    return json_format.MessageToDict(envelope, preserving_proto_field_name=True)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> int:
    kept: list[events_pb2.Envelope] = []

    async def publish(envelopes: Sequence[events_pb2.Envelope]) -> None:
        if args.events == "stdout":
            for envelope in envelopes:
                emit(to_json(envelope))
        if args.output is not None:
            kept.extend(envelopes)

    config = ProcessConfig(
        mode=args.mode,
        poll_interval_seconds=args.poll_interval,
        snapshot_interval_seconds=args.snapshot_interval,
    )
    ctx = CollectorContext(
        "process",
        publish=publish,
        stamper=EnvelopeStamper("probe"),
        metrics=Metrics(),
        data_dir=Path(tempfile.gettempdir()),
        appliance=ApplianceInfo("probe", __version__, socket.gethostname(), "appliance", time.time_ns()),
    )
    collector = ProcessCollector(config, ctx)
    reason = collector.self_check()
    if reason:
        emit({"error": reason})
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.until_stdin_closes:
        # typeshed types sys.stdin.buffer as BinaryIO; at run time it is a BufferedReader, which has read1
        stdin: io.BufferedReader = sys.stdin.buffer  # type: ignore[assignment]
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not stdin.read1(4096) else None)
    task = asyncio.create_task(collector.run())
    waiter = asyncio.create_task(collector.mode_known.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
    emit({"mode": collector.mode})
    stopper = asyncio.create_task(stop.wait())
    try:
        async with asyncio.timeout(args.seconds or None):
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        pass
    cpu = time.process_time()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    stopper.cancel()
    if args.output is not None:
        with args.output.open("w") as f:
            for envelope in kept:
                f.write(json.dumps(to_json(envelope), separators=(",", ":")) + "\n")
    emit({"summary": collector.stats.summary() | {"cpu_seconds": round(cpu, 3), "events": ctx.events}})
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed, as `amoskys run` uses it (the collector's CPU is measured on it)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    logs.setup(arguments.log_level, "json")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        sys.exit(runner.run(main(arguments)))
