"""Attack: a logged-in session sends a CSRF token that is not ASCII, as a header and as the logout
form's field. It is a wrong token like any other: 403 (the form: no logout), never a 500 with a
traceback in the appliance's log."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.e2e]

NOT_ASCII = "é…"


def test_a_non_ascii_csrf_token_is_refused_not_a_crash(appliance_factory) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    password = (app.data_dir / "admin-password").read_text().strip()
    with httpx.Client(base_url=app.web_url, timeout=30) as admin:
        assert admin.post("/api/v1/login", json={"name": "admin", "password": password}).status_code == 200
        good = admin.get("/api/v1/me").json()["csrf_token"]

        # the header as UTF-8 bytes, as Latin-1 bytes, and a good token with a non-ASCII tail
        for value in (
            NOT_ASCII.encode(),
            NOT_ASCII.encode("latin-1", "replace"),
            (good + NOT_ASCII).encode(),
        ):
            r = admin.post("/api/v1/tokens", json={"days": 1}, headers={"X-CSRF-Token": value})
            assert r.status_code == 403, (value, r.status_code, r.text)
            assert "CSRF" in r.json()["error"]

        # the form field of the logout form: refused, so the session lives on on the server (the
        # answer clears the browser's cookie either way)
        session = dict(admin.cookies)
        r = admin.post("/logout", data={"csrf": NOT_ASCII}, follow_redirects=False)
        assert r.status_code == 303, r.text
        admin.cookies.update(session)
        assert admin.get("/api/v1/me").status_code == 200, "a wrong CSRF token logged the session out"

        # the good token still works
        r = admin.post("/api/v1/tokens", json={"days": 1}, headers={"X-CSRF-Token": good})
        assert r.status_code == 200, r.text

    log = app.log()
    assert "Traceback" not in log and "TypeError" not in log, log
