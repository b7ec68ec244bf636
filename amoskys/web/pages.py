"""Server-rendered pages (Jinja2). Each page renders the same data its /api/v1 twin returns, so what an
operator sees and what a script reads never disagree; static/app.js adds live updates."""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from amoskys import __version__
from amoskys.store.queries import sources
from amoskys.store.queries.names import address_names
from amoskys.store.state import public_id
from amoskys.web import assets, joined_pages, netnames
from amoskys.web import format as fmt
from amoskys.web.auth import Principal
from amoskys.web.context import WebContext
from amoskys.web.endpoints import ApiError, Call, Endpoint, same_origin
from amoskys.web.routes import agents as agents_api
from amoskys.web.routes import alerts as alerts_api
from amoskys.web.routes import audit as audit_api
from amoskys.web.routes import collectors as collectors_api
from amoskys.web.routes import devices as devices_api
from amoskys.web.routes import events as events_api
from amoskys.web.routes import flows as flows_api
from amoskys.web.routes import host as host_api
from amoskys.web.routes import overview as overview_api
from amoskys.web.routes import processes as processes_api
from amoskys.web.routes import rules as rules_api
from amoskys.web.routes import search as search_api
from amoskys.web.routes import series as series_api
from amoskys.web.routes import session as session_api
from amoskys.web.routes import snmp as snmp_api
from amoskys.web.routes import tokens as tokens_api
from amoskys.web.routes import users as users_api


def _read_templates() -> dict[str, str]:
    root = importlib.resources.files("amoskys") / "templates"
    return {t.name: t.read_text(encoding="utf-8") for t in root.iterdir() if t.name.endswith(".html")}


#: read once, at import: rendering a page never reads a file in the event loop
TEMPLATES = _read_templates()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True)
    env.globals["asset"] = assets.url  # a static file's versioned URL (cached by browsers for good)
    env.filters["ts"] = fmt.time_html
    env.filters["iso"] = fmt.iso
    env.filters["duration"] = fmt.duration
    env.filters["uptime"] = fmt.uptime
    env.filters["bit_rate"] = fmt.bit_rate
    env.filters["summary"] = lambda e: fmt.summary(e.get("kind", ""), e.get("body"))
    env.filters["fields"] = lambda e: fmt.fields(e.get("kind", ""), e.get("body"))
    env.filters["service"] = netnames.service_name
    env.filters["bytes"] = _fmt_bytes
    env.filters["num"] = lambda v: f"{v:,.0f}" if isinstance(v, int | float) else v
    return env


def _fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value} B"


NAV = [
    ("/", "Overview"),
    ("/alerts", "Alerts"),
    ("/collectors", "Collectors"),
    ("/events", "Events"),
    ("/processes", "Processes"),
    ("/host", "Host"),
    ("/flows", "Flows"),
    ("/devices", "Devices"),
    ("/snmp", "SNMP"),
    ("/agents", "Agents"),
    ("/users", "Users"),
    ("/audit", "Audit"),
    ("/account", "Account"),
]

PageFn = Callable[[Request, WebContext, Principal], Awaitable[dict[str, Any]]]


def _page(ctx: WebContext, env: jinja2.Environment, template: str, fn: PageFn, *, admin: bool = False):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        principal = await ctx.auth.authenticate(request, ctx.cookie_name)
        if principal is None or principal.via != "cookie":
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if admin and not principal.is_admin:
            return _render(env, "forbidden.html", request, ctx, principal, {}, status=403)
        try:
            data = await fn(request, ctx, principal)
        except ApiError as err:
            return _render(
                env, "error.html", request, ctx, principal, {"message": err.message}, status=err.status
            )
        return _render(env, template, request, ctx, principal, data)

    return endpoint


def _render(
    env: jinja2.Environment,
    template: str,
    request: Request,
    ctx: WebContext,
    principal: Principal | None,
    data: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    html = env.get_template(template).render(
        request=request,
        nav=NAV,
        path=request.url.path,
        user=principal,
        appliance=ctx.name,
        version=__version__,
        plain_http_warning=ctx.config.web.plain_http_off_loopback,
        csrf=ctx.auth.csrf_token(principal) if principal else "",
        **data,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------- page data
async def _api(ep: Endpoint, request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    """What the page's /api/v1 twin answers for this request (its query and path parameters)."""
    data: dict[str, Any] = await ep.invoke(request, ctx, p)
    return data


async def overview(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    data = await _api(overview_api.overview, request, ctx, p)
    return {"o": data}


async def alerts(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    page = await _api(alerts_api.alerts, request, ctx, p)
    q = dict(request.query_params)
    rules = rules_api.rules_view_of(ctx)["items"]
    return {
        "page": page,
        "q": q,
        "state": q.get("state") or "open",
        "states": alerts_api.STATE_CHOICES,
        "levels": alerts_api.LEVELS,
        "rule_options": [r for r in rules if r["status"] == "loaded"],
        "hosts": sorted({a["host"] for a in page["items"]}),
    } | _alert_actions()


async def alert_detail(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    return {"a": await _api(alerts_api.alert, request, ctx, p)} | _alert_actions()


def _alert_actions() -> dict[str, Any]:
    return {
        "triage_actions": alerts_api.TRIAGE_ACTIONS,
        "suppress_fields": alerts_api.SUPPRESS_FIELDS,
        "max_suppress_hours": alerts_api.MAX_SUPPRESS_HOURS,
    }


async def rules(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    """The rules (in memory) and the suppressions (one read)."""
    data = await _api(alerts_api.suppressions, request, ctx, p)
    return {"r": rules_api.rules_view_of(ctx), "suppressions": data["items"], "ended": data["ended"]}


async def collectors(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    return {"collectors": (await _api(collectors_api.collectors, request, ctx, p))["items"]}


async def events(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    from amoskys.events import KINDS

    return {
        "page": await _api(events_api.events, request, ctx, p),
        "kinds": KINDS,
        "q": dict(request.query_params),
        "sources": await sources.sources(ctx.reads),
    }


async def event_detail(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    return {"e": await _api(events_api.event, request, ctx, p)}


async def processes(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    execs = await _api(processes_api.execs, request, ctx, p)
    return {
        "procs": await _api(processes_api.processes, request, ctx, p),
        "execs": execs["items"],
        "execs_next": execs["next_before"],
        "q": dict(request.query_params),
        "sources": await sources.sources(ctx.reads),
    }


async def host(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    data = await _api(host_api.host, request, ctx, p)
    return {
        "hosts": data["items"],
        "series": data["series"],
        "sources": data["sources"],
        "q": dict(request.query_params),
    }


async def flows(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    top = (await _api(flows_api.top_talkers, request, ctx, p))["items"]
    return {
        "page": await _api(flows_api.flows, request, ctx, p),
        "top": top,
        "top_names": await address_names(ctx.reads, [t["addr"] for t in top]),
        "q": dict(request.query_params),
    }


async def search(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    q = request.query_params.get("q", "")
    found = await _api(search_api.search, request, ctx, p) if q.strip() else None
    return {"found": found, "q": {"q": q}}


async def devices(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    return {
        "devices": (await _api(devices_api.devices, request, ctx, p))["items"],
        "q": dict(request.query_params),
    }


async def snmp(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    """The targets, and one page of one target's interfaces (`?target=`, else the first target's)."""
    targets = (await _api(snmp_api.snmp_targets, request, ctx, p))["items"]
    target = request.query_params.get("target") or (targets[0]["target"] if targets else "")
    page: dict[str, Any] = {"items": [], "next": None}
    if target:
        request.scope["path_params"] = {"target": target}
        page = await _api(snmp_api.snmp_interfaces, request, ctx, p)
    chart = await series_api.interface_chart(
        Call(request, ctx, p), target, request.query_params.get("if_index"), page["items"]
    )
    return {"targets": targets, "target": target, "interfaces": page["items"], "next": page["next"]} | chart


async def agents(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    data = await _api(agents_api.agents, request, ctx, p)
    return {"agents": data["items"], "silent_after": data["silent_after_heartbeats"], "boxes": data["boxes"]}


async def users(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    return {"users": (await _api(users_api.users, request, ctx, p))["items"]}


async def audit(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    page = await _api(audit_api.audit, request, ctx, p)
    return {"page": page, "remote": page["remote"]}


async def account(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    rows = await ctx.store.state.list_tokens(None if p.is_admin else p.user)
    return {
        "tokens": [tokens_api.token_dict(r) for r in rows],
        "session_id": public_id(p.session),
        "session_expires_ns": p.expires_ns,
        "message": "",
        "failed": False,
        "new_token": None,
    }


def account_routes(ctx: WebContext, env: jinja2.Environment) -> list[Route]:
    """The account page's forms (issue a token, revoke one, change the password): each runs its
    /api/v1 twin and shows the page again with the outcome. CSRF: the `csrf` form field."""

    async def act(request: Request) -> Response:
        principal = await ctx.auth.authenticate(request, ctx.cookie_name)
        if principal is None or principal.via != "cookie":
            return RedirectResponse("/login?next=/account", status_code=303)
        form = await request.form()
        if not same_origin(request) or not ctx.auth.csrf_ok(principal, str(form.get("csrf", ""))):
            refused = {"message": "missing or wrong CSRF token"}
            return _render(env, "error.html", request, ctx, principal, refused, status=403)
        what = request.url.path.rsplit("/", 1)[-1]
        extra: dict[str, Any] = {}
        status = 200
        try:
            if what == "password":
                if form.get("new") != form.get("again"):
                    raise ApiError(400, "the two new passwords differ")
                result = await session_api.change_password.invoke(request, ctx, principal)
                if isinstance(result, Response):  # throttled
                    raise ApiError(result.status_code, "too many wrong passwords; try again later")
                extra["message"] = f"Password changed; {result['ended']} other sessions and tokens ended."
            elif what == "tokens":
                extra["new_token"] = await tokens_api.new_token.invoke(request, ctx, principal)
            else:
                revoked = await tokens_api.revoke_token.invoke(request, ctx, principal)
                extra["message"] = f"Token {revoked['id']} revoked."
        except ApiError as err:
            extra, status = {"message": err.message, "failed": True}, err.status
        data = await account(request, ctx, principal) | extra
        return _render(env, "account.html", request, ctx, principal, data, status=status)

    return [
        Route("/account/password", act, methods=["POST"]),
        Route("/account/tokens", act, methods=["POST"]),
        Route("/account/tokens/{id}/revoke", act, methods=["POST"]),
    ]


# ---------------------------------------------------------------------- login
def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else "/"


def login_routes(ctx: WebContext, env: jinja2.Environment) -> list[Route]:
    async def login_page(request: Request) -> Response:
        if request.method == "GET":
            return _render(
                env,
                "login.html",
                request,
                ctx,
                None,
                {"error": "", "next": _safe_next(request.query_params.get("next"))},
            )
        if not same_origin(request):
            return _render(
                env,
                "login.html",
                request,
                ctx,
                None,
                {"error": "cross-origin request refused", "next": "/"},
                status=403,
            )
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        nxt = _safe_next(str(form.get("next", "/")))
        result = await ctx.auth.login(name, password, request.client.host if request.client else "")
        if result.invalid:
            return _render(
                env, "login.html", request, ctx, None, {"error": result.invalid, "next": nxt}, status=400
            )
        if result.throttled:
            return _render(
                env,
                "login.html",
                request,
                ctx,
                None,
                {
                    "error": f"Too many failed logins. Try again in {math.ceil(result.retry_after_s / 60)} "
                    "minutes.",
                    "next": nxt,
                },
                status=429,
            )
        if not result.ok:
            return _render(
                env,
                "login.html",
                request,
                ctx,
                None,
                {"error": "Invalid user name or password.", "next": nxt},
                status=401,
            )
        response = RedirectResponse(nxt, status_code=303)
        session_api.set_session_cookie(response, ctx, result.token)
        return response

    async def logout_page(request: Request) -> Response:
        principal = await ctx.auth.authenticate(request, ctx.cookie_name)
        form = await request.form()
        if principal is not None and ctx.auth.csrf_ok(principal, str(form.get("csrf", ""))):
            await ctx.auth.logout(principal, request.client.host if request.client else "")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(ctx.cookie_name, path="/")
        return response

    return [
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout_page, methods=["POST"]),
    ]


def routes(ctx: WebContext) -> list[Route]:
    env = _environment()
    pages: list[tuple[str, str, PageFn, bool]] = [
        ("/", "overview.html", overview, False),
        ("/alerts", "alerts.html", alerts, False),
        ("/alerts/rules", "rules.html", rules, False),
        ("/alerts/{id}", "alert.html", alert_detail, False),
        ("/collectors", "collectors.html", collectors, False),
        ("/events", "events.html", events, False),
        ("/events/{seq}", "event.html", event_detail, False),
        ("/processes", "processes.html", processes, False),
        ("/host", "host.html", host, False),
        ("/hosts/{source}", "hostpage.html", joined_pages.host, False),
        ("/devices/{key}", "device.html", joined_pages.device, False),
        ("/flows", "flows.html", flows, False),
        ("/search", "search.html", search, False),
        ("/devices", "devices.html", devices, False),
        ("/snmp", "snmp.html", snmp, False),
        ("/agents", "agents.html", agents, False),
        ("/users", "users.html", users, True),
        ("/audit", "audit.html", audit, False),
        ("/account", "account.html", account, False),
    ]
    out = [
        Route(path, _page(ctx, env, tpl, fn, admin=admin), methods=["GET"]) for path, tpl, fn, admin in pages
    ]
    return out + login_routes(ctx, env) + account_routes(ctx, env)
