"""API token routes: issue your own, list them, revoke one (admins: anyone's, through the control
service)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from amoskys.store.state import PUBLIC_ID_BYTES, Session, public_id
from amoskys.web.endpoints import ApiError, Call, Router

router = Router("tokens")

TokenId = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^[0-9a-f]{{{2 * PUBLIC_ID_BYTES}}}$",
        description=f"the token's public id: {2 * PUBLIC_ID_BYTES} hex digits (GET /api/v1/tokens)",
    ),
]


class NewTokenBody(msgspec.Struct, frozen=True):
    days: Annotated[
        int, msgspec.Meta(ge=1, le=365, description="validity in days, clamped to the issuer's")
    ] = 90
    label: Annotated[str, msgspec.Meta(max_length=64, description="a name for the token")] = ""
    role: Annotated[
        Literal["admin", "viewer"] | None,
        msgspec.Meta(description="default: the issuer's role; never above it"),
    ] = None


class TokensQuery(msgspec.Struct, frozen=True):
    all: Annotated[bool, msgspec.Meta(description="1: every user's tokens (admin)")] = False


class TokenPath(msgspec.Struct, frozen=True):
    id: TokenId


def token_dict(row: Session) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "user": row.user,
        "label": row.label,
        "role": row.role,
        "created_ns": row.created_ns,
        "expires_ns": row.expires_ns,
        "issued_by": public_id(row.issued_by) if row.issued_by else "",
    }


@router.post(
    "/api/v1/tokens",
    "Issue an API token for the current user (Authorization: Bearer); it expires no later than the "
    "session or token issuing it, has at most its role, and is revoked with it",
)
async def new_token(call: Call, *, body: NewTokenBody) -> Any:
    p = call.p
    if not body.label.isprintable():
        raise ApiError(400, "label: at most 64 printable characters")
    if body.role == "admin" and not p.is_admin:
        raise ApiError(403, "a token cannot have more rights than the session or token issuing it")
    issued = await call.ctx.auth.issue_token(p, body.days, label=body.label, role=body.role)
    row = issued.row
    await call.ctx.auth.audit(
        p,
        "token_issued",
        row.public_id,
        call.remote,
        f"{row.role}, {body.days} days asked, label {body.label!r}",
    )
    return token_dict(row) | {
        "token": issued.token,
        "days": body.days,
        "clamped": issued.clamped,
        "note": "shown once; store it like a password",
    }


@router.get(
    "/api/v1/tokens", "Active API tokens: your own, or every user's (all=1, admins only); never the secrets"
)
async def list_tokens(call: Call, *, query: TokensQuery) -> Any:
    p = call.p
    if query.all and not p.is_admin:
        raise ApiError(403, "all=1 needs the admin role")
    rows = await call.ctx.store.state.list_tokens(None if query.all else p.user)
    return {
        "items": [token_dict(r) for r in rows],
        "session_id": public_id(p.session),
        "session_expires_ns": p.expires_ns,
    }


@router.post(
    "/api/v1/tokens/{id}/revoke", "Revoke an API token (your own; admins: anyone's) and every token it issued"
)
async def revoke_token(call: Call, *, path: TokenPath) -> Any:
    p, ctx = call.p, call.ctx
    found = await ctx.store.state.find_token(path.id)
    if found is not None and found.user != p.user and p.is_admin:  # an admin's action on another user
        revoked, _ = await ctx.control.revoke_token(call.actor, path.id)
        return {"id": revoked.public_id, "revoked": True}
    row = await ctx.auth.revoke_token(p, path.id)  # one's own: bound to the session
    if row is None:
        raise ApiError(404, f"no active token of yours with id {path.id!r}")
    await ctx.auth.audit(p, "token_revoked", f"{row.user}/{row.public_id}", call.remote, row.label)
    return {"id": row.public_id, "revoked": True}
