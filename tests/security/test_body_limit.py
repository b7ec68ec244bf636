"""Attack: a huge request body (declared with Content-Length, or streamed chunked without one) to the
login endpoint used to be read whole, parsed, and its "password" scrypt-hashed. It must be refused
with 413 before it is read, keeping the appliance's memory bounded; over-long login fields must be
refused before any hashing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import RunningAppliance

pytestmark = [pytest.mark.e2e]

ATTACK_BYTES = 256 * 2**20  # far above every limit; read whole, it grows the process by gigabytes
PIECE = 2**20
HWM_GROWTH_LIMIT_KIB = 64 * 1024  # what the attacks together may add to the appliance's peak RSS


def _vm_kib(pid: int, field: str) -> int:
    """A memory figure of a process from /proc/<pid>/status, in KiB (VmRSS now, VmHWM its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def _metric(app: RunningAppliance, name: str) -> float | None:
    text = httpx.get(app.web_url + "/metrics", timeout=30).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def _login_body_pieces() -> Iterator[bytes]:
    """A JSON login body of exactly ATTACK_BYTES whose password is almost all of it."""
    head, tail = b'{"name": "admin", "password": "', b'"}'
    left = ATTACK_BYTES - len(head) - len(tail)
    yield head
    while left > 0:
        n = min(PIECE, left)
        yield b"A" * n
        left -= n
    yield tail


def _post_huge(web_url: str, path: str, *, chunked: bool) -> tuple[int, float, int]:
    """POST a huge login body: (status, seconds until the answer, body bytes the appliance let us send
    before it hung up). A blocking client: it still reads the answer after the server hung up on its
    upload, as curl and browsers do (an asyncio transport drops it with the connection)."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for piece in _login_body_pieces():
            yield piece
            sent += len(piece)

    headers = {"Content-Type": "application/json"}
    if not chunked:
        headers["Content-Length"] = str(ATTACK_BYTES)  # declared up front, then streamed
    with httpx.Client(base_url=web_url, timeout=300) as client:
        t0 = time.monotonic()
        r = client.post(path, content=body(), headers=headers)
        took = time.monotonic() - t0
    assert ("content-length" in r.request.headers) != chunked
    return r.status_code, took, sent


def _admin_login(app: RunningAppliance) -> int:
    password = (app.data_dir / "admin-password").read_text().strip()
    with httpx.Client(base_url=app.web_url, timeout=60) as web:
        return web.post("/api/v1/login", json={"name": "admin", "password": password}).status_code


def test_huge_login_bodies_get_413_before_they_are_read_and_memory_stays_bounded(appliance_factory) -> None:
    app = appliance_factory()
    app.wait_ready()
    assert _admin_login(app) == 200  # warm: the first login, hashing
    pid = app.proc.pid
    peak_before = _vm_kib(pid, "VmHWM")

    for chunked in (False, True):
        status, took, sent = _post_huge(app.web_url, "/api/v1/login", chunked=chunked)
        how = "chunked, no Content-Length" if chunked else "with Content-Length"
        assert status == 413, f"a {ATTACK_BYTES} byte body ({how}) got {status}, not 413"
        assert took < 5.0, f"413 for a body {how} took {took:.1f} s: was it read first?"
        assert sent < ATTACK_BYTES // 2, f"the appliance kept reading after refusing ({sent} bytes, {how})"

    # the login endpoints take 8 KiB (form and JSON); the rest of the API 1 MiB
    with httpx.Client(base_url=app.web_url, timeout=60) as web:
        form = {"name": "admin", "password": "p" * 9000}
        assert web.post("/login", data=form).status_code == 413
        assert web.post("/api/v1/login", json=form).status_code == 413
        assert web.post("/api/v1/tokens", content=b"{}" + b" " * 2**21).status_code == 413
        assert web.post("/api/v1/tokens", content=b"{}" + b" " * 2**16).status_code == 401  # not logged in

    growth = _vm_kib(pid, "VmHWM") - peak_before
    assert growth < HWM_GROWTH_LIMIT_KIB, f"peak RSS grew by {growth} KiB under the attack"
    assert _admin_login(app) == 200


def test_over_long_login_fields_are_refused_with_400_and_never_hashed(appliance_factory) -> None:
    app = appliance_factory()
    app.wait_ready()
    checks_before = _metric(app, "amoskys_web_password_checks_total")
    with httpx.Client(base_url=app.web_url, timeout=60) as web:
        r = web.post("/api/v1/login", json={"name": "admin", "password": "p" * 5000})
        assert r.status_code == 400, (r.status_code, r.text)
        assert "password" in r.json()["error"] and "1024" in r.json()["error"], r.text
        r = web.post("/api/v1/login", json={"name": "a" * 300, "password": "p"})
        assert r.status_code == 400 and "name" in r.json()["error"], (r.status_code, r.text)
        r = web.post("/login", data={"name": "admin", "password": "p" * 5000})  # the HTML form
        assert r.status_code == 400 and "1024" in r.text, (r.status_code, r.text[:300])
    assert checks_before is not None, "the appliance exports no amoskys_web_password_checks_total"
    assert _metric(app, "amoskys_web_password_checks_total") == checks_before, "an over-long field was hashed"
    assert _admin_login(app) == 200
    assert _metric(app, "amoskys_web_password_checks_total") == checks_before + 1
