"""API tokens and password changes in the dashboard: who may list and revoke which tokens, the account
page's forms, live streams ended on revocation, and the migration that tells old tokens from sessions."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from amoskys.store import schema
from amoskys.web import passwords

from support import eventually
from web_harness import VIEWER_PASSWORD, Web

HOUR_NS = 3600 * 10**9


async def _token(web: Web, c, csrf: str, **body) -> dict:  # type: ignore[no-untyped-def]
    r = await c.post("/api/v1/tokens", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    return r.json()


async def test_viewers_see_and_revoke_only_their_own_tokens_and_admins_everyones(web: Web) -> None:
    admin, acsrf = await web.login("admin", web.admin_password, "192.0.2.3")
    viewer, vcsrf = await web.login("viewer", VIEWER_PASSWORD, "192.0.2.2")
    mine = await _token(web, admin, acsrf, label="admin-script")
    theirs = await _token(web, viewer, vcsrf, label="viewer-script")
    assert theirs["role"] == "viewer"
    # a viewer cannot mint an admin token
    r = await viewer.post("/api/v1/tokens", json={"role": "admin"}, headers={"X-CSRF-Token": vcsrf})
    assert r.status_code == 403

    assert [t["id"] for t in (await viewer.get("/api/v1/tokens")).json()["items"]] == [theirs["id"]]
    assert (await viewer.get("/api/v1/tokens", params={"all": 1})).status_code == 403
    everyone = (await admin.get("/api/v1/tokens", params={"all": 1})).json()["items"]
    assert {t["id"] for t in everyone} == {mine["id"], theirs["id"]}

    # a viewer revoking the admin's token: indistinguishable from an unknown id
    r = await viewer.post(f"/api/v1/tokens/{mine['id']}/revoke", headers={"X-CSRF-Token": vcsrf})
    assert r.status_code == 404
    bearer = web.client("203.0.113.9")
    assert (
        await bearer.get("/api/v1/me", headers={"Authorization": f"Bearer {mine['token']}"})
    ).status_code == 200
    # the admin revokes the viewer's
    r = await admin.post(f"/api/v1/tokens/{theirs['id']}/revoke", headers={"X-CSRF-Token": acsrf})
    assert r.status_code == 200
    auth = {"Authorization": f"Bearer {theirs['token']}"}
    assert (await bearer.get("/api/v1/me", headers=auth)).status_code == 401
    bad = await admin.post("/api/v1/tokens/not-an-id/revoke", headers={"X-CSRF-Token": acsrf})
    assert bad.status_code == 400 and "hex digits" in bad.json()["error"]


async def test_revocations_end_the_live_streams_of_what_they_revoke(web: Web) -> None:
    auth = web.ctx.auth
    admin, acsrf = await web.login("admin", web.admin_password)
    session = passwords.token_hash(admin.cookies["amoskys_session"])
    parent = await _token(web, admin, acsrf)
    bearer = web.client("203.0.113.9")
    headers = {"Authorization": f"Bearer {parent['token']}"}
    child = (await bearer.post("/api/v1/tokens", json={}, headers=headers)).json()
    streams = {
        name: auth.watch(passwords.token_hash(t["token"])) for name, t in (("p", parent), ("c", child))
    }

    # revoking the parent token ends it and the token it issued
    r = await admin.post(f"/api/v1/tokens/{parent['id']}/revoke", headers={"X-CSRF-Token": acsrf})
    assert r.status_code == 200
    assert all(e.is_set() for e in streams.values())

    # a password change ends the user's other sessions (and their streams), not the current one
    other, _ = await web.login("admin", web.admin_password, "192.0.2.77")
    kept, ended = auth.watch(session), auth.watch(passwords.token_hash(other.cookies["amoskys_session"]))
    r = await admin.post(
        "/api/v1/password",
        json={"current": web.admin_password, "new": "the-admins-new-password"},
        headers={"X-CSRF-Token": acsrf},
    )
    assert r.status_code == 200 and r.json()["ended"] == 1, r.text
    assert ended.is_set() and not kept.is_set()
    assert (await other.get("/api/v1/me")).status_code == 401

    # removing a user ends their streams
    viewer, _ = await web.login("viewer", VIEWER_PASSWORD, "192.0.2.2")
    gone = auth.watch(passwords.token_hash(viewer.cookies["amoskys_session"]))
    r = await admin.post("/api/v1/users/viewer/delete", headers={"X-CSRF-Token": acsrf})
    assert r.status_code == 200 and gone.is_set()


async def test_wrong_current_passwords_are_throttled_like_logins(web: Web) -> None:
    viewer, csrf = await web.login("viewer", VIEWER_PASSWORD, "192.0.2.2")
    statuses = []
    for i in range(7):
        r = await viewer.post(
            "/api/v1/password",
            json={"current": f"guess-{i}", "new": "a-brand-new-password"},
            headers={"X-CSRF-Token": csrf},
        )
        statuses.append(r.status_code)
    assert statuses == [403] * 5 + [429] * 2
    r = await viewer.post(
        "/api/v1/password",
        json={"current": VIEWER_PASSWORD, "new": "a-brand-new-password"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 429  # locked out at this address, the right password included
    assert await web.ctx.store.state.get_user("viewer") is not None
    actions = await _audited(web, "password_change_failed", 5)
    assert actions.count("password_change_failed") == 5 and "password_changed" not in actions


async def _audited(web: Web, action: str, count: int) -> list[str]:
    """The stored audit actions, once `count` of `action` are in (audit events reach the store
    through the bus)."""

    async def actions() -> list[str] | None:
        found = [e.parse().audit.action for e in await web.ctx.reads.recent(kind="audit", limit=50)]
        return found if found.count(action) >= count else None

    return await eventually(actions, what=f"{count} {action} audit events")


async def test_the_account_page_issues_lists_and_revokes_tokens_and_changes_the_password(web: Web) -> None:
    c, _ = await web.login("viewer", VIEWER_PASSWORD, "192.0.2.2")
    page = await c.get("/account")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]

    refused = await c.post("/account/tokens", data={"label": "nightly", "days": "30"})
    assert refused.status_code == 403 and not await web.ctx.store.state.list_tokens()
    r = await c.post("/account/tokens", data={"csrf": csrf, "label": "nightly", "days": "30"})
    assert r.status_code == 200
    token = re.search(r'<code id="token-out">([^<]+)</code>', r.text).group(1)  # type: ignore[union-attr]
    (row,) = await web.ctx.store.state.list_tokens("viewer")
    assert row.label == "nightly" and row.public_id in r.text and "clamped" in r.text
    assert token not in (await c.get("/account")).text  # shown once

    r = await c.post(f"/account/tokens/{row.public_id}/revoke", data={"csrf": csrf})
    assert r.status_code == 200 and f"Token {row.public_id} revoked." in r.text
    assert not await web.ctx.store.state.list_tokens()

    r = await c.post(
        "/account/password",
        data={"csrf": csrf, "current": VIEWER_PASSWORD, "new": "a-brand-new-password", "again": "typo"},
    )
    assert r.status_code == 400 and "differ" in r.text
    r = await c.post(
        "/account/password",
        data={
            "csrf": csrf,
            "current": VIEWER_PASSWORD,
            "new": "a-brand-new-password",
            "again": "a-brand-new-password",
        },
    )
    assert r.status_code == 200 and "Password changed" in r.text
    assert (await c.get("/api/v1/me")).status_code == 200
    user = await web.ctx.store.state.get_user("viewer")
    assert user is not None and await passwords.verify_password("a-brand-new-password", user.password_hash)


def test_the_migration_tells_old_api_tokens_from_sessions(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "v3.db", isolation_level=None)
    for migration in schema.MIGRATIONS[:3]:
        for statement in schema.statements(migration.script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO users VALUES ('ops', 'h', 'admin', 0, 0)")
    rows = [(b"s" * 32, 12 * HOUR_NS - 5), (b"t" * 32, 24 * HOUR_NS - 5), (b"y" * 32, 365 * 24 * HOUR_NS)]
    for id_hash, life in rows:
        conn.execute("INSERT INTO sessions VALUES (?, 'ops', 1000, ?, NULL)", (id_hash, 1000 + life))
    assert schema.migrate(conn, "v3.db")[0] == 4
    kinds = dict(conn.execute("SELECT id_hash, kind FROM sessions").fetchall())
    assert kinds == {b"s" * 32: "session", b"t" * 32: "token", b"y" * 32: "token"}
    assert conn.execute("SELECT DISTINCT label, issued_by, role FROM sessions").fetchall() == [
        ("", None, None)
    ]
