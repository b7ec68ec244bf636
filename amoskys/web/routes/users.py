"""User routes: list, add and remove dashboard users (through the control service)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from amoskys.control_service import USER_NAME
from amoskys.web.endpoints import ApiError, Call, Router

router = Router("users")


class NewUserBody(msgspec.Struct, frozen=True):
    name: Annotated[
        str,
        msgspec.Meta(pattern=f"^{USER_NAME.pattern}$", description="1-64 letters, digits, '.', '_' or '-'"),
    ]
    role: Literal["admin", "viewer"]
    password: Annotated[str, msgspec.Meta(description="12 to 1024 characters")]


class UserPath(msgspec.Struct, frozen=True):
    name: str


@router.get("/api/v1/users", "Dashboard users and their roles", role="admin")
async def users(call: Call) -> Any:
    return {
        "items": [
            {"name": u.name, "role": u.role, "created_ns": u.created_ns}
            for u in await call.ctx.store.state.list_users()
        ]
    }


@router.post("/api/v1/users", "Add a user", role="admin")
async def add_user(call: Call, *, body: NewUserBody) -> Any:
    await call.ctx.control.add_user(call.actor, body.name, body.role, body.password)
    return {"name": body.name, "role": body.role}


@router.post("/api/v1/users/{name}/delete", "Remove a user and end their sessions", role="admin")
async def delete_user(call: Call, *, path: UserPath) -> Any:
    if path.name == call.p.user:
        raise ApiError(400, "you cannot remove yourself")
    await call.ctx.control.remove_user(call.actor, path.name)
    return {"name": path.name, "removed": True}
