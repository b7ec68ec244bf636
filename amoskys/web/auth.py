"""Dashboard authentication: logins with throttling, server-side sessions, API tokens, CSRF, roles.

- Passwords: scrypt, verified in a worker thread; an unknown user is verified against a dummy hash,
  so it gets the same answer in about the same time as a wrong password.
- Login fields are length-capped before anything else (`MAX_NAME_CHARS`, `MAX_PASSWORD_CHARS`): an
  over-long one is refused and never hashed.
- Throttling is decided before any hashing: per source address, and per (account, address), so a
  guesser is slowed cheaply while the real admin can still log in from another address. Each attempt
  takes an in-flight slot before its first await, and failures plus attempts in flight may not pass
  the limit, so concurrent guesses beyond it are refused unhashed (see `_Tally`). At most
  `MAX_CONCURRENT_HASHES` scrypt computations run at once (bounded CPU under a distributed attack),
  and one address holds at most `HASHES_PER_ADDRESS` of them (its other attempts wait in a queue of
  its own, bounded by its throttle limit), so one address cannot make everyone else wait.
- Sessions live in the store (only the SHA-256 of the token); logout revokes; idle and absolute
  timeouts. API tokens are rows of another kind, presented as `Authorization: Bearer <token>` (no
  cookie, no CSRF, no idle timeout): a session value is refused as a bearer and a token as a cookie.
  A token never outgrows its issuer: its expiry and role are clamped to the issuing session's or
  token's, and revoking a session or token revokes every token it issued (and theirs).
- A password change needs the current password (throttled like a login at that address), and ends
  the user's other sessions and tokens.
- CSRF: every state-changing request with a session cookie carries `HMAC(secret, session)` in the
  `X-CSRF-Token` header or a `csrf` form field.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from amoskys.proto import events_pb2
from amoskys.store.state import ApplianceState, Session
from amoskys.web import passwords
from amoskys.web.login_audit import LoginAudit
from amoskys.web.metrics import WebMetrics

log = structlog.get_logger(__name__)

Role = Literal["admin", "viewer"]
AuditFn = Callable[[events_pb2.AuditEvent], Awaitable[None]]

MAX_CONCURRENT_HASHES = 2
HASHES_PER_ADDRESS = 1
ADDR_MAX_FAILURES, ADDR_WINDOW_S, ADDR_LOCK_S = 20, 600, 600
PAIR_MAX_FAILURES, PAIR_WINDOW_S, PAIR_LOCK_S = 5, 600, 600
MAX_NAME_CHARS = 64  # user names are 1-64 characters (amoskys users add, POST /api/v1/users)
MAX_PASSWORD_CHARS = passwords.MAX_PASSWORD_CHARS
_ROLE_RANK = {"viewer": 0, "admin": 1}
_S = 1_000_000_000


def login_fields_problem(name: str, password: str) -> str:
    """Why a login's name and password are refused before any hashing ("" when they are fine)."""
    if not name or not password:
        return "name and password are required"
    if len(name) > MAX_NAME_CHARS:
        return f"name: at most {MAX_NAME_CHARS} characters (got {len(name)})"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"password: at most {MAX_PASSWORD_CHARS} characters (got {len(password)})"
    return ""


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role
    session: bytes  # the token's hash
    via: Literal["cookie", "token"]
    expires_ns: int = 0  # the session's absolute end (0: unknown)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def lower_role(a: Role, b: Role | None) -> Role:
    """The lesser of two roles (`b` None: `a`)."""
    return a if b is None or _ROLE_RANK[a] <= _ROLE_RANK[b] else b


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # the secret, shown once
    row: Session
    clamped: bool  # the expiry asked for was past the issuer's: it got the issuer's


@dataclass(frozen=True, slots=True)
class PasswordChange:
    ok: bool
    problem: str = ""  # the new password breaks a rule (a 400)
    wrong: bool = False  # the current password is wrong (a 403)
    throttled: bool = False
    retry_after_s: int = 0
    ended: int = 0  # other sessions and tokens revoked


@dataclass(frozen=True, slots=True)
class LoginResult:
    ok: bool
    token: str = ""
    role: Role = "viewer"
    throttled: bool = False
    retry_after_s: int = 0
    invalid: str = ""  # why the fields were refused unhashed (a 400, not a failed login)


@dataclass(slots=True)
class _Tally:
    """One throttle key (an address, or an account at an address) while logins for it are under way:
    its failures as stored, and the attempts admitted but not yet decided (`pending`). Admission is
    synchronous: an attempt is refused when failures plus pending reach the limit, and otherwise takes
    a pending slot at once, before it awaits anything. A tally lives while a login holds it (its store
    writes included) and is loaded from the store again afterwards, so the store stays the truth."""

    key: str
    max_failures: int
    window_ns: int
    lockout_ns: int
    failures: int = 0
    window_start_ns: int = 0
    locked_until_ns: int = 0
    pending: int = 0
    holders: int = 0
    loaded: bool = False
    loading: asyncio.Event | None = None
    # only used on address tallies: the address's own queue for the global hashing slots
    hash_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(HASHES_PER_ADDRESS))

    def failures_at(self, now: int) -> int:
        return self.failures if now - self.window_start_ns < self.window_ns else 0

    def full(self, now: int, *, mine: int = 0) -> bool:
        """No further attempt may start (`mine`: this attempt's own slot is already in `pending`)."""
        return now < self.locked_until_ns or self.failures_at(now) + self.pending - mine >= self.max_failures

    def retry_after_s(self, now: int) -> int:
        return max(1, (self.locked_until_ns - now) // _S)

    def count_failure(self, now: int) -> None:
        """The same arithmetic as ApplianceState.record_login_failure, in memory, with no await."""
        if now - self.window_start_ns >= self.window_ns:
            self.failures, self.window_start_ns = 0, now
        self.failures += 1
        if self.failures >= self.max_failures:
            self.locked_until_ns = max(self.locked_until_ns, now + self.lockout_ns)

    def clear(self) -> None:
        self.failures = self.window_start_ns = self.locked_until_ns = 0


class Auth:
    def __init__(
        self,
        state: ApplianceState,
        *,
        secret: bytes,
        audit: AuditFn,
        idle_timeout_s: int = 1800,
        absolute_timeout_s: int = 12 * 3600,
        clock_ns: Callable[[], int] = time.time_ns,
        metrics: WebMetrics | None = None,
    ) -> None:
        self.state = state
        self.metrics = metrics if metrics is not None else WebMetrics(CollectorRegistry())
        self._secret = secret
        self._audit = audit
        self.idle_timeout_ns = idle_timeout_s * _S
        self.absolute_timeout_ns = absolute_timeout_s * _S
        self._clock = clock_ns
        self.login_audit = LoginAudit(audit, clock_ns=clock_ns)  # refused logins: one event a minute
        self._last_seen: dict[bytes, int] = {}
        self._hashing = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
        self._tallies: dict[str, _Tally] = {}
        self._watchers: dict[bytes, set[asyncio.Event]] = {}

    # ------------------------------------------------------------------ session end notification
    def watch(self, session: bytes) -> asyncio.Event:
        """An event set when `session` ends by logout or revocation (its user removed, its password
        changed, the token revoked). Expiry is the watcher's to time (`Principal.expires_ns`).
        Call `unwatch` when done."""
        event = asyncio.Event()
        self._watchers.setdefault(session, set()).add(event)
        return event

    def unwatch(self, session: bytes, event: asyncio.Event) -> None:
        events = self._watchers.get(session)
        if events is not None:
            events.discard(event)
            if not events:
                del self._watchers[session]

    def _ended(self, *sessions: bytes) -> None:
        """Tell the watchers of these sessions that they have ended."""
        for session in sessions:
            for event in self._watchers.pop(session, ()):
                event.set()

    # ------------------------------------------------------------------ login / logout
    async def login(self, name: str, password: str, remote: str) -> LoginResult:
        problem = login_fields_problem(name, password)
        if problem:
            self.metrics.logins.labels("invalid").inc()
            return LoginResult(False, invalid=problem)
        # no await before the slots are taken: concurrent attempts see each other here
        tallies = (
            self._hold(f"addr:{remote}", ADDR_MAX_FAILURES, ADDR_WINDOW_S, ADDR_LOCK_S),
            self._hold(f"pair:{name}@{remote}", PAIR_MAX_FAILURES, PAIR_WINDOW_S, PAIR_LOCK_S),
        )
        try:
            return await self._attempt(name, password, remote, tallies)
        finally:
            for tally in tallies:
                self._unhold(tally)

    async def _attempt(
        self, name: str, password: str, remote: str, tallies: tuple[_Tally, _Tally]
    ) -> LoginResult:
        now = self._clock()
        full = next((t for t in tallies if t.full(now)), None)
        if full is not None:
            return await self._throttled(name, remote, full, now)
        for tally in tallies:
            tally.pending += 1
        decided = False
        try:
            for tally in tallies:  # what the store says: lockouts and failures of finished logins
                await self._load(tally)
            now = self._clock()
            full = next((t for t in tallies if t.full(now, mine=1)), None)
            if full is not None:
                self._settle(tallies)
                decided = True
                return await self._throttled(name, remote, full, now)
            user = await self.state.get_user(name)
            async with tallies[0].hash_slots, self._hashing:
                self.metrics.password_checks.inc()
                good = await passwords.verify_password(
                    password, user.password_hash if user else passwords.dummy_hash()
                )
            now = self._clock()
            if not (good and user):
                self._settle(tallies, failed_at=now)
                decided = True
                for tally in tallies:
                    await self.state.record_login_failure(
                        tally.key,
                        window_ns=tally.window_ns,
                        max_failures=tally.max_failures,
                        lockout_ns=tally.lockout_ns,
                    )
                self.metrics.logins.labels("failed").inc()
                await self.login_audit.record("login_failed", name, remote)
                return LoginResult(False)
            self._settle(tallies)
            decided = True
            tallies[1].clear()  # the account's failures at this address are forgiven
        finally:
            if not decided:  # an error or a cancellation before the outcome: give the slots back
                self._settle(tallies)
        await self.state.clear_throttle(tallies[1].key)
        token = passwords.new_token()
        await self.state.create_session(
            passwords.token_hash(token), user.name, now + self.absolute_timeout_ns, kind="session"
        )
        self.metrics.logins.labels("ok").inc()
        await self._audit_event("login", name, remote, True, "")
        return LoginResult(True, token=token, role=user.role)

    async def _throttled(self, name: str, remote: str, full: _Tally, now: int) -> LoginResult:
        self.metrics.logins.labels("throttled").inc()
        await self.login_audit.record("login_throttled", name, remote)
        return LoginResult(False, throttled=True, retry_after_s=full.retry_after_s(now))

    def _hold(self, key: str, max_failures: int, window_s: int, lockout_s: int) -> _Tally:
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally(key, max_failures, window_s * _S, lockout_s * _S)
        tally.holders += 1
        return tally

    def _unhold(self, tally: _Tally) -> None:
        tally.holders -= 1
        if tally.holders == 0:  # every write of its logins is done: the store has it all
            del self._tallies[tally.key]

    @staticmethod
    def _settle(tallies: tuple[_Tally, ...], *, failed_at: int | None = None) -> None:
        """An attempt is decided: free its slots (counting its failure first, with no await between)."""
        for tally in tallies:
            if failed_at is not None:
                tally.count_failure(failed_at)
            tally.pending -= 1

    async def _load(self, tally: _Tally) -> None:
        """Fill a new tally from the store, once: concurrent logins wait for the one that reads it (if
        that read fails, the next one tries)."""
        while not tally.loaded:
            if tally.loading is not None:
                await tally.loading.wait()
                continue
            loading = tally.loading = asyncio.Event()
            try:
                stored = await self.state.get_throttle(tally.key)
            finally:
                tally.loading = None
                loading.set()
            if stored is not None:
                tally.failures = stored.failures
                tally.window_start_ns = stored.window_start_ns
                tally.locked_until_ns = stored.locked_until_ns
            tally.loaded = True

    async def logout(self, principal: Principal, remote: str) -> None:
        await self.revoke(principal.session)
        await self._audit_event("logout", principal.user, remote, True, "")

    async def revoke(self, session: bytes) -> list[bytes]:
        """Revoke a session or token and the tokens it issued; end their live streams."""
        ended = await self.state.revoke_session(session)
        self._forget(session, *ended)
        return ended

    async def end_user_sessions(self, user: str, *, keep: bytes | None = None) -> list[bytes]:
        """Revoke every session and token of `user` but `keep`; end their live streams."""
        ended = await self.state.end_user_sessions(user, keep=keep)
        self._forget(*ended)
        return ended

    def touch(self, session: bytes) -> None:
        """Count activity on a cookie session this process has seen (an open live stream): its idle
        clock starts over."""
        if session in self._last_seen:
            self._last_seen[session] = self._clock()

    def _forget(self, *sessions: bytes) -> None:
        for session in sessions:
            self._last_seen.pop(session, None)
        self._ended(*sessions)

    async def issue_token(
        self, issuer: Principal, days: int, *, label: str = "", role: Role | None = None
    ) -> IssuedToken:
        """An API token for scripts, issued by a session or another token: it expires no later than
        its issuer (a longer life asked for is clamped), its role is at most the issuer's, and it is
        revoked with its issuer."""
        wanted = self._clock() + days * 86400 * _S
        expires = min(wanted, issuer.expires_ns) if issuer.expires_ns else wanted
        token = passwords.new_token()
        row = await self.state.create_session(
            passwords.token_hash(token),
            issuer.user,
            expires,
            kind="token",
            issued_by=issuer.session,
            label=label,
            role=lower_role(issuer.role, role),
        )
        return IssuedToken(token, row, clamped=expires < wanted)

    async def revoke_token(self, principal: Principal, public_id: str) -> Session | None:
        """Revoke the active token of this public id (and what it issued) when it is the principal's
        own, or the principal is an admin; None otherwise (not found and not allowed look alike)."""
        row = await self.state.find_token(public_id)
        if row is None or (row.user != principal.user and not principal.is_admin):
            return None
        await self.revoke(row.id_hash)
        return row

    async def change_password(
        self, principal: Principal, current: str, new: str, remote: str
    ) -> PasswordChange:
        """Set a new password when `current` is right (guesses count against the login throttle of
        this account at this address); the user's other sessions and tokens end."""
        problem = login_fields_problem(principal.user, current) or passwords.new_password_problem(new)
        if problem:
            return PasswordChange(False, problem=problem)
        tally = self._hold(f"pair:{principal.user}@{remote}", PAIR_MAX_FAILURES, PAIR_WINDOW_S, PAIR_LOCK_S)
        try:
            good = await self._check_current(tally, principal.user, current)
        finally:
            self._unhold(tally)
        if good is None:
            now = self._clock()
            await self._audit_event("password_change_throttled", principal.user, remote, False, "")
            return PasswordChange(False, throttled=True, retry_after_s=tally.retry_after_s(now))
        if not good:
            await self._audit_event("password_change_failed", principal.user, remote, False, "")
            return PasswordChange(False, wrong=True)
        if not await self.state.set_password(principal.user, await passwords.hash_password(new)):
            return PasswordChange(False, wrong=True)  # the user was removed meanwhile
        ended = await self.end_user_sessions(principal.user, keep=principal.session)
        await self._audit_event(
            "password_changed", principal.user, remote, True, f"{len(ended)} other sessions and tokens ended"
        )
        return PasswordChange(True, ended=len(ended))

    async def _check_current(self, tally: _Tally, name: str, password: str) -> bool | None:
        """Verify a user's current password under a throttle tally (None: throttled)."""
        if tally.full(self._clock()):
            return None
        tally.pending += 1
        decided = False
        try:
            await self._load(tally)
            if tally.full(self._clock(), mine=1):
                self._settle((tally,))
                decided = True
                return None
            user = await self.state.get_user(name)
            async with self._hashing:
                self.metrics.password_checks.inc()
                good = await passwords.verify_password(
                    password, user.password_hash if user else passwords.dummy_hash()
                )
            if good and user:
                self._settle((tally,))
                decided = True
                return True
            self._settle((tally,), failed_at=self._clock())
            decided = True
            await self.state.record_login_failure(
                tally.key,
                window_ns=tally.window_ns,
                max_failures=tally.max_failures,
                lockout_ns=tally.lockout_ns,
            )
            return False
        finally:
            if not decided:
                self._settle((tally,))

    # ------------------------------------------------------------------ each request
    async def authenticate(self, request: Request, cookie_name: str) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token, via = header[7:].strip(), "token"
        else:
            token, via = request.cookies.get(cookie_name, ""), "cookie"
        if not token:
            return None
        digest = passwords.token_hash(token)
        session = await self.state.active_session(digest)
        # a session cookie is never a bearer token (it would skip CSRF and the idle timeout), and an
        # API token is never a cookie
        if session is None or session.kind != ("token" if via == "token" else "session"):
            return None
        now = self._clock()
        if via == "cookie":
            last = self._last_seen.get(digest, now)
            if now - last > self.idle_timeout_ns:
                await self.revoke(digest)
                return None
            self._last_seen[digest] = now
        user = await self.state.get_user(session.user)
        if user is None:
            return None
        role = lower_role(user.role, session.role)
        return Principal(user.name, role, digest, via, session.expires_ns)  # type: ignore[arg-type]

    def csrf_token(self, principal: Principal) -> str:
        return hmac.new(self._secret, b"csrf:" + principal.session, hashlib.sha256).hexdigest()

    def csrf_ok(self, principal: Principal, token: str) -> bool:
        """Bytes are compared (compare_digest raises TypeError on a non-ASCII str: a 500, not a 403)."""
        if principal.via == "token":
            return True
        return hmac.compare_digest(
            self.csrf_token(principal).encode(), token.encode("utf-8", "surrogateescape")
        )

    # ------------------------------------------------------------------ audit
    async def _audit_event(self, action: str, actor: str, remote: str, success: bool, detail: str) -> None:
        await self._audit(
            events_pb2.AuditEvent(
                actor=actor[:64], action=action, remote_addr=remote, success=success, detail=detail
            )
        )

    async def audit(
        self,
        principal: Principal,
        action: str,
        target: str,
        remote: str,
        detail: str = "",
        *,
        success: bool = True,
    ) -> None:
        await self._audit(
            events_pb2.AuditEvent(
                actor=principal.user,
                action=action,
                target=target,
                remote_addr=remote,
                success=success,
                detail=detail,
            )
        )
