"""The JSON API under /api/v1: every route is declared once, with its parameters and role, and the
OpenAPI document is generated from those declarations (never maintained by hand)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from prometheus_client.metrics import MetricWrapperBase
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amoskys import __version__, pki
from amoskys.errors import AmoskysError
from amoskys.events import KINDS
from amoskys.proto import events_pb2
from amoskys.store import StateConflictError
from amoskys.supervisor import CollectorRefusedError, UnknownCollectorError
from amoskys.web import passwords
from amoskys.web.auth import MAX_PASSWORD_CHARS, Principal
from amoskys.web.context import WebContext
from amoskys.web.reads import WebReads, event_dict

Role = Literal["public", "viewer", "admin"]
Handler = Callable[[Request, WebContext, Any], Awaitable[Any]]  # the third is the Principal (None: public)


class ApiError(Exception):
    """An error answered as JSON ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path", "body"] = "query"
    type: Literal["string", "integer", "boolean"] = "string"
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Endpoint:
    method: Literal["GET", "POST"]
    path: str
    summary: str
    role: Role
    handler: Handler
    params: tuple[Param, ...] = ()
    tag: str = ""


@dataclass
class Api:
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: Literal["GET", "POST"],
        path: str,
        summary: str,
        *,
        role: Role = "viewer",
        params: tuple[Param, ...] = (),
        tag: str = "",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method, path, summary, role, handler, params, tag))
            return handler

        return register


api = Api()
LIMIT = Param("limit", type="integer", description="at most this many items (1..500, default 50)")
BEFORE = Param("before", type="integer", description="page on: only items with store_seq below this")


def _int(request: Request, name: str, default: int | None = None, lo: int = 0, hi: int = 2**62) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not re.fullmatch(r"-?\d{1,19}", raw or ""):
        raise ApiError(400, f"query parameter {name!r}: expected a whole number, got {raw!r}")
    value = int(raw)  # type: ignore[arg-type]
    if not lo <= value <= hi:
        raise ApiError(400, f"query parameter {name!r}: must be {lo}..{hi}, got {value}")
    return value


def _time(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"query parameter {name!r}: expected ISO 8601 time, got {raw!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def _reads(ctx: WebContext) -> WebReads:
    return ctx.reads


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    more = len(items) == limit and items
    return {"items": items, "next_before": items[-1]["store_seq"] if more else None}


def _counter_totals(metric: MetricWrapperBase, label: str) -> dict[str, float]:
    """Totals of one labelled counter by one label (reads only that metric, not the registry)."""
    out: Counter[str] = Counter()
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[sample.labels.get(label, "")] += sample.value
    return dict(out)


# ---------------------------------------------------------------------- session
@api.route(
    "POST",
    "/api/v1/login",
    "Log in; sets the session cookie (throttled per address and account)",
    role="public",
    tag="session",
    params=(Param("name", "body", required=True), Param("password", "body", required=True)),
)
async def login(request: Request, ctx: WebContext, _: Any) -> Any:
    body = await _json(request)  # at most 8 KiB (amoskys.web.app.LOGIN_MAX_BODY_BYTES)
    name, password = body.get("name"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise ApiError(400, "name and password are required (strings)")
    result = await ctx.auth.login(name, password, _remote(request))
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
    response = JSONResponse({"user": name, "role": result.role})
    set_session_cookie(response, ctx, result.token)
    return response


@api.route("POST", "/api/v1/logout", "Log out: the session is revoked on the server", tag="session")
async def logout(request: Request, ctx: WebContext, p: Principal) -> Any:
    await ctx.auth.logout(p, _remote(request))
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(ctx.cookie_name, path="/")
    return response


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


@api.route(
    "GET", "/api/v1/me", "Who is logged in, with the CSRF token for state-changing requests", tag="session"
)
async def me(request: Request, ctx: WebContext, p: Principal) -> Any:
    return {"user": p.user, "role": p.role, "csrf_token": ctx.auth.csrf_token(p), "appliance": ctx.name}


@api.route(
    "POST",
    "/api/v1/tokens",
    "Issue an API token for the current user (Authorization: Bearer)",
    tag="session",
    params=(Param("days", "body", "integer", "validity in days (1..365, default 90)"),),
)
async def new_token(request: Request, ctx: WebContext, p: Principal) -> Any:
    body = await _json(request)
    days = body.get("days", 90)
    if not isinstance(days, int) or not 1 <= days <= 365:
        raise ApiError(400, f"days: expected 1..365, got {days!r}")
    token = await ctx.auth.issue_token(p.user, days)
    await ctx.auth.audit(p, "token_issued", p.user, _remote(request), f"{days} days")
    return {"token": token, "days": days, "note": "shown once; store it like a password"}


# ---------------------------------------------------------------------- overview
SYNTHETIC = Param(
    "synthetic",
    type="boolean",
    description="1: count synthetic events (published by loadgen identities) in the totals; "
    "by default they are left out",
)


def _per_second(series: list[tuple[int, int]]) -> float:
    recent = [c for _, c in series[-10:]]
    return round(sum(recent) / len(recent), 1) if recent else 0.0


def _without(totals: dict[str, float], part: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, v - part.get(k, 0.0)) for k, v in totals.items()}


@api.route(
    "GET",
    "/api/v1/overview",
    "Health, events/s, store size, sink lag, losses, collectors (synthetic events left out by default)",
    tag="overview",
    params=(SYNTHETIC,),
)
async def overview(request: Request, ctx: WebContext, _: Principal) -> Any:
    with_synthetic = _bool(request, "synthetic")
    stats = await ctx.store.stats()
    synthetic_rows = await ctx.reads.synthetic_rows()
    sinks = await ctx.store.state.list_sinks()
    losses = [
        event_dict(e)
        for e in await ctx.reads.recent(kind="loss", limit=10, synthetic=None if with_synthetic else False)
    ]
    series = ctx.rates.series(synthetic=with_synthetic)
    by_outcome = _counter_totals(ctx.metrics.bus_events, "outcome")
    synthetic_by_outcome = _counter_totals(ctx.metrics.bus_synthetic_events, "outcome")
    return {
        "appliance": {"name": ctx.name, "version": __version__},
        "health": ctx.health.snapshot(),
        "events_per_second": _per_second(series),
        "rate_series": [{"t": t, "events": c} for t, c in series],
        "store": {
            "rows": stats.rows if with_synthetic else max(0, stats.rows - synthetic_rows),
            "last_seq": stats.last_seq,
            "db_bytes": stats.db_bytes,
            "wal_bytes": stats.wal_bytes,
            "space_state": str(getattr(stats.space_state, "value", stats.space_state)),
            "high_water_bytes": stats.high_water_bytes,
            "hard_cap_bytes": stats.hard_cap_bytes,
        },
        "sinks": [
            {"name": s.name, "enabled": s.enabled, "lag_events": max(0, stats.last_seq - s.store_seq)}
            for s in sinks
        ],
        "losses": {
            "store_by_reason": _counter_totals(ctx.metrics.store_lost, "reason"),
            "recent_reports": losses,
        },
        "bus": {
            "batches_by_status": _counter_totals(ctx.metrics.bus_batches, "status"),
            "events_by_outcome": by_outcome if with_synthetic else _without(by_outcome, synthetic_by_outcome),
        },
        "synthetic": {
            "included": with_synthetic,
            "rows": synthetic_rows,
            "events_per_second": _per_second(ctx.rates.synthetic_series()),
            "events_by_outcome": synthetic_by_outcome,
        },
        "collectors": [c.to_dict() | {"state_text": c.state_text} for c in ctx.supervisor.status()],
    }


# ---------------------------------------------------------------------- collectors
@api.route(
    "GET",
    "/api/v1/collectors",
    "Every collector: state, mode, events, errors, restarts, last error",
    tag="collectors",
)
async def collectors(request: Request, ctx: WebContext, _: Principal) -> Any:
    return {"items": [c.to_dict() | {"state_text": c.state_text} for c in ctx.supervisor.status()]}


@api.route(
    "POST",
    "/api/v1/collectors/{name}/{action}",
    "Start, stop or restart a collector (409 with the reason when its state does not allow it, or it "
    "did not start)",
    role="admin",
    tag="collectors",
    params=(
        Param("name", "path", required=True),
        Param("action", "path", required=True, description="start, stop or restart"),
    ),
)
async def collector_action(request: Request, ctx: WebContext, p: Principal) -> Any:
    name, action = request.path_params["name"], request.path_params["action"]
    actions = {
        "start": ctx.supervisor.start_collector,
        "stop": ctx.supervisor.stop_collector,
        "restart": ctx.supervisor.restart_collector,
    }
    if action not in actions:
        raise ApiError(404, f"unknown action {action!r} (start, stop, restart)")
    try:
        status = await actions[action](name)
    except UnknownCollectorError as err:
        raise ApiError(404, str(err)) from err
    except CollectorRefusedError as err:  # not allowed in its state, or it did not start: nothing done
        await ctx.auth.audit(
            p, f"collector_{action}", name, _remote(request), f"refused: {err}", success=False
        )
        raise ApiError(409, str(err)) from err
    await ctx.auth.audit(p, f"collector_{action}", name, _remote(request), status.state_text)
    return status.to_dict() | {"state_text": status.state_text}


# ---------------------------------------------------------------------- events
@api.route(
    "GET",
    "/api/v1/events",
    "Stored events, newest first, filtered by kind, source and time",
    tag="events",
    params=(
        Param("kind", description="one of " + ", ".join(KINDS)),
        Param("source"),
        Param("since", description="ISO 8601: observed at or after"),
        Param("until", description="ISO 8601: observed before"),
        Param(
            "synthetic",
            type="boolean",
            description="0: leave out synthetic events (from loadgen identities), 1: only those; "
            "default: every event, synthetic ones marked `synthetic: true`",
        ),
        BEFORE,
        LIMIT,
    ),
)
async def events(request: Request, ctx: WebContext, _: Principal) -> Any:
    kind = request.query_params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise ApiError(400, f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    limit = _int(request, "limit", 50, 1, 500) or 50
    rows = await ctx.reads.recent(
        kind=kind,
        source=request.query_params.get("source") or None,
        since_ns=_time(request, "since"),
        until_ns=_time(request, "until"),
        before_seq=_int(request, "before", None, 1),
        limit=limit,
        synthetic=_bool(request, "synthetic") if request.query_params.get("synthetic") else None,
    )
    return _page([event_dict(e) for e in rows], limit)


@api.route(
    "GET",
    "/api/v1/events/{seq}",
    "One stored event, decoded",
    tag="events",
    params=(Param("seq", "path", "integer", "its store_seq", required=True),),
)
async def event(request: Request, ctx: WebContext, _: Principal) -> Any:
    raw = request.path_params["seq"]
    if not raw.isdigit():
        raise ApiError(400, f"seq: expected a whole number, got {raw!r}")
    row = await ctx.reads.by_seq(int(raw))
    if row is None:
        raise ApiError(404, f"no event with store_seq {raw}")
    return event_dict(row) | {"digest": row.digest.hex(), "envelope_bytes": len(row.envelope)}


# ---------------------------------------------------------------------- processes
@api.route(
    "GET",
    "/api/v1/processes",
    "The current process table (from the process collector)",
    tag="processes",
    params=(Param("source"), Param("q", description="substring of exe, argv or user")),
)
async def processes(request: Request, ctx: WebContext, _: Principal) -> Any:
    rows = await ctx.store.processes(source=request.query_params.get("source") or None)
    await _mark_synthetic(ctx, rows)
    q = (request.query_params.get("q") or "").lower()
    if q:
        rows = [
            r
            for r in rows
            if q in r["exe"].lower() or q in " ".join(r["argv"]).lower() or q in r["user"].lower()
        ]
    for r in rows:
        r["exe_sha256"] = r["exe_sha256"].hex() if isinstance(r["exe_sha256"], bytes) else r["exe_sha256"]
    return {"items": rows[:2000], "total": len(rows)}


@api.route(
    "GET",
    "/api/v1/processes/execs",
    "Recent exec and exit events, newest first",
    tag="processes",
    params=(BEFORE, LIMIT),
)
async def execs(request: Request, ctx: WebContext, _: Principal) -> Any:
    limit = _int(request, "limit", 50, 1, 500) or 50

    def wanted(env: events_pb2.Envelope) -> bool:
        return env.process.kind in (events_pb2.ProcessEvent.EXEC, events_pb2.ProcessEvent.EXIT)

    rows = await ctx.reads.recent(
        kind="process", before_seq=_int(request, "before", None, 1), limit=limit, match=wanted
    )
    return _page([event_dict(e) for e in rows], limit)


# ---------------------------------------------------------------------- flows
@api.route(
    "GET",
    "/api/v1/flows",
    "Recent flow records, newest first; search by IP, port or Community ID",
    tag="flows",
    params=(Param("ip"), Param("port", type="integer"), Param("community_id"), BEFORE, LIMIT),
)
async def flows(request: Request, ctx: WebContext, _: Principal) -> Any:
    ip = request.query_params.get("ip") or ""
    port = _int(request, "port", None, 0, 65535)
    cid = request.query_params.get("community_id") or ""
    limit = _int(request, "limit", 50, 1, 500) or 50

    def wanted(env: events_pb2.Envelope) -> bool:
        f = env.flow
        return (
            (not ip or ip in (f.src_addr, f.dst_addr))
            and (port is None or port in (f.src_port, f.dst_port))
            and (not cid or f.community_id == cid)
        )

    search = bool(ip or port is not None or cid)
    rows = await ctx.reads.recent(
        kind="flow",
        before_seq=_int(request, "before", None, 1),
        limit=limit,
        match=wanted if search else None,
    )
    return _page([event_dict(e) for e in rows], limit)


@api.route(
    "GET",
    "/api/v1/flows/top",
    "Top talkers by octets over the most recent flow records (synthetic ones left out by default)",
    tag="flows",
    params=(
        Param("records", type="integer", description="how many recent records to sum (default 5000)"),
        SYNTHETIC,
        LIMIT,
    ),
)
async def top_talkers(request: Request, ctx: WebContext, _: Principal) -> Any:
    n = _int(request, "records", 5000, 1, 100_000) or 5000
    limit = _int(request, "limit", 20, 1, 500) or 20
    synthetic = None if _bool(request, "synthetic") else False
    octets: Counter[str] = Counter()
    packets: Counter[str] = Counter()
    for e in await ctx.reads.recent(kind="flow", limit=n, synthetic=synthetic):
        f = e.parse().flow
        for addr, d_out, d_in in ((f.src_addr, f.forward, f.reverse), (f.dst_addr, f.reverse, f.forward)):
            octets[addr] += d_out.octets + d_in.octets
            packets[addr] += d_out.packets + d_in.packets
    items = [{"addr": a, "octets": o, "packets": packets[a]} for a, o in octets.most_common(limit)]
    return {"items": items, "records": n}


# ---------------------------------------------------------------------- devices, snmp
@api.route(
    "GET",
    "/api/v1/devices",
    "The device inventory, most recently seen first",
    tag="devices",
    params=(
        Param("present", type="boolean", description="only devices not gone"),
        Param("new_within_hours", type="integer", description="flag devices first seen this recently"),
    ),
)
async def devices(request: Request, ctx: WebContext, _: Principal) -> Any:
    present = request.query_params.get("present") in ("1", "true", "yes")
    hours = _int(request, "new_within_hours", 24, 1, 24 * 365) or 24
    rows = await ctx.store.devices(present_only=present)
    await _mark_synthetic(ctx, rows)
    cutoff = ctx.clock_ns() - hours * 3600 * 10**9
    for r in rows:
        r["mac"] = r["mac"].hex(":") if isinstance(r["mac"], bytes) else r["mac"]
        r["new"] = r["first_seen_ns"] >= cutoff
    return {"items": rows}


@api.route("GET", "/api/v1/snmp/targets", "Polled SNMP devices with their latest state", tag="snmp")
async def snmp_targets(request: Request, ctx: WebContext, _: Principal) -> Any:
    return {"items": await _mark_synthetic(ctx, await ctx.store.snmp_targets())}


@api.route(
    "GET",
    "/api/v1/snmp/targets/{target}/interfaces",
    "Interfaces of one SNMP device (latest values)",
    tag="snmp",
    params=(Param("target", "path", required=True),),
)
async def snmp_interfaces(request: Request, ctx: WebContext, _: Principal) -> Any:
    return {"items": await ctx.store.snmp_interfaces(target=request.path_params["target"])}


@api.route(
    "GET",
    "/api/v1/snmp/targets/{target}/rates",
    "Recent in/out bit rates of one interface",
    tag="snmp",
    params=(Param("target", "path", required=True), Param("if_index", type="integer", required=True), LIMIT),
)
async def snmp_rates(request: Request, ctx: WebContext, _: Principal) -> Any:
    target = request.path_params["target"]
    if_index = _int(request, "if_index", None, 0)
    if if_index is None:
        raise ApiError(400, "if_index is required")
    limit = _int(request, "limit", 120, 1, 500) or 120
    rows = await ctx.reads.recent(kind="snmp", limit=limit, match=lambda env: env.snmp.target == target)
    points = []
    for e in reversed(rows):
        for i in e.parse().snmp.interfaces:
            if i.if_index == if_index and i.HasField("in_bps"):
                points.append({"ts_ns": e.ts_ns, "in_bps": i.in_bps, "out_bps": i.out_bps})
    return {"target": target, "if_index": if_index, "points": points}


# ---------------------------------------------------------------------- agents, users, audit
@api.route("GET", "/api/v1/agents", "Enrolled agents: role, key, last seen, certificate expiry", tag="agents")
async def agents(request: Request, ctx: WebContext, _: Principal) -> Any:
    last_seen = await ctx.reads.table(
        "SELECT source, MAX(last_received_ns) AS last_seen_ns FROM source_marks GROUP BY source"
    )
    seen = {r["source"]: r["last_seen_ns"] for r in last_seen}
    items = []
    for ident in await ctx.store.state.list_identities():
        cert = ctx.pki_dir / "agents" / f"{ident.name}.crt"
        expires = pki.cert_not_after(cert).isoformat() if cert.exists() else None
        items.append(
            {
                "name": ident.name,
                "role": ident.role,
                "key_id": pki.key_id_of_raw(ident.public_key),
                "enrolled_ns": ident.enrolled_ns,
                "revoked_ns": ident.revoked_ns,
                "cert_expires": expires,
                "last_seen_ns": seen.get(ident.name),
            }
        )
    return {"items": items}


@api.route(
    "POST",
    "/api/v1/agents/{name}/revoke",
    "Revoke an agent (takes effect within a second)",
    role="admin",
    tag="agents",
    params=(Param("name", "path", required=True),),
)
async def revoke_agent(request: Request, ctx: WebContext, p: Principal) -> Any:
    name = request.path_params["name"]
    if not await ctx.store.state.revoke_identity(name):
        raise ApiError(404, f"no enrolled, unrevoked agent named {name!r}")
    await ctx.auth.audit(p, "agent_revoked", name, _remote(request))
    return {"name": name, "revoked": True}


@api.route("GET", "/api/v1/users", "Dashboard users and their roles", role="admin", tag="users")
async def users(request: Request, ctx: WebContext, _: Principal) -> Any:
    return {
        "items": [
            {"name": u.name, "role": u.role, "created_ns": u.created_ns}
            for u in await ctx.store.state.list_users()
        ]
    }


@api.route(
    "POST",
    "/api/v1/users",
    "Add a user",
    role="admin",
    tag="users",
    params=(
        Param("name", "body", required=True),
        Param("role", "body", required=True),
        Param("password", "body", required=True, description="12 to 1024 characters"),
    ),
)
async def add_user(request: Request, ctx: WebContext, p: Principal) -> Any:
    body = await _json(request)
    name, role, password = body.get("name"), body.get("role"), body.get("password")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise ApiError(400, "name: 1-64 letters, digits, '.', '_' or '-'")
    if role not in ("admin", "viewer"):
        raise ApiError(400, f"role: expected 'admin' or 'viewer', got {role!r}")
    if not isinstance(password, str) or not 12 <= len(password) <= MAX_PASSWORD_CHARS:
        raise ApiError(
            400, f"password: 12 characters at least, {MAX_PASSWORD_CHARS} at most (logins refuse longer ones)"
        )
    try:
        await ctx.store.state.create_user(name, await passwords.hash_password(password), role)
    except StateConflictError as err:
        raise ApiError(409, str(err)) from err
    await ctx.auth.audit(p, "user_added", name, _remote(request), role)
    return {"name": name, "role": role}


@api.route(
    "POST",
    "/api/v1/users/{name}/delete",
    "Remove a user and end their sessions",
    role="admin",
    tag="users",
    params=(Param("name", "path", required=True),),
)
async def delete_user(request: Request, ctx: WebContext, p: Principal) -> Any:
    name = request.path_params["name"]
    if name == p.user:
        raise ApiError(400, "you cannot remove yourself")
    await ctx.store.state.revoke_user_sessions(name)
    if not await ctx.store.state.delete_user(name):
        raise ApiError(404, f"no user named {name!r}")
    await ctx.auth.audit(p, "user_removed", name, _remote(request))
    return {"name": name, "removed": True}


@api.route(
    "GET",
    "/api/v1/audit",
    "Audit log: logins, failed logins, control actions, newest first (this appliance's own by default)",
    tag="audit",
    params=(
        Param(
            "remote",
            type="boolean",
            description="instead, the audit events that came through the bus (relayed from other "
            "appliances), each with its source and origin",
        ),
        BEFORE,
        LIMIT,
    ),
)
async def audit(request: Request, ctx: WebContext, _: Principal) -> Any:
    limit = _int(request, "limit", 50, 1, 500) or 50
    remote = _bool(request, "remote")
    rows = await ctx.reads.recent(
        kind="audit",
        scope="remote" if remote else "local",
        before_seq=_int(request, "before", None, 1),
        limit=limit,
    )
    return _page([event_dict(e) for e in rows], limit) | {"remote": remote}


async def _mark_synthetic(ctx: WebContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set `synthetic` on rows of a derived view (process table, devices, SNMP targets): those views
    keep no per-event flag, so a row is synthetic when its source is enrolled with the loadgen role."""
    loadgen = {i.name for i in await ctx.store.state.list_identities() if i.role == "loadgen"}
    for r in rows:
        r["synthetic"] = r["source"] in loadgen
    return rows


def _bool(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ApiError(400, f"query parameter {name!r}: expected 1/0, true/false or yes/no, got {raw!r}")


# ---------------------------------------------------------------------- plumbing
async def _json(request: Request) -> dict[str, Any]:
    if "application/json" in request.headers.get("content-type", ""):
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def same_origin(request: Request) -> bool:
    """A browser's Origin header, when sent, must name this very host (CSRF defence in depth)."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return origin.split("://", 1)[-1].rstrip("/") == request.headers.get("host", "")


def _remote(request: Request) -> str:
    return request.client.host if request.client else ""


def openapi(endpoints: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document, generated from the endpoint declarations."""
    paths: dict[str, Any] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.handler.__name__,
            "tags": [ep.tag] if ep.tag else [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": "Bad request: the message names the parameter"},
                "401": {"description": "Not logged in"},
                "403": {"description": "Not allowed for this role, or a missing/wrong CSRF token"},
                "413": {"description": "Request body too large ([web] max_body_bytes; 8 KiB for login)"},
            },
        }
        if ep.role != "public":
            op["security"] = [{"session": []}, {"token": []}]
        query_path = [p for p in ep.params if p.where != "body"]
        if query_path:
            op["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": {"type": p.type},
                }
                for p in query_path
            ]
        body = [p for p in ep.params if p.where == "body"]
        if body:
            op["requestBody"] = {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                p.name: {"type": p.type, "description": p.description} for p in body
                            },
                            "required": [p.name for p in body if p.required],
                        }
                    }
                }
            }
        op["x-amoskys-role"] = ep.role
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "AMOSKYS appliance API", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "amoskys_session"},
                "token": {"type": "http", "scheme": "bearer"},
            }
        },
    }


def routes(ctx: WebContext) -> list[Route]:
    """Starlette routes for every declared endpoint, each wrapped with authentication, the role check,
    CSRF on state-changing requests, and JSON errors."""
    out = []
    for ep in api.endpoints:
        out.append(Route(ep.path, _wrap(ctx, ep), methods=[ep.method]))
    doc = openapi(api.endpoints)

    async def openapi_doc(request: Request) -> Response:
        return JSONResponse(doc)

    out.append(Route("/api/v1/openapi.json", openapi_doc, methods=["GET"]))
    return out


def _wrap(ctx: WebContext, ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if ep.method == "POST" and not same_origin(request):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        principal = await ctx.auth.authenticate(request, ctx.cookie_name)
        if ep.role != "public":
            if principal is None:
                return JSONResponse({"error": "not logged in"}, status_code=401)
            if ep.role == "admin" and not principal.is_admin:
                return JSONResponse({"error": "this needs the admin role"}, status_code=403)
            if ep.method == "POST" and not ctx.auth.csrf_ok(
                principal, request.headers.get("x-csrf-token", "")
            ):
                return JSONResponse({"error": "missing or wrong CSRF token (X-CSRF-Token)"}, status_code=403)
        try:
            result = await ep.handler(request, ctx, principal)
        except ApiError as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        except AmoskysError as err:
            return JSONResponse({"error": str(err)}, status_code=503)
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = ep.handler.__name__
    return endpoint
