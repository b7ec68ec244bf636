"""Attack: a local client sends `X-Forwarded-For` to pick the address the login throttle and the audit
log see. Proxy headers are ignored unless `[web] trusted_proxies` names the peer that sends them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from amoskys.web.auth import ADDR_MAX_FAILURES

from support import amoskys

pytestmark = [pytest.mark.e2e]


def _login(web_url: str, name: str, forwarded_for: str) -> int:
    """One failed login (a wrong password) through the JSON API; the HTTP status."""
    req = urllib.request.Request(
        web_url + "/api/v1/login",
        data=json.dumps({"name": name, "password": "not-the-password"}).encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def _audit(data_dir: Path) -> list[dict]:
    out = amoskys("events", "export", "--kind", "audit", "--data-dir", str(data_dir)).stdout
    return [json.loads(line)["body"] for line in out.splitlines() if line]


def test_spoofed_forwarded_for_neither_escapes_the_login_throttle_nor_reaches_the_audit_log(
    appliance_factory,
) -> None:
    app = appliance_factory()
    app.wait_ready()
    # a new address and a new account name each time: only the per-address throttle can stop it
    codes = [_login(app.web_url, f"guess-{i}", f"198.51.100.{i + 1}") for i in range(ADDR_MAX_FAILURES + 3)]
    assert codes[:ADDR_MAX_FAILURES] == [401] * ADDR_MAX_FAILURES, codes
    assert codes[ADDR_MAX_FAILURES:] == [429] * 3, f"spoofed addresses escaped the throttle: {codes}"

    audit = _audit(app.data_dir)
    failed = [a for a in audit if a["action"] in ("login_failed", "login_throttled")]
    assert len(failed) == ADDR_MAX_FAILURES + 3, audit
    assert {a["remote_addr"] for a in failed} == {"127.0.0.1"}, failed


def test_forwarded_for_is_honoured_from_a_trusted_proxy(appliance_factory, tmp_path: Path) -> None:
    cfg = tmp_path / "amoskys.toml"
    cfg.write_text('[web]\ntrusted_proxies = ["127.0.0.1"]\n')
    app = appliance_factory("--config", str(cfg))
    app.wait_ready()
    # the proxy (127.0.0.1) says who the client is: the throttle and the audit log use that address
    codes = [_login(app.web_url, f"guess-{i}", "203.0.113.7") for i in range(ADDR_MAX_FAILURES + 1)]
    assert codes[-1] == 429, codes
    assert _login(app.web_url, "another", "203.0.113.8") == 401  # another client behind the proxy

    audit = _audit(app.data_dir)
    addrs = {a["remote_addr"] for a in audit if a["action"] in ("login_failed", "login_throttled")}
    assert addrs == {"203.0.113.7", "203.0.113.8"}, audit
