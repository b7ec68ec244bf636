"""The outbox as a state machine (append, seal, ack, retention, close/reopen) against a plain model:
after every reopen the bus sink rebuilds exactly the batches sealed and not acked, byte for byte, the
chain never breaks, and retention never deletes a row the sink has not acked."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from amoskys.app import appliance_credentials
from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.config import ApplianceConfig, BusConfig, Config, StoreConfig
from amoskys.forwarders.bus import BusSink
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.pki.enrolment import enroll_agent
from amoskys.pki.signatures import GENESIS_DIGEST
from amoskys.store import Store
from amoskys.store.outbox import AdvanceCursor, RegisterSinks

from .harness import TRUST, agent_events

AGENT = "agent-model"
HOUR_NS = 3600 * 1_000_000_000
_IDENTITY: PublisherIdentity | None = None


def identity() -> PublisherIdentity:
    """One enrolment bundle for every example (issuing certificates is slow)."""
    global _IDENTITY
    if _IDENTITY is None:
        root = Path(tempfile.mkdtemp(prefix="amoskys-outbox-model-pki-"))
        config = Config(appliance=ApplianceConfig(name="appliance"), bus=BusConfig(trust_domain=TRUST))
        creds = appliance_credentials(config, Layout(root))
        enroll_agent(
            creds, name=AGENT, role="agent", trust_domain=TRUST, bus_address="127.0.0.1:9", out_dir=root / "b"
        )
        _IDENTITY = PublisherIdentity.from_bundle(root / "b")
    return _IDENTITY


class Clock:
    def __init__(self) -> None:
        self.now_ns = 1_764_000_000 * 1_000_000_000

    def __call__(self) -> int:
        return self.now_ns


@dataclass
class Model:
    appended: int = 0  # events submitted (store_seq = index + 1: nothing else writes rows)
    sealed: list[tuple[int, int, bytes]] = field(default_factory=list)  # (first, last, SignedBatch bytes)
    acked: int = 0  # sealed batches acked, oldest first
    cursor: int = 0
    deleted_upto: int = 0  # retention deleted every row up to here

    @property
    def read_pos(self) -> int:
        return self.sealed[-1][1] if self.sealed else 0

    def unacked(self) -> list[bytes]:
        return [b for _, _, b in self.sealed[self.acked :]]


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="amoskys-outbox-model-"))
        self.clock = Clock()
        self.model = Model()
        self.store: Store | None = None
        self.sink: BusSink | None = None
        self.writer: asyncio.Task[None] | None = None
        self.identity = identity()  # before the loop runs: it reads and writes files
        self._open(resume=False)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _open(self, *, resume: bool) -> None:
        config = StoreConfig(max_batch_wait_ms=1, retention_hours=1)
        self.store = store = self.run(
            Store.open(self.dir / "events.db", config, Metrics(), clock_ns=self.clock)
        )
        self.writer = self.loop.create_task(store.run())

        async def start() -> BusSink:
            await store.submit_outbox([RegisterSinks({"bus": None})])
            return BusSink(BusClient(self.identity, "127.0.0.1:9"), store)  # never sends: no channel use

        self.sink = self.run(start())
        resumed = self.run(self.sink.resume(self.model.cursor))
        if resume:  # what was sealed and not acked, byte for byte, and the chain goes on from its tip
            assert [b.payload.SerializeToString() for b in resumed] == self.model.unacked()
        else:
            assert resumed == []

    def _close(self) -> None:
        assert self.store is not None and self.writer is not None and self.sink is not None
        self.run(self.sink.close())
        self.run(self.store.close())
        self.run(self.writer)
        self.store = self.writer = self.sink = None

    def teardown(self) -> None:
        try:
            if self.store is not None:
                self._close()
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules

    @rule(n=st.integers(1, 40))
    def append(self, n: int) -> None:
        assert self.store is not None
        store, start = self.store, self.model.appended

        async def submit() -> None:
            await store.submit(agent_events(AGENT, n, start))

        self.run(submit())
        self.model.appended += n

    @precondition(lambda self: self.model.appended > self.model.read_pos)
    @rule(k=st.integers(1, 25))
    def seal(self, k: int) -> None:
        assert self.store is not None and self.sink is not None
        read = self.run(self.store.outbox_read(after_seq=self.model.read_pos, kinds=None, limit=k))
        assert [r[0] for r in read.rows] == list(
            range(self.model.read_pos + 1, self.model.read_pos + 1 + len(read.rows))
        )
        batch = self.run(self.sink.seal(read.rows))
        self.model.sealed.append((batch.first_seq, batch.last_seq, batch.payload.SerializeToString()))

    @precondition(lambda self: self.model.acked < len(self.model.sealed))
    @rule()
    def ack_oldest(self) -> None:
        assert self.store is not None
        last = self.model.sealed[self.model.acked][1]
        store = self.store

        async def advance() -> None:
            await store.submit_outbox([AdvanceCursor("bus", last)])

        self.run(advance())
        self.model.acked += 1
        self.model.cursor = last

    @rule(hours=st.integers(0, 2))
    def time_passes_and_retention_runs(self, hours: int) -> None:
        assert self.store is not None
        self.clock.now_ns += hours * HOUR_NS
        self.run(self.store.maintain())

    @rule()
    def close_and_reopen(self) -> None:
        self._close()
        self._open(resume=True)

    # -- invariants

    @invariant()
    def every_row_the_sink_has_not_acked_is_kept(self) -> None:
        assert self.store is not None
        after = self.model.cursor
        read = self.run(self.store.outbox_read(after_seq=after, kinds=None, limit=100_000))
        assert [r[0] for r in read.rows] == list(range(after + 1, self.model.appended + 1))

    @invariant()
    def the_cursor_and_the_kept_batches_match_the_model(self) -> None:
        assert self.store is not None
        cursor = self.run(self.store.sink_cursor("bus"))
        assert cursor is not None and cursor.store_seq == self.model.cursor
        kept = self.run(self.store.sealed_batches("bus"))
        tip = max(self.model.acked - 1, 0)  # the newest acked one stays: the chain's tip
        assert [(b.first_seq, b.last_seq) for b in kept] == [(f, la) for f, la, _ in self.model.sealed[tip:]]
        prev, rest = (kept[0].digest, kept[1:]) if self.model.acked else (GENESIS_DIGEST, kept)
        for b in rest:
            assert b.prev_digest == prev  # one unbroken chain, from genesis
            prev = b.digest


OutboxMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_outbox_matches_a_plain_model = OutboxMachine.TestCase
