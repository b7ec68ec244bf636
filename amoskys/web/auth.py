"""Dashboard authentication: logins with throttling, server-side sessions, API tokens, CSRF, roles.

- Passwords: scrypt, verified in a worker thread; an unknown user is verified against a dummy hash,
  so it gets the same answer in about the same time as a wrong password.
- Throttling is checked before any hashing: per source address, and per (account, address), so a
  guesser is slowed cheaply while the real admin can still log in from another address. At most
  `MAX_CONCURRENT_HASHES` scrypt computations run at once (bounded CPU under a distributed attack).
- Sessions live in the store (only the SHA-256 of the token); logout revokes; idle and absolute
  timeouts. API tokens are sessions presented as `Authorization: Bearer <token>` (no cookie, no CSRF).
- CSRF: every state-changing request with a session cookie carries `HMAC(secret, session)` in the
  `X-CSRF-Token` header or a `csrf` form field.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from starlette.requests import Request

from amoskys.proto import events_pb2
from amoskys.store.state import ApplianceState
from amoskys.web import passwords

log = structlog.get_logger(__name__)

Role = Literal["admin", "viewer"]
AuditFn = Callable[[events_pb2.AuditEvent], Awaitable[None]]

MAX_CONCURRENT_HASHES = 2
ADDR_MAX_FAILURES, ADDR_WINDOW_S, ADDR_LOCK_S = 20, 600, 600
PAIR_MAX_FAILURES, PAIR_WINDOW_S, PAIR_LOCK_S = 5, 600, 600
_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role
    session: bytes  # the token's hash
    via: Literal["cookie", "token"]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class LoginResult:
    ok: bool
    token: str = ""
    role: Role = "viewer"
    throttled: bool = False
    retry_after_s: int = 0


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
    ) -> None:
        self.state = state
        self._secret = secret
        self._audit = audit
        self.idle_timeout_ns = idle_timeout_s * _S
        self.absolute_timeout_ns = absolute_timeout_s * _S
        self._clock = clock_ns
        self._last_seen: dict[bytes, int] = {}
        self._hashing = asyncio.Semaphore(MAX_CONCURRENT_HASHES)

    # ------------------------------------------------------------------ login / logout
    async def login(self, name: str, password: str, remote: str) -> LoginResult:
        now = self._clock()
        keys = (f"addr:{remote}", f"pair:{name}@{remote}")
        for key in keys:
            throttle = await self.state.get_throttle(key)
            if throttle is not None and throttle.locked(now):
                await self._audit_event("login_throttled", name, remote, False, "")
                return LoginResult(
                    False, throttled=True, retry_after_s=max(1, (throttle.locked_until_ns - now) // _S)
                )
        user = await self.state.get_user(name)
        async with self._hashing:
            good = await passwords.verify_password(
                password, user.password_hash if user else passwords.dummy_hash()
            )
        if not (good and user):
            await self.state.record_login_failure(
                keys[0],
                window_ns=ADDR_WINDOW_S * _S,
                max_failures=ADDR_MAX_FAILURES,
                lockout_ns=ADDR_LOCK_S * _S,
            )
            await self.state.record_login_failure(
                keys[1],
                window_ns=PAIR_WINDOW_S * _S,
                max_failures=PAIR_MAX_FAILURES,
                lockout_ns=PAIR_LOCK_S * _S,
            )
            await self._audit_event("login_failed", name, remote, False, "")
            return LoginResult(False)
        await self.state.clear_throttle(keys[1])
        token = passwords.new_token()
        await self.state.create_session(
            passwords.token_hash(token), user.name, now + self.absolute_timeout_ns
        )
        await self._audit_event("login", name, remote, True, "")
        return LoginResult(True, token=token, role=user.role)

    async def logout(self, principal: Principal, remote: str) -> None:
        await self.state.revoke_session(principal.session)
        self._last_seen.pop(principal.session, None)
        await self._audit_event("logout", principal.user, remote, True, "")

    async def issue_token(self, user: str, days: int) -> str:
        """An API token for scripts (a session presented as a bearer token)."""
        token = passwords.new_token()
        await self.state.create_session(passwords.token_hash(token), user, self._clock() + days * 86400 * _S)
        return token

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
        if session is None:
            return None
        now = self._clock()
        if via == "cookie":
            last = self._last_seen.get(digest, now)
            if now - last > self.idle_timeout_ns:
                await self.state.revoke_session(digest)
                self._last_seen.pop(digest, None)
                return None
            self._last_seen[digest] = now
        user = await self.state.get_user(session.user)
        if user is None:
            return None
        return Principal(user.name, user.role, digest, via)  # type: ignore[arg-type]

    def csrf_token(self, principal: Principal) -> str:
        return hmac.new(self._secret, b"csrf:" + principal.session, hashlib.sha256).hexdigest()

    def csrf_ok(self, principal: Principal, token: str) -> bool:
        return principal.via == "token" or hmac.compare_digest(self.csrf_token(principal), token)

    # ------------------------------------------------------------------ audit
    async def _audit_event(self, action: str, actor: str, remote: str, success: bool, detail: str) -> None:
        await self._audit(
            events_pb2.AuditEvent(
                actor=actor[:64], action=action, remote_addr=remote, success=success, detail=detail
            )
        )

    async def audit(
        self, principal: Principal, action: str, target: str, remote: str, detail: str = ""
    ) -> None:
        await self._audit(
            events_pb2.AuditEvent(
                actor=principal.user,
                action=action,
                target=target,
                remote_addr=remote,
                success=True,
                detail=detail,
            )
        )
