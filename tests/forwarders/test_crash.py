"""An agent's forwarder SIGKILLed mid-forward, again and again: every event arrives exactly once and
the bus never sees its chain fork (a real child process killed at 5 random points, a real bus with
mTLS in this process)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import pytest

from amoskys.metrics import Metrics

from .harness import agent_event, agent_events, open_outbox, upstream
from support import eventually

CHILD = Path(__file__).with_name("forward_child.py")
AGENT = "agent-crash"
N = 20_000
KILLS = 5


@pytest.mark.e2e
async def test_a_forwarder_killed_mid_forward_delivers_every_event_once_without_a_fork(
    tmp_path: Path,
) -> None:
    up = await upstream(tmp_path / "appliance")
    try:
        bundle = await up.enroll(AGENT)
        db = tmp_path / "agent" / "events.db"
        await asyncio.to_thread(db.parent.mkdir, parents=True)
        store = await open_outbox(db, Metrics())
        task = asyncio.create_task(store.run())
        for start in range(0, N, 2000):
            await store.submit(agent_events(AGENT, 2000, start))
        await store.close()
        await task

        base = up.store.last_seq  # rows upstream before the agent's (none today; enrolment may add some)

        def stored() -> int:
            # The committed head, not a read of every stored row: reading 16,000 rows between polls let
            # the forwarder drain the outbox before the kill.
            return up.store.last_seq - base

        rng = random.Random()
        targets = sorted(rng.sample(range(500, N - 3000), KILLS))
        killed_at = []
        for target in targets:
            child = await asyncio.create_subprocess_exec(
                sys.executable, str(CHILD), str(db), str(bundle), up.address
            )
            try:
                await eventually(lambda t=target: stored() >= t, within=60, what=f"{target} events upstream")
                os.kill(child.pid, signal.SIGKILL)
            finally:
                if child.returncode is None:
                    child.kill()
                await child.wait()
            killed_at.append(stored())
        assert all(n < N for n in killed_at), f"a kill came after the drain: {killed_at}"

        child = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(db), str(bundle), up.address
        )
        try:
            await eventually(lambda: _every_event_upstream(up), within=60, what="every event upstream")
        finally:
            child.kill()
            await child.wait()
        ids = [e.event_id for e in await up.stored(AGENT)]
        assert len(ids) == N == len(set(ids))
        assert set(ids) == {agent_event(AGENT, i).event_id for i in range(N)}
        assert up.counter("amoskys_bus_chain_forks_total") == 0
        assert up.counter("amoskys_bus_chain_starts_total") == 1  # one chain across every restart
    finally:
        await up.close()


async def _every_event_upstream(up) -> bool:  # type: ignore[no-untyped-def]
    return len(await up.stored(AGENT)) >= N
