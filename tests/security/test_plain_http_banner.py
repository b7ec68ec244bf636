"""Attack: with [web] listen off loopback and tls = "off", passwords and session cookies cross the
LAN in clear without a word. The appliance must say so: one warning line at start naming
`[web] tls = "on"`, and a banner on every dashboard page naming the same fix. On loopback, neither."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.e2e]

FIX = 'tls = "on"'


def _warnings(app) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e for e in app.log_events() if e.get("event") == "web_plain_http_off_loopback"]


def test_plain_http_on_a_wildcard_listen_warns_in_the_log_and_on_every_page(appliance_factory) -> None:
    app = appliance_factory("--web-listen", "0.0.0.0:0")
    app.wait_ready(timeout=60)
    page = httpx.get(app.web_url + "/login", timeout=30, follow_redirects=True)
    assert page.status_code == 200
    assert 'id="plain-http-warning"' in page.text
    assert "tls = &#34;on&#34;" in page.text or FIX in page.text
    warned = _warnings(app)
    assert len(warned) == 1, app.log()
    assert FIX in warned[0]["fix"]


def test_plain_http_on_loopback_shows_neither(appliance_factory) -> None:
    app = appliance_factory()
    app.wait_ready(timeout=60)
    page = httpx.get(app.web_url + "/login", timeout=30, follow_redirects=True)
    assert page.status_code == 200
    assert 'id="plain-http-warning"' not in page.text
    assert _warnings(app) == []
