"""`amoskys users` against a running appliance: the new user can log in at once; removal ends sessions."""

from __future__ import annotations

import httpx
import pytest

from support import amoskys

pytestmark = pytest.mark.e2e


def test_users_added_while_running_can_log_in_and_removed_ones_cannot(appliance_factory) -> None:
    app = appliance_factory()
    app.wait_ready()
    data = str(app.data_dir)
    short = amoskys("users", "add", "ops", "--data-dir", data, input="short\n", check=False)
    assert short.returncode == 2 and "12 characters" in short.stderr
    long = amoskys(
        "users", "add", "ops", "--password-stdin", "--data-dir", data, input="x" * 1025 + "\n", check=False
    )
    assert long.returncode == 2 and "1024 characters at most" in long.stderr
    amoskys(
        "users",
        "add",
        "ops",
        "--role",
        "viewer",
        "--password-stdin",
        "--data-dir",
        data,
        input="a-long-enough-password\n",
    )
    assert "ops" in amoskys("users", "list", "--data-dir", data).stdout
    # a taken name is refused before any password is asked for (stdin is empty: no password at all)
    taken = amoskys("users", "add", "ops", "--password-stdin", "--data-dir", data, input="", check=False)
    assert taken.returncode == 2
    assert taken.stderr.strip() == (
        "amoskys: error: user 'ops' already exists (--replace sets a new password and role)"
    )
    with httpx.Client(base_url=app.web_url) as web:
        r = web.post("/api/v1/login", json={"name": "ops", "password": "a-long-enough-password"})
        assert r.status_code == 200 and r.json()["role"] == "viewer"
        assert web.get("/api/v1/me").status_code == 200
        amoskys("users", "remove", "ops", "--data-dir", data)
        assert web.get("/api/v1/me").status_code == 401
    assert "a-long-enough-password" not in app.log()
