"""Attack: hold the bus's fan-out hostage with live event streams (SSE). One viewer opening hundreds of
streams it never reads once cut ingest from ~31,500 to ~500 events/s. Against a real `amoskys run`:
a session's ninth stream is refused with 429 naming `max_sse_streams_per_session` (the default 8);
past `max_sse_streams` across sessions likewise; each refusal is counted on /metrics by the key, with
no user in the labels; and a stream ends promptly when its session is logged out, and within a
recheck when another process revokes the session in the database or the CLI removes its user."""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import ExitStack, closing

import httpx
import pytest

from support import amoskys, http_get, wait_for

pytestmark = [pytest.mark.e2e]

VIEWER = "sse-viewer"
VIEWER_PASSWORD = "a viewer's long password"


def _login(stack: ExitStack, web_url: str, name: str, password: str) -> httpx.Client:
    client = stack.enter_context(httpx.Client(base_url=web_url, timeout=30))
    r = client.post("/api/v1/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    return client


class Stream:
    """An open /api/v1/stream: its response and what it has sent so far."""

    def __init__(self, stack: ExitStack, client: httpx.Client) -> None:
        """Keep the object while the stream should stay open: dropping its reader closes it."""
        self.response = stack.enter_context(client.stream("GET", "/api/v1/stream"))
        self.status_code = self.response.status_code
        if self.status_code == 200:
            self.chunks = self.response.iter_text()
            assert next(self.chunks).startswith("retry:")  # admitted: it has begun
        else:
            self.response.read()

    def json(self) -> dict:  # type: ignore[type-arg]
        return self.response.json()

    def read_to_end(self, within: float = 30.0) -> str:
        """Everything until the server ends the stream; fails if it is still sending after `within` s
        (an open stream sends a tick every second, so this never waits long without checking)."""
        deadline = time.monotonic() + within
        text = ""
        for chunk in self.chunks:
            text += chunk
            if time.monotonic() > deadline:
                raise AssertionError(f"the stream still runs after {within} s:\n{text[-500:]}")
        return text


def _open(stack: ExitStack, client: httpx.Client) -> Stream:
    return Stream(stack, client)


def _refused(web_url: str, reason: str) -> float:
    _, metrics = http_get(web_url + "/metrics")
    m = re.search(
        rf'^amoskys_web_sse_streams_refused_total\{{reason="{reason}"\}} (\S+)$', metrics.decode(), re.M
    )
    return float(m.group(1)) if m else -1.0


def test_a_sessions_ninth_stream_is_refused(appliance_factory) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    password = (app.data_dir / "admin-password").read_text().strip()
    with ExitStack() as stack:
        admin = _login(stack, app.web_url, "admin", password)
        opened = [_open(stack, admin) for _ in range(8)]
        assert [r.status_code for r in opened] == [200] * 8

        ninth = _open(stack, admin)
        assert ninth.status_code == 429, "a ninth stream of one session was admitted"
        assert int(ninth.response.headers["retry-after"]) > 0
        assert ninth.json()["key"] == "web.max_sse_streams_per_session"
        assert "max_sse_streams_per_session" in ninth.json()["error"]
        assert _refused(app.web_url, "max_sse_streams_per_session") == 1

        opened[0].response.close()  # a closed stream gives its slot back
        again = wait_for(
            lambda: (r := _open(stack, admin)).status_code == 200 and r,
            timeout=30,
            what="a slot freed by the closed stream",
        )
        assert again.status_code == 200
    _, metrics = http_get(app.web_url + "/metrics")
    assert "admin" not in "".join(re.findall(r"^amoskys_web_sse\S*", metrics.decode(), re.M))


def test_streams_past_the_appliance_limit_are_refused(appliance_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "amoskys.toml"
    config.write_text("[web]\nmax_sse_streams_per_session = 2\nmax_sse_streams = 4\n")
    app = appliance_factory("--config", str(config))
    app.wait_ready(timeout=60)
    password = (app.data_dir / "admin-password").read_text().strip()
    with ExitStack() as stack:
        sessions = [_login(stack, app.web_url, "admin", password) for _ in range(3)]
        held = [[_open(stack, session) for _ in range(3)] for session in sessions[:2]]  # kept open
        assert [[s.status_code for s in streams] for streams in held] == [[200, 200, 429]] * 2
        refused = _open(stack, sessions[2])
        assert refused.status_code == 429, "a stream past max_sse_streams was admitted"
        assert refused.json()["key"] == "web.max_sse_streams"
        assert _refused(app.web_url, "max_sse_streams") == 1
        assert _refused(app.web_url, "max_sse_streams_per_session") == 2


def test_logout_and_user_removal_end_open_streams(appliance_factory) -> None:  # type: ignore[no-untyped-def]
    app = appliance_factory()
    app.wait_ready(timeout=60)
    amoskys(
        "users", "add", VIEWER, "--role", "viewer", "--password-stdin", "--data-dir", str(app.data_dir),
        input=VIEWER_PASSWORD + "\n",
    )  # fmt: skip
    with ExitStack() as stack:
        # logout from another tab of the same session: the stream says why and ends at once
        viewer = _login(stack, app.web_url, VIEWER, VIEWER_PASSWORD)
        stream = _open(stack, viewer)
        csrf = viewer.get("/api/v1/me").json()["csrf_token"]
        started = time.monotonic()
        assert viewer.post("/api/v1/logout", headers={"X-CSRF-Token": csrf}).status_code in (200, 204)
        rest = stream.read_to_end()
        assert time.monotonic() - started < 10, "the stream outlived its session"
        assert '"reason": "ended"' in rest, rest[-500:]

        # another process revokes the session in the database, telling no one: within a recheck
        viewer = _login(stack, app.web_url, VIEWER, VIEWER_PASSWORD)
        stream = _open(stack, viewer)
        with closing(sqlite3.connect(app.data_dir / "events.db", timeout=30)) as db, db:
            db.execute("UPDATE sessions SET revoked_ns = ? WHERE user = ?", (time.time_ns(), VIEWER))
        rest = stream.read_to_end()
        assert '"reason": "revoked"' in rest, rest[-500:]

        # the CLI removes the user (another process, writing the database): within a recheck
        viewer = _login(stack, app.web_url, VIEWER, VIEWER_PASSWORD)
        stream = _open(stack, viewer)
        amoskys("users", "remove", VIEWER, "--data-dir", str(app.data_dir))
        rest = stream.read_to_end()
        # told by the appliance when the CLI reaches it, or found in the store at the next recheck
        assert re.search(r'"reason": "(ended|revoked)"', rest), rest[-500:]
