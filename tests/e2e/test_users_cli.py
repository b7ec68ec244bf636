"""`amoskys users`, `tokens` and `agents` against a running appliance and a stopped data dir: the new
user can log in at once, removal ends sessions, and every change leaves an audit row naming
``cli:<unix user>`` (through the running appliance's control service, or one the CLI runs itself)."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
from pathlib import Path

import httpx
import pytest

from amoskys.paths import Layout

from support import amoskys

ME = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"

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


def test_passwd_and_tokens_from_the_cli_take_effect_on_the_running_appliance(appliance_factory) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    data = str(app.data_dir)
    password = (app.data_dir / "admin-password").read_text().strip()
    too_long = amoskys("tokens", "issue", "admin", "--days", "366", "--data-dir", data, check=False)
    assert too_long.returncode == 2 and "1..365" in too_long.stderr
    issued = amoskys("tokens", "issue", "admin", "--days", "30", "--label", "nightly", "--data-dir", data)
    token = issued.stdout.strip()
    listing = amoskys("tokens", "list", "--data-dir", data).stdout
    assert "nightly" in listing and token not in listing
    with httpx.Client(base_url=app.web_url, timeout=30) as web:
        bearer = {"Authorization": f"Bearer {token}"}
        assert web.get("/api/v1/me", headers=bearer).json()["role"] == "admin"
        assert web.post("/api/v1/login", json={"name": "admin", "password": password}).status_code == 200
        assert web.get("/api/v1/me").status_code == 200

        nobody = amoskys("users", "passwd", "nobody", "--password-stdin", "--data-dir", data, check=False)
        assert nobody.returncode == 1 and "no user named 'nobody'" in nobody.stderr
        short = amoskys(
            "users", "passwd", "admin", "--password-stdin", "--data-dir", data, input="short\n", check=False
        )
        assert short.returncode == 2 and "12 characters" in short.stderr
        assert web.get("/api/v1/me").status_code == 200  # nothing changed
        done = amoskys(
            "users",
            "passwd",
            "admin",
            "--password-stdin",
            "--data-dir",
            data,
            input="the-new-admin-password\n",
        )
        assert "2 sessions and tokens ended" in done.stdout, done.stdout
        # the running appliance reads the store on each request: both are refused at once
        assert web.get("/api/v1/me").status_code == 401
        assert web.get("/api/v1/me", headers=bearer).status_code == 401
        assert web.post("/api/v1/login", json={"name": "admin", "password": password}).status_code == 401
        r = web.post("/api/v1/login", json={"name": "admin", "password": "the-new-admin-password"})
        assert r.status_code == 200
    assert "nightly" not in amoskys("tokens", "list", "--data-dir", data).stdout
    missing = amoskys("tokens", "revoke", "0123456789ab", "--data-dir", data, check=False)
    assert missing.returncode == 1 and "no active token" in missing.stderr
    assert "the-new-admin-password" not in app.log()


def _audit(data: str) -> list[tuple[str, str, str, bool]]:
    out = amoskys("events", "export", "--kind", "audit", "--data-dir", data).stdout
    rows = [json.loads(line)["body"] for line in out.splitlines()]
    return [(r["actor"], r["action"], r["target"], r.get("success", False)) for r in rows]


def _add_enrol_revoke(data: str, bundle: Path) -> tuple[str, str]:
    amoskys("users", "add", "ops", "--password-stdin", "--data-dir", data, input="a-long-enough-password\n")
    enrol = ["agents", "enroll", "edge-1", "--out", str(bundle), "--bus-address", "127.0.0.1:4443"]
    amoskys(*enrol, "--data-dir", data)
    revoked = amoskys("agents", "revoke", "edge-1", "--data-dir", data)
    again = amoskys("agents", "revoke", "edge-1", "--data-dir", data, check=False)
    assert again.returncode == 1 and again.stdout.startswith("already revoked 'edge-1'")
    return revoked.stdout, again.stdout


EXPECTED = [
    (ME, "user_added", "ops", True),
    (ME, "agent_enrolled", "edge-1", True),
    (ME, "agent_revoked", "edge-1", True),
    (ME, "agent_revoked", "edge-1", True),
]


def test_changes_through_a_running_appliance_are_audited_as_the_unix_user(
    appliance_factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    data = str(app.data_dir)
    revoked, _ = _add_enrol_revoke(data, tmp_path / "bundle")
    assert "the running appliance confirmed it refuses the agent" in revoked
    rows = _audit(data)
    assert [r for r in rows if r[0].startswith("cli:")] == EXPECTED, rows


def test_changes_on_a_stopped_data_dir_are_audited_and_there_when_the_appliance_starts(
    appliance_factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "data"
    data = str(data_dir)
    amoskys("certs", "init", "--data-dir", data)
    revoked, _ = _add_enrol_revoke(data, tmp_path / "bundle")
    assert "no appliance is running with data dir" in revoked
    assert _audit(data) == EXPECTED
    app = appliance_factory(data_dir=data_dir)
    app.wait_ready(timeout=60)
    assert [r for r in _audit(data) if r[0].startswith("cli:")] == EXPECTED
    assert "ops" in amoskys("users", "list", "--data-dir", data).stdout


def test_no_second_writer_while_the_store_is_held_and_the_socket_does_not_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An appliance starting up holds the store before its control socket answers: the CLI refuses
    rather than open a second writer."""
    data = str(tmp_path / "data")
    amoskys("certs", "init", "--data-dir", data)
    amoskys("users", "add", "ops", "--password-stdin", "--data-dir", data, input="a-long-enough-password\n")
    db = Layout(tmp_path / "data").db
    fd = os.open(db.with_name(db.name + ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = amoskys("users", "remove", "ops", "--data-dir", data, check=False)
    finally:
        os.close(fd)
    assert held.returncode == 2 and "is in use by pid" in held.stderr, held.stderr
    assert "ops" in amoskys("users", "list", "--data-dir", data).stdout
    assert [r[1] for r in _audit(data)] == ["user_added"]
