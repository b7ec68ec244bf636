"""Refused-login audit events aggregated per (outcome, account, address) and minute: a fake clock only."""

from __future__ import annotations

import asyncio

import pytest

from amoskys.proto import events_pb2
from amoskys.web import login_audit
from amoskys.web.login_audit import LoginAudit, aggregated_count

from support import eventually

_S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * _S

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * _S)


def _make() -> tuple[LoginAudit, list[events_pb2.AuditEvent], Clock]:
    stored: list[events_pb2.AuditEvent] = []
    clock = Clock()

    async def audit(event: events_pb2.AuditEvent) -> None:
        stored.append(event)

    return LoginAudit(audit, clock_ns=clock), stored, clock


def _rows(stored: list[events_pb2.AuditEvent]) -> list[tuple[str, str, str, str]]:
    return [(e.action, e.actor, e.remote_addr, e.detail) for e in stored]


async def test_the_first_refusal_is_audited_at_once_and_the_rest_of_the_minute_as_one_count() -> None:
    agg, stored, clock = _make()
    for _ in range(40):
        await agg.record("login_failed", "admin", "192.0.2.1")
        clock.advance(1)  # 40 s: one window
    assert _rows(stored) == [("login_failed", "admin", "192.0.2.1", "")]
    assert agg.pending == 39
    clock.advance(20)  # the window ended (60 s after the first)
    await agg.flush_due()
    assert _rows(stored)[1:] == [("login_failed", "admin", "192.0.2.1", "39 more in 60 s")]
    assert sum(aggregated_count(e) for e in stored) == 40
    assert all(not e.success for e in stored)
    # a quiet minute closes the key: the next refusal is audited at once again
    clock.advance(61)
    await agg.flush_due()
    assert len(stored) == 2 and agg.pending == 0
    await agg.record("login_failed", "admin", "192.0.2.1")
    assert _rows(stored)[2] == ("login_failed", "admin", "192.0.2.1", "")


async def test_a_steady_attack_stores_one_event_a_minute_per_key() -> None:
    agg, stored, clock = _make()
    attempts = 0
    for _ in range(10 * 60 * 5):  # ten minutes, five a second
        await agg.record("login_throttled", "admin", "192.0.2.1")
        attempts += 1
        clock.advance(0.2)
    await agg.close()
    assert 10 <= len(stored) <= 12, _rows(stored)
    assert sum(aggregated_count(e) for e in stored) == attempts


async def test_keys_are_account_address_and_outcome() -> None:
    agg, stored, _ = _make()
    for actor, remote, action in [
        ("admin", "192.0.2.1", "login_failed"),
        ("admin", "192.0.2.2", "login_failed"),
        ("root", "192.0.2.1", "login_failed"),
        ("admin", "192.0.2.1", "login_throttled"),
    ] * 3:
        await agg.record(action, actor, remote)
    assert len(stored) == 4 and agg.pending == 8
    await agg.close()
    assert len(stored) == 8
    assert sorted(e.detail for e in stored[4:]) == ["2 more in 60 s"] * 4
    await agg.record("login_failed", "admin", "192.0.2.1")  # after close: straight through
    await agg.record("login_failed", "admin", "192.0.2.1")
    assert len(stored) == 10 and agg.pending == 0


async def test_too_many_keys_are_counted_under_one_overflow_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_audit, "MAX_KEYS", 3)
    agg, stored, _ = _make()
    for i in range(10):
        await agg.record("login_failed", f"guess-{i}", "192.0.2.1")
    assert [e.actor for e in stored] == ["guess-0", "guess-1", "guess-2", "guess-3"]
    await agg.close()
    assert _rows(stored)[-1] == ("login_failed", "*", "*", "6 more in 60 s")
    assert sum(aggregated_count(e) for e in stored) == 10


async def test_run_audits_a_count_when_its_window_ends() -> None:
    agg, stored, clock = _make()
    task = asyncio.create_task(agg.run())
    try:
        await agg.record("login_failed", "admin", "192.0.2.1")
        await agg.record("login_failed", "admin", "192.0.2.1")
        clock.advance(60)  # the window has ended: run() sleeps 0 s and flushes
        await eventually(lambda: len(stored) == 2, what="the count audited by run()")
        assert stored[1].detail == "1 more in 60 s"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_the_window_must_be_positive() -> None:
    async def audit(event: events_pb2.AuditEvent) -> None: ...

    with pytest.raises(ValueError, match="at least 1 s"):
        LoginAudit(audit, window_s=0)
