"""Session routes: log in, log out, who am I, change my own password."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.responses import JSONResponse, Response

from amoskys.web.context import WebContext
from amoskys.web.endpoints import ApiError, Call, Router

router = Router("session")


class LoginBody(msgspec.Struct, frozen=True):
    name: str
    password: str


class PasswordBody(msgspec.Struct, frozen=True):
    current: str
    new: Annotated[str, msgspec.Meta(description="12 to 1024 characters")]


def set_session_cookie(response: Response, ctx: WebContext, token: str) -> None:
    response.set_cookie(
        ctx.cookie_name,
        token,
        max_age=ctx.auth.absolute_timeout_ns // 10**9,
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.secure_cookies,
    )


@router.post(
    "/api/v1/login", "Log in; sets the session cookie (throttled per address and account)", role="public"
)
async def login(call: Call, *, body: LoginBody) -> Any:
    # the body is at most 8 KiB (amoskys.web.app.LOGIN_MAX_BODY_BYTES)
    result = await call.ctx.auth.login(body.name, body.password, call.remote)
    if result.invalid:
        raise ApiError(400, result.invalid)
    if result.throttled:
        return JSONResponse(
            {"error": "too many failed logins; try again later"},
            status_code=429,
            headers={"Retry-After": str(result.retry_after_s)},
        )
    if not result.ok:
        raise ApiError(401, "invalid user name or password")
    response = JSONResponse({"user": body.name, "role": result.role})
    set_session_cookie(response, call.ctx, result.token)
    return response


@router.post("/api/v1/logout", "Log out: the session is revoked on the server")
async def logout(call: Call) -> Any:
    await call.ctx.auth.logout(call.p, call.remote)
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(call.ctx.cookie_name, path="/")
    return response


@router.get("/api/v1/me", "Who is logged in, with the CSRF token for state-changing requests")
async def me(call: Call) -> Any:
    p, ctx = call.p, call.ctx
    return {"user": p.user, "role": p.role, "csrf_token": ctx.auth.csrf_token(p), "appliance": ctx.name}


@router.post(
    "/api/v1/password",
    "Change your password (the current one is required); your other sessions and tokens end",
)
async def change_password(call: Call, *, body: PasswordBody) -> Any:
    result = await call.ctx.auth.change_password(call.p, body.current, body.new, call.remote)
    if result.problem:
        raise ApiError(400, result.problem)
    if result.throttled:
        return JSONResponse(
            {"error": "too many wrong passwords; try again later"},
            status_code=429,
            headers={"Retry-After": str(result.retry_after_s)},
        )
    if not result.ok:
        raise ApiError(403, "the current password is wrong")
    return {"changed": True, "ended": result.ended}
