"""The one control service: every state-changing action on an appliance, audited.

The control socket (``amoskys collectors …``, ``amoskys agents revoke …`` while the appliance runs), the
web API and the CLI working on a stopped appliance's data dir all call this, so each action is done and
recorded one way whoever asks. Every call names its actor — ``cli:<unix user>`` (from SO_PEERCRED on the
control socket, or the invoking user for the CLI), or the dashboard user's name — and the remote
address when there is one; each outcome, refusals included, becomes one AuditEvent.

Errors are the callers' to present: an unknown collector raises UnknownCollectorError, a refused
action CollectorRefusedError (audited as a failure), an agent that is not enrolled UnknownAgentError.
"""

from __future__ import annotations

import getpass
import os
import pwd
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog

from amoskys.errors import AmoskysError
from amoskys.proto import events_pb2
from amoskys.supervisor import CollectorRefusedError, CollectorStatus
from amoskys.web import passwords

if TYPE_CHECKING:
    from amoskys.store.state import ApplianceState, Session
    from amoskys.supervisor import Supervisor

log = structlog.get_logger(__name__)

#: Stores one AuditEvent (through the bus, so it is stamped, committed and fanned out like any event).
AuditSink = Callable[[events_pb2.AuditEvent], Awaitable[None]]
#: Applies a recorded revocation in the running bus; returns how many calls in progress it ended.
Revoker = Callable[[str], Awaitable[int]]
#: Told the id hashes of sessions and tokens that just ended (the dashboard ends their live streams).
SessionsEnded = Callable[[Sequence[bytes]], None]

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROLES = ("admin", "viewer")

CollectorAction = Literal["start", "stop", "restart"]
COLLECTOR_ACTIONS: tuple[CollectorAction, ...] = ("start", "stop", "restart")


class UnknownActionError(AmoskysError, LookupError):
    """An action the service does not know (from the web path or a control socket request)."""


class UnknownAgentError(AmoskysError, LookupError):
    """No agent of that name is enrolled."""


class UnknownUserError(AmoskysError, LookupError):
    """No dashboard user of that name."""


class UnknownTokenError(AmoskysError, LookupError):
    """No active API token with that public id."""


class BadRequestError(AmoskysError, ValueError):
    """A value the action cannot take (a weak password, a bad name or role); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: ``cli:<unix user>`` or a dashboard user's name, and from where (empty: this box)."""

    name: str
    remote: str = ""

    @classmethod
    def unix_user(cls, uid: int | None = None) -> Actor:
        """``cli:<name>`` for `uid` (default: this process's user); the number when it has no name."""
        if uid is None:
            uid = os.getuid()
            try:
                return cls(f"cli:{getpass.getuser()}")
            except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER
                return cls(f"cli:{uid}")
        try:
            return cls(f"cli:{pwd.getpwuid(uid).pw_name}")
        except KeyError:
            return cls(f"cli:{uid}")


@dataclass(frozen=True, slots=True)
class Revocation:
    agent: str
    newly_revoked: bool  # False: it was revoked already (nothing changed in the store)
    calls_ended: int | None  # None: no bus runs in this process (applied at the appliance's next start)


class ControlService:
    """The audited actions. `supervisor` and `revoke_live` are None when no appliance runs in this
    process (the CLI on a stopped data dir): collector actions are then refused, revocations recorded."""

    def __init__(
        self,
        state: ApplianceState,
        audit: AuditSink,
        *,
        supervisor: Supervisor | None = None,
        revoke_live: Revoker | None = None,
        sessions_ended: SessionsEnded | None = None,
    ) -> None:
        self.state = state
        self._audit = audit
        self.supervisor = supervisor
        self._revoke_live = revoke_live
        self._sessions_ended = sessions_ended

    async def audit(
        self, actor: Actor, action: str, target: str, detail: str = "", *, success: bool = True
    ) -> None:
        await self._audit(
            events_pb2.AuditEvent(
                actor=actor.name[:64],
                action=action,
                target=target,
                remote_addr=actor.remote,
                success=success,
                detail=detail,
            )
        )

    # ------------------------------------------------------------------ collectors
    async def collector(self, actor: Actor, action: str, name: str) -> CollectorStatus:
        """Start, stop or restart collector `name`. Raises UnknownActionError or UnknownCollectorError
        (nothing audited) or CollectorRefusedError (its state does not allow it, or it did not
        start: audited as a failure)."""
        sup = self.supervisor
        if sup is None:
            raise CollectorRefusedError(name, "no appliance runs here: collectors act in a running one")
        commands = {
            "start": sup.start_collector,
            "stop": sup.stop_collector,
            "restart": sup.restart_collector,
        }
        if action not in commands:
            raise UnknownActionError(
                f"unknown action {action!r} (expected one of: {', '.join(COLLECTOR_ACTIONS)})"
            )
        try:
            status = await commands[action](name)
        except CollectorRefusedError as err:
            await self.audit(actor, f"collector_{action}", name, f"refused: {err}", success=False)
            log.info("control_refused", actor=actor.name, action=action, collector=name, reason=str(err))
            raise
        await self.audit(actor, f"collector_{action}", name, status.state_text)
        log.info("control_done", actor=actor.name, action=action, collector=name, state=status.state_text)
        return status

    # ------------------------------------------------------------------ agents
    async def revoke_agent(self, actor: Actor, name: str) -> Revocation:
        """Record the revocation of agent `name` and, when the bus runs in this process, apply it: the
        bus refuses the agent from its next call on and ends its calls in progress before this returns.
        Raises UnknownAgentError when no agent of that name is enrolled."""
        newly = await self.state.revoke_identity(name)
        if not newly and await self.state.get_identity(name) is None:
            raise UnknownAgentError(f"no enrolled agent named {name!r}")
        ended = await self._revoke_live(name) if self._revoke_live is not None else None
        detail = "" if newly else "already revoked"
        if ended is not None:
            detail = f"{detail}; {ended} calls ended".lstrip("; ")
        await self.audit(actor, "agent_revoked", name, detail)
        log.info("control_done", actor=actor.name, action="revoke", agent=name, calls_ended=ended)
        return Revocation(name, newly, ended)

    # ------------------------------------------------------------------ users and tokens
    async def add_user(
        self, actor: Actor, name: str, role: str, password: str, *, replace: bool = False
    ) -> bool:
        """Add a dashboard user, or with `replace` set an existing one's password and role (ending its
        sessions and tokens). Returns True when a user was added, False when one was replaced. Raises
        BadRequestError, or StateConflictError when the name is taken and `replace` is not set."""
        if not USER_NAME.fullmatch(name):
            raise BadRequestError("name: 1-64 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise BadRequestError(f"role: expected 'admin' or 'viewer', got {role!r}")
        problem = passwords.new_password_problem(password)
        if problem:
            raise BadRequestError(problem)
        encoded = await passwords.hash_password(password)
        if replace and await self.state.get_user(name) is not None:
            await self.state.set_password(name, encoded)
            await self.state.set_role(name, role)  # type: ignore[arg-type]  # checked against ROLES
            ended = await self.state.end_user_sessions(name)
            self._ended(ended)
            await self.audit(actor, "user_replaced", name, f"{role}; {len(ended)} sessions and tokens ended")
            return False
        await self.state.create_user(name, encoded, role)  # type: ignore[arg-type]  # checked against ROLES
        await self.audit(actor, "user_added", name, role)
        return True

    async def remove_user(self, actor: Actor, name: str) -> int:
        """Remove a user and end their sessions and tokens; returns how many ended. Raises
        UnknownUserError."""
        if await self.state.get_user(name) is None:
            raise UnknownUserError(f"no user named {name!r}")
        ended = await self.state.end_user_sessions(name)
        self._ended(ended)
        if not await self.state.delete_user(name):
            raise UnknownUserError(f"no user named {name!r}")
        await self.audit(actor, "user_removed", name, f"{len(ended)} sessions and tokens ended")
        return len(ended)

    async def set_password(self, actor: Actor, name: str, password: str) -> int:
        """Set a user's password (an operator's reset: no current password asked) and end all their
        sessions and tokens; returns how many ended. Raises UnknownUserError or BadRequestError."""
        problem = passwords.new_password_problem(password)
        if problem:
            raise BadRequestError(problem)
        encoded = await passwords.hash_password(password)
        if not await self.state.set_password(name, encoded):
            raise UnknownUserError(f"no user named {name!r}")
        ended = await self.state.end_user_sessions(name)
        self._ended(ended)
        await self.audit(actor, "password_set", name, f"{len(ended)} sessions and tokens ended")
        return len(ended)

    async def revoke_token(self, actor: Actor, public_id: str) -> tuple[Session, int]:
        """Revoke the active API token with this public id and every token it issued; returns its row
        and how many were revoked (it included). Raises UnknownTokenError."""
        row = await self.state.find_token(public_id)
        if row is None:
            raise UnknownTokenError(f"no active token with id {public_id!r}")
        ended = await self.state.revoke_session(row.id_hash)
        self._ended(ended)
        await self.audit(actor, "token_revoked", row.user, f"{public_id}; {len(ended)} revoked")
        return row, len(ended)

    async def record_enrolment(
        self, actor: Actor, name: str, role: str, public_key: bytes, cert_serial: str
    ) -> None:
        """Record an agent enrolled by the CLI (its bundle is written; see amoskys.pki.enrolment).
        Raises StateConflictError when an unrevoked agent has the name (audited as a failure)."""
        from amoskys.store.errors import StateConflictError

        try:
            await self.state.enroll_identity(name, role, public_key, cert_serial)  # type: ignore[arg-type]
        except StateConflictError as err:
            await self.audit(actor, "agent_enrolled", name, f"refused: {err}", success=False)
            raise
        await self.audit(actor, "agent_enrolled", name, f"{role}; certificate serial {cert_serial}")

    async def issue_enrol_token(
        self, actor: Actor, name: str, role: str, ttl_seconds: int, ca_fingerprint: bytes
    ) -> tuple[str, int]:
        """Issue a one-time enrolment token for agent `name` (amoskys.pki.tokens; only its hash is
        stored). Returns the token (shown once) and its expiry (ns). Raises BadRequestError, or
        StateConflictError while an unrevoked agent has the name (audited as a failure)."""
        from amoskys.pki.names import ROLES as IDENTITY_ROLES
        from amoskys.pki.names import is_valid_name
        from amoskys.pki.tokens import MAX_TTL_SECONDS, new_token, secret_hash
        from amoskys.store.enrol_tokens import EnrolTokens
        from amoskys.store.errors import StateConflictError

        if not is_valid_name(name):
            raise BadRequestError(f"name: {name!r} is not a valid identity name (1-64 of [A-Za-z0-9._-])")
        if role not in IDENTITY_ROLES:
            raise BadRequestError(f"role: expected one of {', '.join(IDENTITY_ROLES)}, got {role!r}")
        if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise BadRequestError(f"ttl: expected 1 s to 7 days, got {ttl_seconds} s")
        token = new_token(ca_fingerprint)
        try:
            row = await EnrolTokens(self.state).issue(
                token.id, secret_hash(token.secret), name=name, role=role,  # type: ignore[arg-type]
                ttl_ns=ttl_seconds * 10**9, created_by=actor.name,
            )  # fmt: skip
        except StateConflictError as err:
            await self.audit(actor, "enrol_token_issued", name, f"refused: {err}", success=False)
            raise
        await self.audit(actor, "enrol_token_issued", name, f"{token.id}; {role}; {ttl_seconds} s")
        return token.text(), row.expires_ns

    async def issue_token(
        self, actor: Actor, user: str, days: int, *, label: str = "", role: str | None = None
    ) -> tuple[str, Session]:
        """Issue an API token for `user` by the operator (no issuing session: it lives `days`, until
        revoked), its role at most the user's. Returns the secret (shown once) and its row. Raises
        UnknownUserError or BadRequestError."""
        import time

        from amoskys.web.auth import lower_role

        if not 1 <= days <= 365:
            raise BadRequestError(f"days: expected 1..365, got {days}")
        if role is not None and role not in ROLES:
            raise BadRequestError(f"role: expected 'admin' or 'viewer', got {role!r}")
        row = await self.state.get_user(user)
        if row is None:
            raise UnknownUserError(f"no user named {user!r}")
        token = passwords.new_token()
        session = await self.state.create_session(
            passwords.token_hash(token),
            row.name,
            time.time_ns() + days * 86400 * 10**9,
            kind="token",
            label=label,
            role=lower_role(row.role, role),  # type: ignore[arg-type]  # checked against ROLES
        )
        await self.audit(actor, "token_issued", row.name, f"{session.public_id}; {session.role}; {days} days")
        return token, session

    def _ended(self, sessions: Sequence[bytes]) -> None:
        if sessions and self._sessions_ended is not None:
            self._sessions_ended(sessions)
