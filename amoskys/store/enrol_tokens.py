"""One-time enrolment tokens in the appliance state: issued, looked up, redeemed once.

Only SHA-256 of a token's secret is stored (amoskys.pki.tokens). `redeem` checks the token and, in the
same IMMEDIATE transaction, marks it used and records the identity it enrolled, so two endpoints racing
with one token get one identity between them. Certificate serial updates after a renewal live here too:
they are the other change the enrolment service makes to an identity.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite

from amoskys.store.errors import StateConflictError
from amoskys.store.state import IDENTITY_ROLES, ApplianceState, IdentityRole

#: Why a token was refused; each is a label value of amoskys_bus_enrolments_total.
Refusal = Literal["unknown_token", "reused", "expired", "wrong_name", "conflict"]


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    name: str
    role: IdentityRole
    created_ns: int
    expires_ns: int
    created_by: str
    used_ns: int | None


class TokenRefusedError(Exception):
    """A token that buys nothing: `reason` says why (a bounded word), `message` for the caller."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason: Refusal = reason
        self.message = message


_COLUMNS = "id, name, role, created_ns, expires_ns, created_by, used_ns"


class EnrolTokens:
    """The enrolment tokens of one open store's appliance state."""

    def __init__(self, state: ApplianceState) -> None:
        self._state = state

    async def issue(
        self,
        token_id: str,
        secret_hash: bytes,
        *,
        name: str,
        role: IdentityRole,
        ttl_ns: int,
        created_by: str,
    ) -> TokenRow:
        """Store a new token for `name`; StateConflictError while an unrevoked identity has the name."""
        if role not in IDENTITY_ROLES:
            raise ValueError(f"role: expected one of {', '.join(IDENTITY_ROLES)}, got {role!r}")
        now = self._state._clock_ns()
        row = TokenRow(token_id, name, role, now, now + ttl_ns, created_by, None)

        async def body(db: aiosqlite.Connection) -> None:
            await _refuse_enrolled(db, name)
            await db.execute(
                "INSERT INTO enrol_tokens (id, secret_hash, name, role, created_ns, expires_ns, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, secret_hash, name, role, row.created_ns, row.expires_ns, created_by),
            )

        await self._state._change(f"issue an enrolment token for {name!r}", body)
        return row

    async def get(self, token_id: str) -> TokenRow | None:
        rows = await self._state._rows(f"SELECT {_COLUMNS} FROM enrol_tokens WHERE id = ?", (token_id,))
        return TokenRow(*rows[0]) if rows else None

    async def list(self) -> list[TokenRow]:
        rows = await self._state._rows(f"SELECT {_COLUMNS} FROM enrol_tokens ORDER BY created_ns")
        return [TokenRow(*r) for r in rows]

    async def check(self, token_id: str, secret_hash: bytes, name: str | None) -> TokenRow:
        """The token's row when it would buy a certificate now (read only; `redeem` decides)."""
        rows = await self._state._rows(
            f"SELECT {_COLUMNS}, secret_hash FROM enrol_tokens WHERE id = ?", (token_id,)
        )
        return _judge(rows, secret_hash, name, self._state._clock_ns())

    async def redeem(
        self, token_id: str, secret_hash: bytes, name: str | None, *, public_key: bytes, cert_serial: str
    ) -> TokenRow:
        """Mark the token used and enrol its identity (Ed25519 `public_key`, `cert_serial`) in one
        transaction; TokenRefusedError when the token buys nothing (nothing is changed then)."""
        now = self._state._clock_ns()

        async def body(db: aiosqlite.Connection) -> TokenRow:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_COLUMNS}, secret_hash FROM enrol_tokens WHERE id = ?", (token_id,)
                )
            )
            row = _judge(rows, secret_hash, name, now)
            try:
                await _refuse_enrolled(db, row.name)
            except StateConflictError as err:
                raise TokenRefusedError("conflict", str(err)) from None
            await db.execute("UPDATE enrol_tokens SET used_ns = ? WHERE id = ?", (now, token_id))
            await db.execute(
                "INSERT OR REPLACE INTO identities "
                "(name, role, public_key, cert_serial, enrolled_ns, revoked_ns) VALUES (?, ?, ?, ?, ?, NULL)",
                (row.name, row.role, public_key, cert_serial, now),
            )
            return row

        return await self._state._change("redeem an enrolment token", body)

    async def set_cert_serial(self, name: str, cert_serial: str) -> bool:
        """Record the serial of an identity's renewed certificate; False when it is not enrolled and
        unrevoked (a revoked identity keeps its old serial)."""
        return await self._state._update_one(
            f"record the renewed certificate of {name!r}",
            "UPDATE identities SET cert_serial = ? WHERE name = ? AND revoked_ns IS NULL",
            (cert_serial, name),
        )


def _judge(rows: Sequence[Any], secret_hash: bytes, name: str | None, now_ns: int) -> TokenRow:
    """The row of a token that buys a certificate at `now_ns`, else TokenRefusedError. Nothing about
    a token is told before its secret matched."""
    if not rows:
        raise TokenRefusedError("unknown_token", "enrolment token is not valid")
    *fields, stored_hash = tuple(rows[0])
    if not hmac.compare_digest(bytes(stored_hash), secret_hash):
        raise TokenRefusedError("unknown_token", "enrolment token is not valid")
    row = TokenRow(*fields)
    if row.used_ns is not None:
        raise TokenRefusedError("reused", "enrolment token was used already; ask for a new one")
    if now_ns >= row.expires_ns:
        raise TokenRefusedError("expired", "enrolment token has expired; ask for a new one")
    if name and name != row.name:
        raise TokenRefusedError("wrong_name", f"enrolment token was issued for another name than {name!r}")
    return row


async def _refuse_enrolled(db: aiosqlite.Connection, name: str) -> None:
    rows = list(
        await db.execute_fetchall("SELECT revoked_ns FROM identities WHERE name = ? COLLATE NOCASE", (name,))
    )
    if any(r[0] is None for r in rows):
        raise StateConflictError(
            f"identity {name!r} is already enrolled (revoke it first)", kind="identity", key=name
        )
