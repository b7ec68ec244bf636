"""Attacks on sessions and API tokens, against a real `amoskys run`.

Before the defence a session cookie also worked as `Authorization: Bearer` (no CSRF, no idle
timeout); a token could mint 365-day tokens that outlived it and the session it came from; nothing
revoked them, and a password change left every other session and token alive. Now the sessions table
records each row's kind (a value issued as a cookie is refused as a bearer and the other way round);
a token's expiry is clamped to its issuer's and its role to the issuer's; revoking a session or a
token revokes what it issued; a password change ends the user's other sessions and tokens.
"""

from __future__ import annotations

import httpx
import pytest

from support import amoskys, wait_for

pytestmark = [pytest.mark.e2e]

COOKIE = "amoskys_session"


def _login(app, password: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    client = httpx.Client(base_url=app.web_url, timeout=30)
    r = client.post("/api/v1/login", json={"name": "admin", "password": password})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = client.get("/api/v1/me").json()["csrf_token"]
    return client


def _bearer(app, token: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=app.web_url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def test_cookies_and_tokens_keep_their_kind_and_never_outgrow_their_issuer(appliance_factory) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    password = (app.data_dir / "admin-password").read_text().strip()
    browser = _login(app, password)
    session_value = next(iter(browser.cookies.values()))
    session_end = browser.get("/api/v1/tokens").json()["session_expires_ns"]

    # a session cookie presented as a bearer token: refused (it would skip CSRF and the idle timeout)
    with _bearer(app, session_value) as stolen:
        assert stolen.get("/api/v1/me").status_code == 401
        assert stolen.post("/api/v1/tokens", json={"days": 1}).status_code == 401

    # a token minted by the session: clamped to the session's end, whatever it asked for
    r = browser.post("/api/v1/tokens", json={"days": 365, "label": "ci"})
    assert r.status_code == 200, r.text
    parent = r.json()
    assert parent["clamped"] is True and parent["expires_ns"] <= session_end
    with _bearer(app, parent["token"]) as script:
        assert script.get("/api/v1/me").status_code == 200
        # ... and a token presented as a cookie: refused
        with httpx.Client(base_url=app.web_url, timeout=30, cookies={COOKIE: parent["token"]}) as c:
            assert c.get("/api/v1/me").status_code == 401
            assert c.get("/", follow_redirects=False).status_code == 303
        # a token minting a longer-lived token: clamped to the minting token's expiry
        child = script.post("/api/v1/tokens", json={"days": 365}).json()
        assert child["clamped"] is True and child["expires_ns"] <= parent["expires_ns"]
        # a viewer-capped token cannot mint an admin token
        viewer = script.post("/api/v1/tokens", json={"role": "viewer"}).json()
        with _bearer(app, viewer["token"]) as v:
            assert v.get("/api/v1/users").status_code == 403
            escalated = v.post("/api/v1/tokens", json={"role": "admin"})
            assert escalated.status_code == 403, escalated.text
        listed = {t["id"]: t for t in browser.get("/api/v1/tokens").json()["items"]}
        assert listed[parent["id"]]["label"] == "ci"
        assert listed[child["id"]]["issued_by"] == parent["id"]
        assert all(parent["token"] not in str(t) for t in listed.values())

    # the session that issued them logs out: every token it issued, and theirs, stops working
    assert browser.post("/api/v1/logout").status_code == 200
    for t in (parent, child, viewer):
        with _bearer(app, t["token"]) as c:
            assert c.get("/api/v1/me").status_code == 401, t
    browser.close()


def test_revocation_by_api_and_cli_and_a_password_change_end_other_sessions(appliance_factory) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    data = str(app.data_dir)
    password = (app.data_dir / "admin-password").read_text().strip()
    mine, other = _login(app, password), _login(app, password)

    by_api = mine.post("/api/v1/tokens", json={"label": "api"}).json()
    by_cli = mine.post("/api/v1/tokens", json={"label": "cli"}).json()
    assert mine.post(f"/api/v1/tokens/{by_api['id']}/revoke").status_code == 200
    with _bearer(app, by_api["token"]) as c:
        assert c.get("/api/v1/me").status_code == 401
    assert mine.post(f"/api/v1/tokens/{by_api['id']}/revoke").status_code == 404

    listing = amoskys("tokens", "list", "--data-dir", data).stdout
    assert by_cli["id"] in listing and "cli" in listing and by_cli["token"] not in listing
    amoskys("tokens", "revoke", by_cli["id"], "--data-dir", data)
    with _bearer(app, by_cli["token"]) as c:
        assert c.get("/api/v1/me").status_code == 401

    # a password change: the current session stays, the other session and every token end
    kept = mine.post("/api/v1/tokens", json={"label": "before"}).json()
    wrong = mine.post("/api/v1/password", json={"current": "nope-not-it", "new": "a-brand-new-password"})
    assert wrong.status_code == 403
    short = mine.post("/api/v1/password", json={"current": password, "new": "short"})
    assert short.status_code == 400 and "12 characters" in short.json()["error"]
    r = mine.post("/api/v1/password", json={"current": password, "new": "a-brand-new-password"})
    assert r.status_code == 200, r.text
    assert mine.get("/api/v1/me").status_code == 200
    assert other.get("/api/v1/me").status_code == 401
    with _bearer(app, kept["token"]) as c:
        assert c.get("/api/v1/me").status_code == 401
    with httpx.Client(base_url=app.web_url, timeout=30) as c:
        assert c.post("/api/v1/login", json={"name": "admin", "password": password}).status_code == 401
        assert (
            c.post("/api/v1/login", json={"name": "admin", "password": "a-brand-new-password"}).status_code
            == 200
        )
    # audit events reach the store through the bus: poll
    wait_for(
        lambda: (
            {"password_changed", "token_revoked"}
            <= {
                e["body"].get("action")
                for e in mine.get("/api/v1/audit", params={"limit": 100}).json()["items"]
            }
        ),
        timeout=30,
        what="the password change and the token revocations in the audit log",
    )
    mine.close()
    other.close()
    assert "a-brand-new-password" not in app.log()
