"""Attack: fill the audit log (and the store) by hammering the login with wrong passwords: every failed or
throttled attempt used to store one audit event. They are now aggregated per account, address and
outcome and minute, with a count that adds up to the attempts (none lost, the last ones at shutdown)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from amoskys.proto import events_pb2
from amoskys.web.login_audit import aggregated_count

from support import amoskys

pytestmark = [pytest.mark.e2e]

HAMMER_SECONDS = 2.0


def _audit(data_dir: Path) -> list[dict]:
    out = amoskys("events", "export", "--kind", "audit", "--data-dir", str(data_dir)).stdout
    return [json.loads(line)["body"] for line in out.splitlines() if line]


def _count(row: dict) -> int:
    return aggregated_count(events_pb2.AuditEvent(detail=row.get("detail", "")))


def test_a_login_flood_from_one_address_stores_a_few_counted_audit_rows(appliance_factory) -> None:
    app = appliance_factory()
    app.wait_ready()
    codes: list[int] = []
    with httpx.Client(base_url=app.web_url, timeout=30) as web:
        deadline = time.monotonic() + HAMMER_SECONDS
        while time.monotonic() < deadline:
            r = web.post("/api/v1/login", json={"name": "admin", "password": "not-the-password"})
            codes.append(r.status_code)
        password = (app.data_dir / "admin-password").read_text().strip()
        last = web.post("/api/v1/login", json={"name": "admin", "password": password}).status_code
    assert last == 429, "the admin's own address is locked out after five failures"
    codes.append(last)
    assert set(codes) <= {401, 429} and len(codes) > 20, codes
    app.signal(signal.SIGTERM)  # the counts still open are audited before the store closes
    assert app.wait_exit(timeout=30) == 0, app.log()

    refused = [
        a
        for a in _audit(app.data_dir)
        if a["action"] in ("login_failed", "login_throttled") and a.get("actor") == "admin"
    ]
    assert {a["remote_addr"] for a in refused} == {"127.0.0.1"}, refused
    assert len(refused) <= 4, f"{len(codes)} attempts stored {len(refused)} audit rows: {refused}"
    by_action = {
        action: sum(_count(a) for a in refused if a["action"] == action)
        for action in ("login_failed", "login_throttled")
    }
    assert by_action["login_failed"] == codes.count(401), (by_action, codes)
    assert by_action["login_throttled"] == codes.count(429), (by_action, codes)
