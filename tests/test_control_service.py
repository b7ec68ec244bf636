"""The one control service against a real store and a real Supervisor: every action is done and
audited with its actor and outcome, refusals are audited as failures, and ended sessions are told."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from control_support import service_env

from amoskys.control_service import (
    Actor,
    BadRequestError,
    UnknownAgentError,
    UnknownTokenError,
    UnknownUserError,
)
from amoskys.store.errors import StateConflictError
from amoskys.supervisor import CollectorRefusedError, UnknownCollectorError
from amoskys.web.passwords import token_hash, verify_password

from support import eventually

OPS = Actor("cli:ops")
ADMIN = Actor("admin", remote="192.0.2.7")
PASSWORD = "a-long-enough-password"
KEY = bytes(range(32))


def _row(event) -> tuple[str, str, str, bool]:  # type: ignore[no-untyped-def]
    return (event.actor, event.action, event.target, event.success)


async def _session(state, user: str, secret: str, *, issued_by: bytes | None = None) -> bytes:  # type: ignore[no-untyped-def]
    row = await state.create_session(
        token_hash(secret),
        user,
        time.time_ns() + 3600 * 10**9,
        kind="token" if issued_by else "session",
        issued_by=issued_by,
    )
    return row.id_hash  # type: ignore[no-any-return]


async def test_collector_actions_are_audited_and_a_refusal_as_a_failure(tmp_path: Path) -> None:
    async with service_env(tmp_path) as env:
        sup = env.supervisor
        await eventually(lambda: sup.status_of("waiter").state == "running", what="waiter to run")
        stopped = await env.service.collector(OPS, "stop", "waiter")
        assert stopped.state == "stopped"
        with pytest.raises(CollectorRefusedError, match="already stopped"):
            await env.service.collector(ADMIN, "stop", "waiter")
        with pytest.raises(UnknownCollectorError):
            await env.service.collector(OPS, "stop", "nope")  # nothing to act on: not audited
        rows = await env.audit_rows()
        assert [_row(e) for e in rows] == [
            ("cli:ops", "collector_stop", "waiter", True),
            ("admin", "collector_stop", "waiter", False),
        ]
        assert rows[0].detail == "stopped: stopped by operator"
        assert rows[1].detail.startswith("refused: collector 'waiter' is already stopped")
        assert rows[1].remote_addr == "192.0.2.7"


async def test_revoking_an_agent_records_it_applies_it_live_and_audits_it(tmp_path: Path) -> None:
    applied: list[str] = []

    async def revoke_live(name: str) -> int:
        # the bus re-reads the store: the revocation is recorded before it is applied
        ident = await env.store.state.get_identity(name)
        assert ident is not None and ident.revoked_ns is not None
        applied.append(name)
        return 2

    async with service_env(tmp_path, revoke_live=revoke_live) as env:
        await env.store.state.enroll_identity("edge-1", "agent", KEY, "17")
        first = await env.service.revoke_agent(OPS, "edge-1")
        again = await env.service.revoke_agent(OPS, "edge-1")
        with pytest.raises(UnknownAgentError):
            await env.service.revoke_agent(OPS, "edge-9")
        assert (first.newly_revoked, first.calls_ended) == (True, 2)
        assert (again.newly_revoked, again.calls_ended) == (False, 2)
        assert applied == ["edge-1", "edge-1"]
        rows = await env.audit_rows()
        assert [(_row(e), e.detail) for e in rows] == [
            (("cli:ops", "agent_revoked", "edge-1", True), "2 calls ended"),
            (("cli:ops", "agent_revoked", "edge-1", True), "already revoked; 2 calls ended"),
        ]


async def test_an_enrolment_is_audited_and_a_taken_name_as_a_failure(tmp_path: Path) -> None:
    async with service_env(tmp_path) as env:
        await env.service.record_enrolment(OPS, "edge-1", "relay", KEY, "17")
        with pytest.raises(StateConflictError):
            await env.service.record_enrolment(OPS, "edge-1", "agent", KEY, "18")
        ident = await env.store.state.get_identity("edge-1")
        assert ident is not None and ident.role == "relay"
        rows = await env.audit_rows()
        assert [_row(e) for e in rows] == [
            ("cli:ops", "agent_enrolled", "edge-1", True),
            ("cli:ops", "agent_enrolled", "edge-1", False),
        ]


async def test_user_actions_are_audited_and_ended_sessions_are_told(tmp_path: Path) -> None:
    async with service_env(tmp_path) as env:
        state = env.store.state
        assert await env.service.add_user(OPS, "ana", "viewer", PASSWORD) is True
        with pytest.raises(StateConflictError):
            await env.service.add_user(OPS, "ana", "viewer", PASSWORD)
        with pytest.raises(BadRequestError, match="12 characters"):
            await env.service.add_user(OPS, "bob", "viewer", "short")
        assert await state.get_user("bob") is None

        first = await _session(state, "ana", "s1")
        child = await _session(state, "ana", "t1", issued_by=first)
        assert await env.service.add_user(ADMIN, "ana", "admin", PASSWORD + "2", replace=True) is False
        assert sorted(env.ended[-1]) == sorted([first, child])
        user = await state.get_user("ana")
        assert user is not None and user.role == "admin"

        second = await _session(state, "ana", "s2")
        assert await env.service.set_password(OPS, "ana", "another-long-password") == 1
        assert env.ended[-1] == [second]
        user = await state.get_user("ana")
        assert user is not None and await verify_password("another-long-password", user.password_hash)
        with pytest.raises(UnknownUserError):
            await env.service.set_password(OPS, "nobody", "another-long-password")

        third = await _session(state, "ana", "s3")
        assert await env.service.remove_user(OPS, "ana") == 1
        assert env.ended[-1] == [third] and await state.get_user("ana") is None
        with pytest.raises(UnknownUserError):
            await env.service.remove_user(OPS, "ana")

        rows = await env.audit_rows()
        assert [(_row(e), e.detail) for e in rows] == [
            (("cli:ops", "user_added", "ana", True), "viewer"),
            (("admin", "user_replaced", "ana", True), "admin; 2 sessions and tokens ended"),
            (("cli:ops", "password_set", "ana", True), "1 sessions and tokens ended"),
            (("cli:ops", "user_removed", "ana", True), "1 sessions and tokens ended"),
        ]
        assert "another-long-password" not in str(rows) and PASSWORD not in str(rows)


async def test_tokens_issued_and_revoked_are_audited(tmp_path: Path) -> None:
    async with service_env(tmp_path) as env:
        state = env.store.state
        await env.service.add_user(OPS, "ana", "viewer", PASSWORD)
        secret, row = await env.service.issue_token(OPS, "ana", 30, label="nightly", role="admin")
        assert row.role == "viewer"  # at most the user's role
        assert (await state.find_token(row.public_id)).id_hash == token_hash(secret)  # type: ignore[union-attr]
        with pytest.raises(UnknownUserError):
            await env.service.issue_token(OPS, "nobody", 30)
        with pytest.raises(BadRequestError):
            await env.service.issue_token(OPS, "ana", 366)
        child = await _session(state, "ana", "child", issued_by=row.id_hash)

        revoked, count = await env.service.revoke_token(ADMIN, row.public_id)
        assert (revoked.public_id, count) == (row.public_id, 2)
        assert sorted(env.ended[-1]) == sorted([row.id_hash, child])
        with pytest.raises(UnknownTokenError):
            await env.service.revoke_token(ADMIN, row.public_id)

        rows = await env.audit_rows()
        assert [(_row(e), e.detail) for e in rows[1:]] == [
            (("cli:ops", "token_issued", "ana", True), f"{row.public_id}; viewer; 30 days"),
            (("admin", "token_revoked", "ana", True), f"{row.public_id}; 2 revoked"),
        ]
        assert secret not in str(rows)
