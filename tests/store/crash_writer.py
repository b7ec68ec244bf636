"""Child process of test_crash.py: appends deterministic events forever, logging each ack.

    python tests/store/crash_writer.py DB_PATH ACK_LOG

Event i always has the same event_id and envelope bytes, so a restarted child can re-send what the
previous one may or may not have stored. After each future resolves, one line per record,
"<i> <outcome>", is appended to ACK_LOG with a single write() (SIGKILL cannot tear it; the kernel
keeps it even though the process dies). The parent kills this process at random moments.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

import structlog

from amoskys.config import StoreConfig
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store

SOURCE, BOOT = "crash-agent", "0b0b0b0b-0000-4000-8000-000000000000"
RESEND = 30  # re-send this many of the last acked events on start (exercises dedup across kills)
LIFETIME_S = 30.0  # never outlive a parent that forgot us


def event(i: int) -> Record:
    envelope = ev.Envelope(
        event_id=f"00000000-0000-7000-8000-{i:012x}",
        source=SOURCE,
        boot_id=BOOT,
        source_seq=i + 1,
        ts_ns=1_764_000_000_000_000_000 + i,
        flow=ev.FlowRecord(
            src_addr=f"10.0.{i % 250}.1", dst_addr="10.9.9.9", src_port=i % 65536, dst_port=443
        ),
    )
    return Record.from_envelope(envelope)


def first_index(ack_log: Path) -> int:
    try:
        lines = ack_log.read_text().split("\n")
    except FileNotFoundError:
        return 0
    done = [int(line.split()[0]) for line in lines if line.strip()]
    return max(max(done, default=-1) + 1 - RESEND, 0)


async def main(db_path: Path, ack_log: Path) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    store = await Store.open(db_path, StoreConfig(max_batch_wait_ms=1), Metrics())
    fd = os.open(ack_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    next_i = first_index(ack_log)
    deadline = time.monotonic() + LIFETIME_S

    async def submitter(seed: int) -> None:
        nonlocal next_i
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            n = rng.randint(1, 40)
            indices = list(range(next_i, next_i + n))
            next_i += n
            outcomes = await store.submit([event(i) for i in indices])
            os.write(fd, "".join(f"{i} {o.value}\n" for i, o in zip(indices, outcomes, strict=True)).encode())

    async with asyncio.TaskGroup() as tg:
        writer = tg.create_task(store.run())
        async with asyncio.TaskGroup() as submitters:
            for seed in range(3):
                submitters.create_task(submitter(seed))
        await store.close()
        await writer


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
