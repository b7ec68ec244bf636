"""A writer process SIGKILLed at random points, many times: no ack is lost, nothing is doubled."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

from amoskys.store import Outcome

from .helpers import open_store

CHILD = Path(__file__).with_name("crash_writer.py")
KILLS = 15


def _acked_lines(ack_log: Path) -> int:
    try:
        return ack_log.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _read_acks(ack_log: Path) -> list[tuple[int, str]]:
    return [(int(i), outcome) for i, outcome in (line.split() for line in ack_log.read_text().splitlines())]


def _db_facts(path: Path) -> tuple[list[str], list[int], list[tuple[str]], int]:
    conn = sqlite3.connect(path)
    try:
        ids = [r[0] for r in conn.execute("SELECT event_id FROM events WHERE kind = 'flow'")]
        seqs = [r[0] for r in conn.execute("SELECT store_seq FROM events ORDER BY store_seq")]
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        losses = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'loss'").fetchone()[0]
    finally:
        conn.close()
    return ids, seqs, integrity, losses


async def test_sigkilled_writer_loses_no_acked_event_and_doubles_none(tmp_path: Path) -> None:
    db, ack_log = tmp_path / "events.db", tmp_path / "acks.log"
    rng = random.Random(20261127)
    for _ in range(KILLS):
        before = _acked_lines(ack_log)
        child = await asyncio.create_subprocess_exec(sys.executable, str(CHILD), str(db), str(ack_log))
        try:
            deadline = time.monotonic() + 20
            while _acked_lines(ack_log) <= before:  # it is up and acking
                assert child.returncode is None, f"crash_writer exited with {child.returncode}"
                assert time.monotonic() < deadline, "crash_writer never acked anything"
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0.0, 0.25))  # then a random point mid-stream
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        assert child.returncode == -signal.SIGKILL

    acks = _read_acks(ack_log)
    first_outcome: dict[int, str] = {}
    for i, outcome in acks:
        if i in first_outcome:
            # a re-send of an event already acked must be recognised, never stored again
            assert outcome == Outcome.DUPLICATE.value, f"event {i} acked twice as {outcome}"
        first_outcome.setdefault(i, outcome)

    # reopening runs the start-time checks (quick check, truncated-WAL detection) as after a crash
    store = await open_store(db)
    try:
        check = await store.verify_chain()
    finally:
        await store.close()
    ids, seqs, integrity, losses = _db_facts(db)
    stored = set(ids)
    acked_ids = {f"00000000-0000-7000-8000-{i:012x}" for i in first_outcome}
    assert len(first_outcome) > KILLS * 10, "the children acked too little to prove anything"
    assert acked_ids <= stored, f"{len(acked_ids - stored)} acknowledged events lost"
    assert len(ids) == len(stored), "an event was stored twice"
    assert seqs == list(range(1, len(seqs) + 1)), "store_seq has a gap"
    assert integrity == [("ok",)]
    assert losses == 0, "a crash was mistaken for a truncated WAL"
    assert check.ok
