"""One-time enrolment tokens in the store (amoskys.store.enrol_tokens): a hash kept, one redemption."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from amoskys.pki.tokens import new_token, secret_hash
from amoskys.store import StateConflictError
from amoskys.store.enrol_tokens import EnrolTokens, TokenRefusedError

from .helpers import Clock, open_store

SECOND = 1_000_000_000
KEY = bytes(32)


def database_bytes(data_dir: Path) -> bytes:
    """Every byte of the database, its -wal included."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("events.db*")))


async def test_only_the_hash_is_stored_and_the_expiry_is_on_the_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock)
    tokens = EnrolTokens(store.state)
    token = new_token(bytes(32))
    await tokens.issue(
        token.id,
        secret_hash(token.secret),
        name="edge-1",
        role="agent",
        ttl_ns=60 * SECOND,
        created_by="cli:op",
    )
    await store.close()
    raw = database_bytes(tmp_path)
    assert raw and token.secret not in raw
    with sqlite3.connect(tmp_path / "events.db") as conn:
        assert conn.execute("SELECT secret_hash FROM enrol_tokens").fetchall() == [
            (secret_hash(token.secret),)
        ]

    store = await open_store(tmp_path / "events.db", clock=clock)
    tokens = EnrolTokens(store.state)
    clock.advance(60 * SECOND)
    with pytest.raises(TokenRefusedError) as refused:
        await tokens.redeem(token.id, secret_hash(token.secret), None, public_key=KEY, cert_serial="1")
    assert refused.value.reason == "expired"
    assert await store.state.get_identity("edge-1") is None
    await store.close()


async def test_two_endpoints_racing_with_one_token_get_one_identity(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db", clock=Clock())
    tokens = EnrolTokens(store.state)
    token = new_token(bytes(32))
    hashed = secret_hash(token.secret)
    await tokens.issue(token.id, hashed, name="edge-2", role="relay", ttl_ns=60 * SECOND, created_by="cli:op")

    results = await asyncio.gather(
        *(
            tokens.redeem(token.id, hashed, None, public_key=bytes([i]) * 32, cert_serial=str(i))
            for i in range(8)
        ),
        return_exceptions=True,
    )

    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, TokenRefusedError)]
    assert len(won) == 1 and len(lost) == 7 and {e.reason for e in lost} == {"reused"}
    ident = await store.state.get_identity("edge-2")
    assert ident is not None and ident.role == "relay" and (await tokens.get(token.id)).used_ns is not None  # type: ignore[union-attr]
    await store.close()


async def test_an_enrolled_name_gets_no_token_until_it_is_revoked(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db", clock=Clock())
    tokens = EnrolTokens(store.state)
    await store.state.enroll_identity("edge-3", "agent", KEY, "1")
    token = new_token(bytes(32))

    with pytest.raises(StateConflictError):
        await tokens.issue(token.id, b"h", name="EDGE-3", role="agent", ttl_ns=SECOND, created_by="cli:op")

    await store.state.revoke_identity("edge-3")
    await tokens.issue(
        token.id, secret_hash(token.secret), name="edge-3", role="agent", ttl_ns=SECOND, created_by="cli:op"
    )
    await tokens.redeem(
        token.id, secret_hash(token.secret), "edge-3", public_key=bytes([7]) * 32, cert_serial="2"
    )
    ident = await store.state.get_identity("edge-3")
    assert ident is not None and not ident.revoked and ident.public_key == bytes([7]) * 32
    assert await tokens.set_cert_serial("edge-3", "3")
    await store.state.revoke_identity("edge-3")
    assert not await tokens.set_cert_serial("edge-3", "4")  # a revoked identity keeps its serial
    await store.close()
