"""Appliance state: users, sessions, login throttles, identities, sink cursors, chain anchors.

Small typed records with their own API, kept in the store's database but not in the event log.
Changes run as short IMMEDIATE transactions on the writer's connection, between the writer's own
transactions (one asyncio lock orders them), so a read-modify-write here is atomic with respect to
the writer and to every other state change. Reads use the store's reader connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiosqlite

from amoskys.errors import StoreError
from amoskys.store.errors import StateConflictError
from amoskys.store.sql import fetch_one, rollback_quietly

UserRole = Literal["admin", "viewer"]
SessionKind = Literal["session", "token"]
IdentityRole = Literal["agent", "relay", "loadgen"]
IDENTITY_ROLES: tuple[str, ...] = ("agent", "relay", "loadgen")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str  # an scrypt hash string made by the caller; never logged
    role: UserRole
    created_ns: int
    updated_ns: int


@dataclass(frozen=True, slots=True)
class Session:
    """A login session (presented as a cookie) or an API token (presented as a bearer token)."""

    id_hash: bytes
    user: str
    created_ns: int
    expires_ns: int
    revoked_ns: int | None
    kind: SessionKind = "session"
    issued_by: bytes | None = None  # the id_hash of the session or token that issued this token
    label: str = ""  # a token's name, given at creation
    role: UserRole | None = None  # a token's role cap (None: the user's role)

    def active(self, now_ns: int) -> bool:
        return self.revoked_ns is None and now_ns < self.expires_ns

    @property
    def public_id(self) -> str:
        """A short id to list and revoke by (a prefix of the hash: it reveals nothing of the secret)."""
        return public_id(self.id_hash)


def public_id(id_hash: bytes) -> str:
    return id_hash[:PUBLIC_ID_BYTES].hex()


PUBLIC_ID_BYTES = 6
_SESSION_COLUMNS = "id_hash, user, created_ns, expires_ns, revoked_ns, kind, issued_by, label, role"
# the rows issued by the seed rows, and theirs, down the tree (the seeds included)
_ISSUED_TREE = (
    "WITH RECURSIVE tree(h) AS ({seed} UNION SELECT s.id_hash FROM sessions s JOIN tree ON s.issued_by = tree.h) "
    "UPDATE sessions SET revoked_ns = ? WHERE id_hash IN (SELECT h FROM tree) AND id_hash != ? "
    "AND revoked_ns IS NULL RETURNING id_hash"
)


@dataclass(frozen=True, slots=True)
class Throttle:
    key: str
    failures: int  # failed attempts within the current window
    window_start_ns: int
    locked_until_ns: int

    def locked(self, now_ns: int) -> bool:
        return now_ns < self.locked_until_ns


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: IdentityRole
    public_key: bytes  # raw Ed25519 public key
    cert_serial: str
    enrolled_ns: int
    revoked_ns: int | None

    @property
    def revoked(self) -> bool:
        return self.revoked_ns is not None


@dataclass(frozen=True, slots=True)
class SinkCursor:
    name: str
    store_seq: int  # every row up to here is acked by the sink
    enabled: bool
    updated_ns: int


@dataclass(frozen=True, slots=True)
class ChainAnchor:
    sender: str
    digest: bytes  # the digest of the sender's last accepted batch
    ts_ns: int


class ApplianceState:
    """The appliance-state API of one open Store (use `store.state`)."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        lock: asyncio.Lock,
        clock_ns: Callable[[], int],
        path: str,
        closed: Callable[[], bool],
    ) -> None:
        self._writer = writer
        self._closed = closed
        self._reader = reader
        self._lock = lock
        self._clock_ns = clock_ns
        self._path = path
        #: Every change made through this object moves the generation; a cached read is good while it
        #: has not moved and for CACHE_SECONDS at most: the appliance makes every change to users and
        #: sessions here (the CLI goes through the control socket), and a change written into the
        #: database by anything else is seen within that time.
        self._generation = 0
        self._cache: dict[tuple[str, object], tuple[int, float, Any]] = {}

    # -- plumbing

    async def _cached(self, key: tuple[str, object], read: Callable[[], Awaitable[_T]]) -> _T:
        """`read()`'s answer, kept until the next change (the dashboard asks for the same session and
        user on every request: two thread hops each, under load milliseconds)."""
        generation, now = self._generation, time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == generation and now - hit[1] < CACHE_SECONDS:
            value: _T = hit[2]
            return value
        value = await read()
        if generation == self._generation:  # nothing changed meanwhile
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = (generation, now, value)
        return value

    def _check_open(self) -> None:
        if self._closed():
            raise StoreError(f"store {self._path} is closed: appliance state is not available")

    async def _change(self, what: str, body: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """Run `body` in one IMMEDIATE transaction on the writer connection."""
        self._check_open()
        async with self._lock:
            self._check_open()  # the store may have closed while this waited for its turn
            db = self._writer
            self._generation += 1  # before and after: a read racing the change caches neither
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    result = await body(db)
                    await db.execute("COMMIT")
                except BaseException:
                    await rollback_quietly(db)
                    raise
            except sqlite3.Error as err:
                raise StoreError(f"store {self._path}: appliance state: cannot {what}: {err}") from err
            finally:
                self._generation += 1
            return result

    async def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        self._check_open()
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as err:
            raise StoreError(f"store {self._path}: appliance state: cannot read: {err}") from err

    # -- users

    async def create_user(self, name: str, password_hash: str, role: UserRole) -> User:
        """Add a user; StateConflictError when the name is taken."""
        _check_choice("role", role, ("admin", "viewer"))
        now = self._clock_ns()

        async def body(db: aiosqlite.Connection) -> None:
            try:
                await db.execute(
                    "INSERT INTO users (name, password_hash, role, created_ns, updated_ns) VALUES (?, ?, ?, ?, ?)",
                    (name, password_hash, role, now, now),
                )
            except sqlite3.IntegrityError as err:
                raise StateConflictError(f"user {name!r} already exists", kind="user", key=name) from err

        await self._change(f"create user {name!r}", body)
        return User(name, password_hash, role, now, now)

    async def get_user(self, name: str) -> User | None:
        async def read() -> User | None:
            rows = await self._rows(
                "SELECT name, password_hash, role, created_ns, updated_ns FROM users WHERE name = ?", (name,)
            )
            return User(*rows[0]) if rows else None

        return await self._cached(("user", name), read)

    async def list_users(self) -> list[User]:
        rows = await self._rows(
            "SELECT name, password_hash, role, created_ns, updated_ns FROM users ORDER BY name"
        )
        return [User(*r) for r in rows]

    async def count_users(self) -> int:
        return int((await self._rows("SELECT COUNT(*) FROM users"))[0][0])

    async def set_password(self, name: str, password_hash: str) -> bool:
        """Replace a user's password hash; False when there is no such user. Sessions are kept:
        revoke them with `revoke_user_sessions` when the change should log the user out."""
        return await self._update_one(
            f"set the password of {name!r}",
            "UPDATE users SET password_hash = ?, updated_ns = ? WHERE name = ?",
            (password_hash, self._clock_ns(), name),
        )

    async def set_role(self, name: str, role: UserRole) -> bool:
        _check_choice("role", role, ("admin", "viewer"))
        return await self._update_one(
            f"set the role of {name!r}",
            "UPDATE users SET role = ?, updated_ns = ? WHERE name = ?",
            (role, self._clock_ns(), name),
        )

    async def delete_user(self, name: str) -> bool:
        """Remove a user and their sessions; False when there is no such user."""
        return await self._update_one(f"delete user {name!r}", "DELETE FROM users WHERE name = ?", (name,))

    # -- sessions

    async def create_session(
        self,
        id_hash: bytes,
        user: str,
        expires_ns: int,
        *,
        kind: SessionKind = "session",
        issued_by: bytes | None = None,
        label: str = "",
        role: UserRole | None = None,
    ) -> Session:
        """Record a session or an API token (by the hash of its secret); StateConflictError when the
        user does not exist or the id is taken. The caller clamps a token's expiry and role to its
        issuer's (amoskys.web.auth)."""
        _check_choice("kind", kind, ("session", "token"))
        if role is not None:
            _check_choice("role", role, ("admin", "viewer"))
        now = self._clock_ns()

        async def body(db: aiosqlite.Connection) -> None:
            try:
                await db.execute(
                    f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                    (id_hash, user, now, expires_ns, kind, issued_by, label, role),
                )
            except sqlite3.IntegrityError as err:
                raise StateConflictError(
                    f"cannot create a session for user {user!r}: no such user, or the session id is taken",
                    kind="session",
                    key=user,
                ) from err

        await self._change(f"create a {kind} for {user!r}", body)
        return Session(id_hash, user, now, expires_ns, None, kind, issued_by, label, role)

    async def get_session(self, id_hash: bytes) -> Session | None:
        """The session with this id hash (active or not: see `Session.active`)."""

        async def read() -> Session | None:
            rows = await self._rows(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id_hash = ?", (id_hash,))
            return Session(*rows[0]) if rows else None

        return await self._cached(("session", id_hash), read)

    async def list_tokens(self, user: str | None = None) -> list[Session]:
        """The active API tokens of `user` (None: of every user), oldest first."""
        where = "kind = 'token' AND revoked_ns IS NULL AND expires_ns > ?"
        params: list[object] = [self._clock_ns()]
        if user is not None:
            where += " AND user = ?"
            params.append(user)
        rows = await self._rows(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE {where} ORDER BY created_ns, id_hash",
            tuple(params),
        )
        return [Session(*r) for r in rows]

    async def find_token(self, public: str) -> Session | None:
        """The active API token whose public id is `public` (None when there is none, or the id is
        malformed)."""
        if len(public) != 2 * PUBLIC_ID_BYTES or not all(c in "0123456789abcdef" for c in public):
            return None
        tokens = [t for t in await self.list_tokens() if t.public_id == public]
        return tokens[0] if len(tokens) == 1 else None

    async def active_session(self, id_hash: bytes) -> Session | None:
        """The session if it exists, is not revoked and has not expired."""
        session = await self.get_session(id_hash)
        return session if session is not None and session.active(self._clock_ns()) else None

    async def revoke_session(self, id_hash: bytes) -> list[bytes]:
        """Revoke a session or token and every token it issued (and theirs); returns the id hashes
        revoked now (empty when it was not active)."""
        return await self._revoke_tree(
            "revoke a session", _ISSUED_TREE.format(seed="SELECT ?"), (id_hash, self._clock_ns(), b"")
        )

    async def end_user_sessions(self, user: str, *, keep: bytes | None = None) -> list[bytes]:
        """Revoke every session and token of a user but `keep` (the one changing the password), and
        every token they issued; returns the id hashes revoked now."""
        return await self._revoke_tree(
            f"revoke the sessions of {user!r}",
            _ISSUED_TREE.format(seed="SELECT id_hash FROM sessions WHERE user = ?"),
            (user, self._clock_ns(), keep or b""),
        )

    async def revoke_user_sessions(self, user: str) -> int:
        """Revoke every active session and token of a user; returns how many."""
        return len(await self.end_user_sessions(user))

    async def _revoke_tree(self, what: str, sql: str, params: tuple[object, ...]) -> list[bytes]:
        async def body(db: aiosqlite.Connection) -> list[bytes]:
            return [bytes(r[0]) for r in await db.execute_fetchall(sql, params)]

        return await self._change(what, body)

    async def purge_sessions(self) -> int:
        """Delete expired and revoked sessions; returns how many."""
        return await self._update_many(
            "purge sessions",
            "DELETE FROM sessions WHERE expires_ns <= ? OR revoked_ns IS NOT NULL",
            (self._clock_ns(),),
        )

    # -- login throttles

    async def get_throttle(self, key: str) -> Throttle | None:
        rows = await self._rows(
            "SELECT key, failures, window_start_ns, locked_until_ns FROM login_throttles WHERE key = ?",
            (key,),
        )
        return Throttle(*rows[0]) if rows else None

    async def record_login_failure(
        self, key: str, *, window_ns: int, max_failures: int, lockout_ns: int
    ) -> Throttle:
        """Count one failed login for `key` (atomically). Failures older than `window_ns` start a new
        window; reaching `max_failures` within one locks the key for `lockout_ns`."""
        if max_failures < 1 or window_ns <= 0 or lockout_ns < 0:
            raise ValueError(
                f"record_login_failure: need max_failures >= 1, window_ns > 0, lockout_ns >= 0 "
                f"(got {max_failures}, {window_ns}, {lockout_ns})"
            )
        now = self._clock_ns()

        async def body(db: aiosqlite.Connection) -> Throttle:
            rows = list(
                await db.execute_fetchall(
                    "SELECT failures, window_start_ns, locked_until_ns FROM login_throttles WHERE key = ?",
                    (key,),
                )
            )
            failures, start, locked_until = rows[0] if rows else (0, now, 0)
            if now - start >= window_ns:
                failures, start = 0, now
            failures += 1
            if failures >= max_failures:
                locked_until = max(locked_until, now + lockout_ns)
            await db.execute(
                "INSERT INTO login_throttles (key, failures, window_start_ns, locked_until_ns) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                "window_start_ns = excluded.window_start_ns, locked_until_ns = excluded.locked_until_ns",
                (key, failures, start, locked_until),
            )
            return Throttle(key, failures, start, locked_until)

        return await self._change(f"record a login failure for {key!r}", body)

    async def clear_throttle(self, key: str) -> bool:
        """Forget the failures of `key` (after a successful login)."""
        return await self._update_one(
            f"clear the throttle of {key!r}", "DELETE FROM login_throttles WHERE key = ?", (key,)
        )

    # -- identities

    async def enroll_identity(
        self, name: str, role: IdentityRole, public_key: bytes, cert_serial: str
    ) -> Identity:
        """Record an enrolled identity. StateConflictError when an unrevoked one has the name; a
        revoked one is replaced (re-enrolment)."""
        _check_choice("role", role, IDENTITY_ROLES)
        now = self._clock_ns()

        async def body(db: aiosqlite.Connection) -> None:
            rows = list(
                await db.execute_fetchall("SELECT revoked_ns FROM identities WHERE name = ?", (name,))
            )
            if rows and rows[0][0] is None:
                raise StateConflictError(
                    f"identity {name!r} is already enrolled (revoke it first)", kind="identity", key=name
                )
            await db.execute(
                "INSERT OR REPLACE INTO identities (name, role, public_key, cert_serial, enrolled_ns, revoked_ns) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (name, role, public_key, cert_serial, now),
            )

        await self._change(f"enroll identity {name!r}", body)
        return Identity(name, role, public_key, cert_serial, now, None)

    async def get_identity(self, name: str) -> Identity | None:
        rows = await self._rows(
            "SELECT name, role, public_key, cert_serial, enrolled_ns, revoked_ns FROM identities WHERE name = ?",
            (name,),
        )
        return Identity(*rows[0]) if rows else None

    async def list_identities(self) -> list[Identity]:
        rows = await self._rows(
            "SELECT name, role, public_key, cert_serial, enrolled_ns, revoked_ns FROM identities ORDER BY name"
        )
        return [Identity(*r) for r in rows]

    async def revoke_identity(self, name: str) -> bool:
        """Mark an identity revoked; False when there is no unrevoked identity of that name."""
        return await self._update_one(
            f"revoke identity {name!r}",
            "UPDATE identities SET revoked_ns = ? WHERE name = ? AND revoked_ns IS NULL",
            (self._clock_ns(), name),
        )

    # -- sink cursors

    async def register_sink(self, name: str, *, start_seq: int = 0) -> SinkCursor:
        """Make a sink known (enabled, at `start_seq`); an existing sink is returned unchanged."""
        now = self._clock_ns()

        async def body(db: aiosqlite.Connection) -> SinkCursor:
            await db.execute(
                "INSERT OR IGNORE INTO sink_cursors (name, store_seq, enabled, updated_ns) VALUES (?, ?, 1, ?)",
                (name, start_seq, now),
            )
            return _sink(
                await fetch_one(
                    db,
                    "SELECT name, store_seq, enabled, updated_ns FROM sink_cursors WHERE name = ?",
                    (name,),
                )
            )

        return await self._change(f"register sink {name!r}", body)

    async def ack_sink(self, name: str, store_seq: int) -> bool:
        """Advance a sink's cursor to `store_seq` (never backwards); False when the sink is unknown."""

        async def body(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
                "UPDATE sink_cursors SET store_seq = MAX(store_seq, ?), updated_ns = ? WHERE name = ?",
                (store_seq, self._clock_ns(), name),
            )
            return cursor.rowcount == 1

        return await self._change(f"ack sink {name!r}", body)

    async def set_sink_enabled(self, name: str, enabled: bool) -> bool:
        """A disabled sink no longer holds back retention."""
        return await self._update_one(
            f"{'enable' if enabled else 'disable'} sink {name!r}",
            "UPDATE sink_cursors SET enabled = ?, updated_ns = ? WHERE name = ?",
            (1 if enabled else 0, self._clock_ns(), name),
        )

    async def remove_sink(self, name: str) -> bool:
        return await self._update_one(
            f"remove sink {name!r}", "DELETE FROM sink_cursors WHERE name = ?", (name,)
        )

    async def get_sink(self, name: str) -> SinkCursor | None:
        rows = await self._rows(
            "SELECT name, store_seq, enabled, updated_ns FROM sink_cursors WHERE name = ?", (name,)
        )
        return _sink(rows[0]) if rows else None

    async def list_sinks(self) -> list[SinkCursor]:
        rows = await self._rows("SELECT name, store_seq, enabled, updated_ns FROM sink_cursors ORDER BY name")
        return [_sink(r) for r in rows]

    # -- chain anchors

    async def get_chain_anchor(self, sender: str) -> ChainAnchor | None:
        rows = await self._rows("SELECT sender, digest, ts_ns FROM chain_anchors WHERE sender = ?", (sender,))
        return ChainAnchor(*rows[0]) if rows else None

    async def set_chain_anchor(self, anchor: ChainAnchor) -> None:
        """Record a sender's last accepted batch digest (prefer passing it to `Store.submit`, which
        writes it in the same transaction as the batch's events)."""

        async def body(db: aiosqlite.Connection) -> None:
            await db.execute(UPSERT_ANCHOR, (anchor.sender, anchor.digest, anchor.ts_ns))

        await self._change(f"set the chain anchor of {anchor.sender!r}", body)

    # -- helpers

    async def _update_one(self, what: str, sql: str, params: tuple[object, ...]) -> bool:
        return await self._update_many(what, sql, params) > 0

    async def _update_many(self, what: str, sql: str, params: tuple[object, ...]) -> int:
        async def body(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(sql, params)
            return int(cursor.rowcount)

        return await self._change(what, body)


#: Cached reads kept at most (cleared whole when full), and for how long.
_CACHE_ENTRIES = 1024
CACHE_SECONDS = 1.0

UPSERT_ANCHOR = (
    "INSERT INTO chain_anchors (sender, digest, ts_ns) VALUES (?, ?, ?) "
    "ON CONFLICT (sender) DO UPDATE SET digest = excluded.digest, ts_ns = excluded.ts_ns"
)


def _sink(row: tuple[Any, ...]) -> SinkCursor:
    name, seq, enabled, updated = row
    return SinkCursor(str(name), int(seq), bool(enabled), int(updated))


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
