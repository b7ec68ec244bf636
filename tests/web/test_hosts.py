"""The Host header check (`[web] allowed_hosts`): parsing, the defaults, and the middleware."""

from __future__ import annotations

import httpx
import pytest
import structlog
from starlette.types import Receive, Scope, Send

from amoskys.web.hosts import AllowedHosts, default_hosts, host_part, normalize, resolve


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("example.com", "example.com"),
        ("Example.COM:8080", "example.com"),
        ("example.com.", "example.com"),
        ("example.com.:443", "example.com"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]:80", "::1"),
        ("[FE80::1%25eth0]:80", "fe80::1"),
        ("::1", "::1"),
        ("", None),
        (":8080", None),
        ("example.com:http", None),
        ("[::1:8080", None),
        ("[::1]x", None),
        ("[::1]:", None),
    ],
)
def test_host_part(header: str, host: str | None) -> None:
    assert host_part(header) == host


def test_defaults_for_a_specific_listen_address() -> None:
    hosts = default_hosts("192.0.2.5", hostname=lambda: "box", interface_addresses=lambda: ["198.51.100.1"])
    assert hosts == {"192.0.2.5", "localhost", "127.0.0.1", "::1"}


def test_defaults_for_a_wildcard_listen_add_the_host_name_and_every_interface_address() -> None:
    hosts = default_hosts(
        "0.0.0.0",
        hostname=lambda: "Box.Lan.example",
        interface_addresses=lambda: ["198.51.100.1", "FE80::1%eth0", "2001:db8::0:7"],
    )
    assert hosts == {
        "localhost",
        "127.0.0.1",
        "::1",
        "box.lan.example",
        "box",
        "198.51.100.1",
        "fe80::1",
        "2001:db8::7",
    }
    assert "0.0.0.0" not in default_hosts("::", hostname=lambda: "box", interface_addresses=list)


def test_defaults_read_the_real_interfaces() -> None:
    hosts = default_hosts("0.0.0.0")
    assert "127.0.0.1" in hosts and normalize(__import__("socket").gethostname()) in hosts


def test_tls_names_are_added() -> None:
    assert "dash.lan" in default_hosts("127.0.0.1", tls_names=["Dash.Lan", "10.0.0.1"])


def test_a_configured_list_replaces_the_defaults_and_star_allows_any() -> None:
    def never() -> frozenset[str]:
        raise AssertionError("defaults read although a list is configured")

    assert resolve(["Dash.Example.", "[::1]"], never) == {"dash.example", "::1"}
    assert resolve(["dash.example", "*"], never) is None
    assert resolve([], lambda: frozenset({"localhost"})) == {"localhost"}


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _client(app: AllowedHosts) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


async def test_the_middleware_refuses_other_hosts_with_a_400_naming_the_setting() -> None:
    refused: list[int] = []
    now = [0.0]
    app = AllowedHosts(
        _ok,
        allowed=frozenset({"localhost", "::1"}),
        on_refused=lambda: refused.append(1),
        clock=lambda: now[0],
    )
    with structlog.testing.capture_logs() as logs:
        async with _client(app) as c:
            assert (await c.get("/metrics")).status_code == 200
            assert (await c.get("/metrics", headers={"Host": "[::1]:9"})).status_code == 200
            r = await c.get("/metrics", headers={"Host": "evil.example"})
            assert r.status_code == 400 and "[web] allowed_hosts" in r.text
            assert r.headers["content-type"].startswith("text/plain")
            for _ in range(5):
                assert (await c.post("/login", headers={"Host": "evil.example:80"})).status_code == 400
            now[0] = 61.0
            assert (await c.get("/", headers={"Host": "other.example"})).status_code == 400
    assert len(refused) == 7
    warnings = [e for e in logs if e["event"] == "web_host_not_allowed"]
    assert [(w["host"], w["refused"]) for w in warnings] == [("evil.example", 1), ("other.example", 6)]


async def test_a_missing_or_repeated_host_header_is_refused_even_when_any_host_is_allowed() -> None:
    app = AllowedHosts(_ok, allowed=None)
    sent: list[dict] = []

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    async def receive() -> dict:  # type: ignore[type-arg]
        return {"type": "http.request", "body": b""}

    base = {"type": "http", "method": "GET", "path": "/", "query_string": b""}
    for headers in ([], [(b"host", b"a"), (b"host", b"b")]):
        sent.clear()
        await app({**base, "headers": headers}, receive, send)  # type: ignore[arg-type]
        assert sent[0]["status"] == 400
    sent.clear()
    await app({**base, "headers": [(b"host", b"anything.example")]}, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 200
