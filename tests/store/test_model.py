"""The store as a state machine (append, duplicate, ack, retention, close/reopen) against a plain model."""

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

from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.store import Outcome, Record, Store

from .helpers import HOUR_NS, Clock, flow_envelope, small_config

SOURCES = ("agent-a", "agent-b", "agent-c")
SINKS = ("nats", "upstream")
RETENTION_HOURS = 2


@dataclass
class Model:
    """What the store should hold: rows in store_seq order, and what it must still recognise."""

    rows: dict[tuple[str, str], tuple[int, int, Record]] = field(default_factory=dict)  # key -> (seq, rx, r)
    last_seq: int = 0
    pruned: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, boot) -> source_seq
    boots: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (max_seq, last rx)
    sinks: dict[str, tuple[int, bool]] = field(default_factory=dict)  # name -> (cursor, enabled)

    def append(self, records: list[Record], received_ns: int) -> list[Outcome]:
        out = []
        for r in records:
            key = (r.source, r.event_id)
            if key in self.rows or r.source_seq <= self.pruned.get((r.source, r.boot_id), 0):
                out.append(Outcome.DUPLICATE)
                continue
            self.last_seq += 1
            self.rows[key] = (self.last_seq, received_ns, r)
            boot = (r.source, r.boot_id)
            self.boots[boot] = (max(self.boots.get(boot, (0, 0))[0], r.source_seq), received_ns)
            out.append(Outcome.COMMITTED)
        return out

    def retention(self, now_ns: int, retention_ns: int) -> int:
        """Delete what retention deletes; forget boots gone for twice the retention."""
        deleted = self._delete(now_ns - retention_ns)
        if deleted:
            for boot, (max_seq, received_ns) in list(self.boots.items()):
                if self.pruned.get(boot, 0) >= max_seq and received_ns < now_ns - 2 * retention_ns:
                    del self.boots[boot]
                    self.pruned.pop(boot, None)
        return deleted

    def _delete(self, cutoff_ns: int) -> int:
        enabled = [cursor for cursor, on in self.sinks.values() if on]
        acked = min(enabled) if enabled else self.last_seq
        deleted = 0
        for key, (seq, received_ns, r) in list(self.rows.items()):  # insertion order = seq order
            if seq > acked or received_ns >= cutoff_ns:
                break
            del self.rows[key]
            boot = (r.source, r.boot_id)
            self.pruned[boot] = max(self.pruned.get(boot, 0), r.source_seq)
            deleted += 1
        return deleted


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="amoskys-model-"))
        self.clock = Clock()
        self.model = Model()
        self.stampers = {s: EnvelopeStamper(s) for s in SOURCES}
        self.history: list[Record] = []  # everything ever submitted, for re-sends
        self.counter = 0
        self.store: Store | None = None
        self.writer: asyncio.Task[None] | None = None
        self._open()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _open(self) -> None:
        config = small_config(retention_hours=RETENTION_HOURS)
        self.store = self.run(Store.open(self.dir / "events.db", config, Metrics(), clock_ns=self.clock))
        self.writer = self.loop.create_task(self.store.run())

    def _close(self) -> None:
        assert self.store is not None and self.writer is not None
        self.run(self.store.close())
        self.run(self.writer)
        self.store = self.writer = None

    def teardown(self) -> None:
        try:
            if self.store is not None:
                self._close()
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules

    @rule(
        picks=st.lists(
            st.tuples(
                st.sampled_from(("new", "new", "resend")),
                st.integers(0, len(SOURCES) - 1),
                st.integers(0, 10**6),
            ),
            max_size=15,
        )
    )
    def append(self, picks: list[tuple[str, int, int]]) -> None:
        assert self.store is not None
        records = []
        for what, source, index in picks:
            if what == "resend" and self.history:
                records.append(self.history[index % len(self.history)])
            else:
                self.counter += 1
                envelope = flow_envelope(
                    self.stampers[SOURCES[source]], self.counter, ts_ns=self.clock.now_ns
                )
                records.append(Record.from_envelope(envelope))
        expected = self.model.append(records, self.clock.now_ns)
        store = self.store

        async def submit() -> list[Outcome]:
            return await store.submit(records)  # submit() needs the running loop

        assert self.run(submit()) == expected
        self.history.extend(records)

    @rule(source=st.sampled_from(SOURCES))
    def publisher_restarts(self, source: str) -> None:
        self.stampers[source] = EnvelopeStamper(source)  # a new boot_id, source_seq from 1

    @rule(sink=st.sampled_from(SINKS))
    def register_sink(self, sink: str) -> None:
        assert self.store is not None
        self.run(self.store.state.register_sink(sink))
        self.model.sinks.setdefault(sink, (0, True))

    @precondition(lambda self: bool(self.model.sinks))
    @rule(data=st.data())
    def ack_sink(self, data: st.DataObject) -> None:
        assert self.store is not None
        sink = data.draw(st.sampled_from(sorted(self.model.sinks)))
        seq = data.draw(st.integers(0, self.model.last_seq))
        self.run(self.store.state.ack_sink(sink, seq))
        cursor, enabled = self.model.sinks[sink]
        self.model.sinks[sink] = (max(cursor, seq), enabled)

    @precondition(lambda self: bool(self.model.sinks))
    @rule(data=st.data(), enabled=st.booleans())
    def toggle_sink(self, data: st.DataObject, enabled: bool) -> None:
        assert self.store is not None
        sink = data.draw(st.sampled_from(sorted(self.model.sinks)))
        self.run(self.store.state.set_sink_enabled(sink, enabled))
        self.model.sinks[sink] = (self.model.sinks[sink][0], enabled)

    @rule(hours=st.integers(0, 3))
    def time_passes_and_retention_runs(self, hours: int) -> None:
        assert self.store is not None
        self.clock.advance(hours * HOUR_NS)
        report = self.run(self.store.maintain())
        expected = self.model.retention(self.clock.now_ns, RETENTION_HOURS * HOUR_NS)
        assert report.retention_deleted == expected
        assert report.hard_cap_dropped == 0

    @rule()
    def close_and_reopen(self) -> None:
        self._close()
        self._open()

    # -- invariants

    @invariant()
    def log_matches_the_model(self) -> None:
        assert self.store is not None
        rows, after = [], 0
        while page := self.run(self.store.events(after_seq=after, limit=7)):  # paging is part of the test
            rows.extend(page)
            after = page[-1].store_seq
        got = [(r.store_seq, r.source, r.event_id, r.received_ns, r.envelope) for r in rows]
        want = [(seq, r.source, r.event_id, rx, r.envelope) for seq, rx, r in self.model.rows.values()]
        assert got == want
        stats = self.run(self.store.stats())
        assert (stats.rows, stats.last_seq) == (len(want), self.model.last_seq)

    @invariant()
    def chain_verifies(self) -> None:
        assert self.store is not None
        assert self.run(self.store.verify_chain()).ok


StoreMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_store_matches_a_plain_model = StoreMachine.TestCase
