"""Attack: DNS rebinding. A page on evil.example re-points its name at the appliance, so the victim's
browser sends requests to the web port with ``Host: evil.example``. Only the names and addresses in
`[web] allowed_hosts` (by default the listen address and this machine's own names) are answered."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from support import IN_CI, wait_for

pytestmark = [pytest.mark.e2e]

PATHS = ("/metrics", "/healthz", "/readyz", "/login", "/api/v1/me", "/static/app.css")


def _status(web_url: str, path: str, host: str | None) -> tuple[int, str]:
    headers = {"Host": host} if host is not None else {}
    r = httpx.get(web_url + path, headers=headers, timeout=30)
    return r.status_code, r.text


def _raw(port: int, request: bytes) -> bytes:
    """Send `request` as is (no client adds a Host header) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _refused_count(web_url: str) -> float:
    text = httpx.get(web_url + "/metrics", timeout=30).text
    m = re.search(r'^amoskys_web_requests_refused_total\{reason="host_not_allowed"\} (\S+)$', text, re.M)
    assert m, "no host_not_allowed series on /metrics"
    return float(m.group(1))


def test_a_rebound_name_is_refused_on_every_path(appliance_factory) -> None:
    app = appliance_factory()
    app.wait_ready()
    port = app.info["web"]["port"]
    for path in PATHS:
        code, body = _status(app.web_url, path, "evil.example")
        assert code == 400 and "[web] allowed_hosts" in body, (path, code, body)
        assert _status(app.web_url, path, f"EVIL.example.:{port}")[0] == 400, path
    assert _status(app.web_url, "/api/v1/login", "evil.example")[0] == 400
    r = httpx.post(app.web_url + "/login", headers={"Host": "evil.example"}, data={"name": "a"}, timeout=30)
    assert r.status_code == 400
    # the names the dashboard is really reached by
    for host in (f"127.0.0.1:{port}", "localhost", f"LocalHost.:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert _status(app.web_url, "/metrics", host)[0] == 200, host
        assert _status(app.web_url, "/login", host)[0] == 200, host
    assert _status(app.web_url, "/api/v1/me", "localhost")[0] == 401  # reached the handler: no session
    # HTTP/1.0 without a Host header, and two Host headers
    assert _raw(port, b"GET /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 400")
    two = (
        f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    assert _raw(port, two.encode()).startswith(b"HTTP/1.1 400")
    # counted (the host is never a label) and logged once, not once per request
    assert _refused_count(app.web_url) >= 2 * len(PATHS) + 2
    assert "evil.example" not in httpx.get(app.web_url + "/metrics", timeout=30).text
    logged = wait_for(
        lambda: [e for e in app.log_events() if e.get("event") == "web_host_not_allowed"], what="log"
    )
    assert len(logged) == 1, logged


def _interface_address() -> str:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    message = "no non-loopback IPv4 interface address on this machine (the wildcard default adds them)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def test_a_wildcard_listen_also_answers_this_machines_addresses_and_name(appliance_factory) -> None:
    address = _interface_address()
    app = appliance_factory("--web-listen", "0.0.0.0:0")
    app.wait_ready()
    port = app.info["web"]["port"]
    assert _status(app.web_url, "/healthz", f"{address}:{port}")[0] == 200
    assert _status(f"http://{address}:{port}", "/healthz", None)[0] == 200  # dialled by that address
    assert _status(app.web_url, "/healthz", socket.gethostname())[0] == 200
    assert _status(app.web_url, "/healthz", "localhost")[0] == 200
    assert _status(app.web_url, "/metrics", "evil.example")[0] == 400


def _wait_ready_as(app, host: str) -> None:  # type: ignore[no-untyped-def]
    run_json = app.data_dir / "run.json"

    def ready() -> bool:
        assert app.proc.poll() is None, app.log()
        if not run_json.exists() or json.loads(run_json.read_text()).get("pid") != app.proc.pid:
            return False
        app.info = json.loads(run_json.read_text())
        try:
            return _status(app.web_url, "/readyz", host)[0] == 200
        except httpx.TransportError:
            return False

    wait_for(ready, timeout=30, what=f"amoskys ready as {host}")


def test_configured_names_replace_the_defaults(appliance_factory, tmp_path: Path) -> None:
    cfg = tmp_path / "amoskys.toml"
    cfg.write_text('[web]\nallowed_hosts = ["Dash.Example.net"]\n')
    app = appliance_factory("--config", str(cfg))
    _wait_ready_as(app, "dash.example.net")  # wait_ready asks as 127.0.0.1, which is now refused
    port = app.info["web"]["port"]
    assert _status(app.web_url, "/metrics", f"dash.example.net:{port}")[0] == 200
    assert _status(app.web_url, "/login", "dash.example.net.")[0] == 200
    assert _status(app.web_url, "/metrics", f"127.0.0.1:{port}")[0] == 400
    assert _status(app.web_url, "/metrics", "localhost")[0] == 400


def test_any_host_when_configured_so(appliance_factory, tmp_path: Path) -> None:
    cfg = tmp_path / "amoskys.toml"
    cfg.write_text('[web]\nallowed_hosts = ["*"]\n')
    app = appliance_factory("--config", str(cfg))
    app.wait_ready()
    assert _status(app.web_url, "/metrics", "evil.example")[0] == 200
    assert _raw(app.info["web"]["port"], b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 400")
