"""The appliance-state API: users, sessions, throttles, identities, sink cursors, chain anchors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from amoskys.errors import StoreError
from amoskys.events import EnvelopeStamper
from amoskys.store import ChainAnchor, StateConflictError

from .helpers import Clock, flow_records, open_store, running

SECOND = 1_000_000_000


async def test_users_can_be_created_changed_and_deleted(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock)
    state = store.state
    user = await state.create_user("alice", "scrypt$1$abc", "admin")
    assert await state.get_user("alice") == user
    with pytest.raises(StateConflictError) as info:
        await state.create_user("alice", "scrypt$1$other", "viewer")
    assert info.value.kind == "user" and info.value.key == "alice"
    with pytest.raises(ValueError, match="role"):
        await state.create_user("bob", "h", "root")  # type: ignore[arg-type]
    clock.advance(SECOND)
    assert await state.set_password("alice", "scrypt$1$new")
    assert await state.set_role("alice", "viewer")
    assert not await state.set_password("nobody", "h")
    changed = await state.get_user("alice")
    assert changed is not None
    assert (changed.password_hash, changed.role, changed.updated_ns) == (
        "scrypt$1$new",
        "viewer",
        clock.now_ns,
    )
    await state.create_user("bob", "h", "viewer")
    assert [u.name for u in await state.list_users()] == ["alice", "bob"]
    assert await state.count_users() == 2
    assert await state.delete_user("bob") and not await state.delete_user("bob")
    await store.close()
    # state survives a reopen
    store = await open_store(tmp_path / "events.db", clock=clock)
    assert [u.name for u in await store.state.list_users()] == ["alice"]
    await store.close()


async def test_sessions_expire_are_revocable_and_go_with_their_user(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock)
    state = store.state
    await state.create_user("alice", "h", "admin")
    s1 = await state.create_session(b"1" * 32, "alice", expires_ns=clock.now_ns + 10 * SECOND)
    await state.create_session(b"2" * 32, "alice", expires_ns=clock.now_ns + 10 * SECOND)
    with pytest.raises(StateConflictError):
        await state.create_session(b"3" * 32, "nobody", expires_ns=clock.now_ns + SECOND)
    assert await state.active_session(b"1" * 32) == s1
    assert await state.revoke_session(b"1" * 32)
    assert await state.active_session(b"1" * 32) is None
    revoked = await state.get_session(b"1" * 32)
    assert revoked is not None and revoked.revoked_ns == clock.now_ns
    clock.advance(11 * SECOND)
    assert await state.active_session(b"2" * 32) is None  # expired
    assert await state.purge_sessions() == 2
    await state.create_session(b"4" * 32, "alice", expires_ns=clock.now_ns + SECOND)
    assert await state.revoke_user_sessions("alice") == 1
    await state.create_session(b"5" * 32, "alice", expires_ns=clock.now_ns + SECOND)
    await state.delete_user("alice")
    assert await state.get_session(b"5" * 32) is None  # cascaded
    await store.close()


async def test_login_throttle_locks_after_max_failures_in_a_window(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock)
    state = store.state
    kw = {"window_ns": 60 * SECOND, "max_failures": 3, "lockout_ns": 300 * SECOND}
    assert (await state.record_login_failure("user:alice", **kw)).failures == 1
    clock.advance(61 * SECOND)  # the window passed: counting starts over
    assert (await state.record_login_failure("user:alice", **kw)).failures == 1
    await state.record_login_failure("user:alice", **kw)
    third = await state.record_login_failure("user:alice", **kw)
    assert third.failures == 3 and third.locked(clock.now_ns)
    assert third.locked_until_ns == clock.now_ns + 300 * SECOND
    assert await state.get_throttle("user:alice") == third
    assert await state.clear_throttle("user:alice")
    assert await state.get_throttle("user:alice") is None
    await store.close()


async def test_concurrent_login_failures_are_all_counted(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    kw = {"window_ns": 600 * SECOND, "max_failures": 1000, "lockout_ns": SECOND}
    async with running(store):
        # state changes interleave with event batches on the same connection
        events = [store.submit(flow_records(EnvelopeStamper(f"a{i}"), 20)) for i in range(10)]
        await asyncio.gather(*(store.state.record_login_failure("addr:192.0.2.7", **kw) for _ in range(50)))
        await asyncio.gather(*events)
        throttle = await store.state.get_throttle("addr:192.0.2.7")
        stats = await store.stats()
    assert throttle is not None and throttle.failures == 50
    assert stats.rows == 200


async def test_identities_enrol_revoke_and_re_enrol(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock)
    state = store.state
    ident = await state.enroll_identity("edge-2", "agent", b"k" * 32, "0a1b")
    assert await state.get_identity("edge-2") == ident and not ident.revoked
    with pytest.raises(StateConflictError):
        await state.enroll_identity("edge-2", "agent", b"x" * 32, "0a1c")
    clock.advance(SECOND)
    assert await state.revoke_identity("edge-2")
    assert not await state.revoke_identity("edge-2")
    revoked = await state.get_identity("edge-2")
    assert revoked is not None and revoked.revoked_ns == clock.now_ns
    again = await state.enroll_identity("edge-2", "relay", b"y" * 32, "0a1d")
    assert (await state.list_identities()) == [again]
    await store.close()


async def test_sink_cursors_only_move_forward(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    state = store.state
    sink = await state.register_sink("nats")
    assert (sink.store_seq, sink.enabled) == (0, True)
    assert await state.register_sink("nats", start_seq=99) == sink  # idempotent
    assert await state.ack_sink("nats", 10)
    assert await state.ack_sink("nats", 5)
    got = await state.get_sink("nats")
    assert got is not None and got.store_seq == 10
    assert not await state.ack_sink("unknown", 1)
    assert await state.set_sink_enabled("nats", False)
    assert [(s.name, s.enabled) for s in await state.list_sinks()] == [("nats", False)]
    assert await state.remove_sink("nats")
    assert await state.list_sinks() == []
    await store.close()


async def test_chain_anchor_set_and_get(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    assert await store.state.get_chain_anchor("edge-2") is None
    await store.state.set_chain_anchor(ChainAnchor("edge-2", b"d" * 32, 5))
    await store.state.set_chain_anchor(ChainAnchor("edge-2", b"e" * 32, 6))
    assert await store.state.get_chain_anchor("edge-2") == ChainAnchor("edge-2", b"e" * 32, 6)
    await store.close()


async def test_state_and_reads_after_close_raise_store_error(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    pending = store.state.create_user("late", "h", "viewer")  # waits for the lock behind close
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await pending
    with pytest.raises(StoreError, match="closed"):
        await store.state.get_user("alice")
    with pytest.raises(StoreError, match="closed"):
        await store.events()
