"""The log state changes only under the transaction lock, held by the task that changes it."""

from __future__ import annotations

import asyncio

import pytest

from amoskys.store.logstate import Head, LogState, Tip
from amoskys.store.space import SpaceLadder


def _state() -> LogState:
    return LogState(Head(Tip(10, b"\0" * 32, 10), {}), SpaceLadder(1000, 2000))


async def test_head_space_and_backoff_change_only_under_the_lock() -> None:
    state = _state()
    with pytest.raises(RuntimeError, match="needs the transaction lock"):
        state.adopt_commit(Tip(11, b"\1" * 32, 11), {("a", "b"): 1}, 5, 100, 1)
    with pytest.raises(RuntimeError, match="needs the transaction lock"):
        state.adopt_measure(1500)
    with pytest.raises(RuntimeError, match="needs the transaction lock"):
        state.fail(0.0, 0.05, 5.0)
    assert state.head.tip.last_seq == 10 and state.head.marks == {}  # nothing changed
    async with state.lock:
        state.adopt_commit(Tip(11, b"\1" * 32, 11), {("a", "b"): 1}, 5, 100, 1)
        state.adopt_measure(1500)
        assert state.fail(0.0, 0.05, 5.0) is True
    assert state.head.tip.last_seq == 11 and state.head.marks[("a", "b")].max_seq == 1
    assert state.space.ladder.state.value == "high_water" and state.backoff.failing


async def test_the_lock_held_by_another_task_does_not_count() -> None:
    state = _state()
    held, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with state.lock:
            held.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    try:
        with pytest.raises(RuntimeError, match="needs the transaction lock"):
            state.mark_reload()
    finally:
        release.set()
        await task
    assert not state.head.reload_needed
