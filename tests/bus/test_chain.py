"""chain.py: where a signed batch stands in its sender's chain (start, next, replay, fork, unknown)."""

from __future__ import annotations

import asyncio

from amoskys.bus.chain import GENESIS, ChainTracker


def d(n: int) -> bytes:
    return bytes([n]) * 32


async def test_a_batch_naming_the_genesis_value_starts_a_chain_every_time() -> None:
    chains = ChainTracker()
    assert await chains.judge("a", GENESIS, d(1)) == "start"
    chains.advance("a", d(1), GENESIS)
    assert await chains.judge("a", d(1), d(2)) == "next"
    chains.advance("a", d(2), d(1))
    # the publisher restarted without its chain state: a new chain, not a fork
    assert await chains.judge("a", GENESIS, d(9)) == "start"
    chains.advance("a", d(9), GENESIS)
    assert await chains.judge("a", d(9), d(10)) == "next"


async def test_a_predecessor_with_another_accepted_successor_is_a_fork() -> None:
    chains = ChainTracker()
    for prev, digest in [(GENESIS, d(1)), (d(1), d(2)), (d(2), d(3))]:
        assert await chains.judge("a", prev, digest) in ("start", "next")
        chains.advance("a", digest, prev)
    assert await chains.judge("a", d(1), d(7)) == "fork"  # d(1) already led to d(2)
    assert chains.successor("a", d(1)) == d(2)
    assert await chains.judge("a", d(3), d(4)) == "next"  # the tip has no successor yet


async def test_replays_are_recognised_whoever_they_name() -> None:
    chains = ChainTracker()
    chains.advance("a", d(1), GENESIS)
    chains.advance("a", d(2), d(1))
    assert await chains.judge("a", d(1), d(2)) == "replay"
    assert await chains.judge("a", GENESIS, d(1)) == "replay"


async def test_pipelined_batches_judged_out_of_order_wait_for_their_predecessor() -> None:
    chains = ChainTracker(wait_seconds=5)
    chains.advance("a", d(1), GENESIS)
    later = asyncio.create_task(chains.judge("a", d(2), d(3)))  # arrives before its predecessor
    await asyncio.sleep(0)
    assert not later.done()
    assert await chains.judge("a", d(1), d(2)) == "next"
    chains.advance("a", d(2), d(1))
    assert await asyncio.wait_for(later, 5) == "next"


async def test_an_unknown_predecessor_is_reported_after_the_wait_not_called_a_fork() -> None:
    chains = ChainTracker(wait_seconds=0.01)
    assert await chains.judge("a", d(5), d(6)) == "unknown"  # nothing known of this sender
    chains.advance("a", d(1), GENESIS)
    assert await chains.judge("a", d(5), d(6)) == "unknown"


async def test_senders_have_separate_chains_and_memory_is_bounded() -> None:
    chains = ChainTracker(recent=3, wait_seconds=0.01)
    chains.advance("a", d(1), GENESIS)
    assert await chains.judge("b", d(1), d(2)) == "unknown"
    for n in range(2, 6):
        chains.advance("a", d(n), d(n - 1))
    assert chains.anchor("a") == d(5)
    assert chains.successor("a", d(1)) is None  # forgotten: only the last 3 digests are kept
    assert await chains.judge("a", d(5), d(6)) == "next"
