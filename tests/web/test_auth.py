"""Who may do what on the dashboard: logins, throttling, sessions, CSRF, roles, secrets."""

from __future__ import annotations

import re
import statistics
import time

import pytest

from amoskys.web.endpoints import Endpoint
from amoskys.web.routes import ENDPOINTS

from web_harness import VIEWER_PASSWORD, Web


def test_first_admin_password_is_in_a_private_file(web: Web) -> None:
    path = web.data / "admin-password"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(web.admin_password) >= 20


async def test_login_sets_a_strict_httponly_cookie_and_logout_revokes_the_session(web: Web) -> None:
    c = web.client()
    r = await c.post("/api/v1/login", json={"name": "admin", "password": web.admin_password})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    token = c.cookies.get("amoskys_session")
    me = await c.get("/api/v1/me")
    assert me.json()["user"] == "admin" and me.json()["role"] == "admin"
    r = await c.post("/api/v1/logout", headers={"X-CSRF-Token": me.json()["csrf_token"]})
    assert r.status_code == 200
    # the old token is dead on the server, not merely forgotten by the browser
    stale = web.client()
    stale.cookies.set("amoskys_session", token or "")
    assert (await stale.get("/api/v1/me")).status_code == 401


async def test_unknown_user_and_wrong_password_look_the_same(web: Web) -> None:
    c = web.client()
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    bodies = set()
    for i in range(4):
        for case, name in (("unknown", f"nobody{i}"), ("wrong", "viewer")):
            t0 = time.perf_counter()
            r = await c.post("/api/v1/login", json={"name": name, "password": f"bad-{i}"})
            times[case].append(time.perf_counter() - t0)
            bodies.add((r.status_code, r.text))
    assert bodies == {(401, '{"error":"invalid user name or password"}')}
    ratio = statistics.median(times["unknown"]) / statistics.median(times["wrong"])
    assert 0.5 < ratio < 2.0, times  # both pay for one scrypt


async def test_a_thousand_bad_logins_are_refused_cheaply_and_the_admin_still_gets_in(web: Web) -> None:
    attacker = web.client("198.51.100.66")
    statuses = []
    t0 = time.perf_counter()
    for i in range(1000):
        r = await attacker.post("/api/v1/login", json={"name": "admin", "password": f"guess-{i}"})
        statuses.append(r.status_code)
    took = time.perf_counter() - t0
    assert statuses[:5] == [401] * 5  # five real checks ...
    assert set(statuses[5:]) == {429}  # ... then refused before any hashing
    assert took < 30, f"1000 throttled logins took {took:.1f} s"
    ok = await web.client("192.0.2.50").post(
        "/api/v1/login", json={"name": "admin", "password": web.admin_password}
    )
    assert ok.status_code == 200
    failed = [
        e for e in (await web.ctx.reads.recent(kind="audit", limit=2000)) if not e.parse().audit.success
    ]
    assert failed, "failed logins are audited"


async def test_csrf_token_is_required_for_cookie_sessions(web: Web) -> None:
    c, csrf = await web.login("admin", web.admin_password)
    url = "/api/v1/collectors/heartbeat/stop"
    assert (await c.post(url)).status_code == 403
    assert (await c.post(url, headers={"X-CSRF-Token": "0" * 64})).status_code == 403
    r = await c.post(url, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "stopped"


async def test_cross_origin_posts_are_refused(web: Web) -> None:
    c, csrf = await web.login("admin", web.admin_password)
    r = await c.post(
        "/api/v1/collectors/heartbeat/stop", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    )
    assert r.status_code == 403


async def test_api_tokens_work_without_cookie_or_csrf_and_die_with_the_user(web: Web) -> None:
    c, csrf = await web.login("admin", web.admin_password)
    token = (await c.post("/api/v1/tokens", json={"days": 7}, headers={"X-CSRF-Token": csrf})).json()["token"]
    script = web.client("203.0.113.9")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await script.get("/api/v1/collectors", headers=headers)).status_code == 200
    assert (await script.post("/api/v1/collectors/heartbeat/restart", headers=headers)).status_code == 200
    assert (
        await script.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    ).status_code == 401


def _post_routes() -> list[Endpoint]:
    return [e for e in ENDPOINTS if e.method == "POST" and e.role != "public"]


def _url(ep: Endpoint) -> str:
    return ep.path.replace("{name}", "heartbeat").replace("{action}", "restart")


@pytest.mark.parametrize("ep", _post_routes(), ids=lambda e: e.path)
async def test_authorization_matrix_for_every_state_changing_route(web: Web, ep: Endpoint) -> None:
    anonymous = web.client("192.0.2.1")
    assert (await anonymous.post(_url(ep), json={})).status_code == 401
    viewer, vcsrf = await web.login("viewer", VIEWER_PASSWORD, "192.0.2.2")
    r = await viewer.post(_url(ep), json={}, headers={"X-CSRF-Token": vcsrf})
    if ep.role == "admin":
        assert r.status_code == 403, (ep.path, r.text)
    else:
        assert r.status_code in (200, 400), (ep.path, r.text)  # allowed (a 400 only for missing fields)
    admin, acsrf = await web.login("admin", web.admin_password, "192.0.2.3")
    r = await admin.post(_url(ep), json={}, headers={"X-CSRF-Token": acsrf})
    assert r.status_code not in (401, 403), (ep.path, r.text)


async def test_viewers_see_pages_but_not_users(web: Web) -> None:
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    for path, _label in [("/", ""), ("/collectors", ""), ("/events", ""), ("/agents", ""), ("/audit", "")]:
        assert (await c.get(path)).status_code == 200, path
    assert (await c.get("/users")).status_code == 403
    assert (await c.get("/api/v1/users")).status_code == 403
    page = (await c.get("/collectors")).text
    assert 'data-action="stop"' not in page  # no control buttons for viewers


async def test_pages_redirect_anonymous_users_to_login(web: Web) -> None:
    r = await web.client().get("/events?kind=flow")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/events"


async def test_security_headers_on_every_response(web: Web) -> None:
    c = web.client()
    for path in ("/login", "/api/v1/openapi.json", "/metrics", "/healthz"):
        r = await c.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"


async def test_no_page_or_api_response_contains_a_secret(web: Web) -> None:
    c, _ = await web.login("admin", web.admin_password)
    token = c.cookies.get("amoskys_session") or ""
    secrets = {
        "admin password": web.admin_password,
        "session token": token,
        "csrf secret": (web.data / "web.secret").read_bytes().hex(),
    }
    pages = [
        "/",
        "/collectors",
        "/events",
        "/processes",
        "/flows",
        "/devices",
        "/snmp",
        "/agents",
        "/users",
        "/audit",
    ]
    apis = [e.path for e in ENDPOINTS if e.method == "GET" and "{" not in e.path]
    for path in pages + apis:
        body = (await c.get(path)).text
        for what, secret in secrets.items():
            assert secret not in body, f"{what} on {path}"
        assert not re.search(r"BEGIN [A-Z ]*PRIVATE KEY", body), path
        assert "scrypt$" not in body, f"a password hash on {path}"
