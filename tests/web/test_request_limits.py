"""Request body limits (amoskys/web/body_limit.py): refused with 413 before or while the body is read,
once for every route; 8 KiB on the login endpoints, `[web] max_body_bytes` elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from amoskys.config import WebConfig, from_mapping
from amoskys.errors import ConfigError
from amoskys.web.body_limit import BodyLimit

from web_harness import Web


class Echo:
    """An ASGI app that reads the whole body and says how long it was (and counts its calls)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = await Request(scope, receive).body()
        await JSONResponse({"length": len(body)})(scope, receive, send)


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")  # type: ignore[arg-type]


class Pieces:
    """A streamed body (sent chunked, without Content-Length) that counts the pieces taken from it."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size, self.taken = count, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.taken += 1
            yield b"x" * self.size


async def test_a_declared_length_over_the_limit_is_refused_without_calling_the_app() -> None:
    echo = Echo()
    refused: list[int] = []
    app = BodyLimit(echo, default=1000, limits={"/small": 10}, on_refused=lambda: refused.append(1))
    async with _client(app) as c:
        r = await c.post("/anything", content=b"x" * 1001)
        assert r.status_code == 413 and r.json() == {"error": "request body too large (limit 1000 bytes)"}
        assert r.headers["connection"] == "close"
        assert echo.calls == 0 and refused == [1]
        assert (await c.post("/anything", content=b"x" * 1000)).json() == {"length": 1000}
        assert (await c.post("/small", content=b"x" * 11)).status_code == 413
        assert (await c.post("/small", content=b"x" * 10)).status_code == 200


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    app = BodyLimit(Echo(), default=10_000)
    body = Pieces(count=1000, size=1000)  # 1 MB, no Content-Length
    async with _client(app) as c:
        r = await c.post("/upload", content=body)
        assert "content-length" not in r.request.headers
        assert r.status_code == 413
        assert body.taken <= 11, f"{body.taken} pieces read after the limit of 10 was passed"
        small = Pieces(count=10, size=1000)
        assert (await c.post("/upload", content=small)).json() == {"length": 10_000}


def test_max_body_bytes_is_checked_at_load() -> None:
    assert WebConfig().max_body_bytes == 1024 * 1024
    assert from_mapping({"web": {"max_body_bytes": 65536}}).web.max_body_bytes == 65536
    with pytest.raises(ConfigError, match=r"web\.max_body_bytes.*>= 8192"):
        from_mapping({"web": {"max_body_bytes": 100}})


async def test_login_bodies_over_8_kib_get_413_on_both_login_endpoints(web: Web) -> None:
    c = web.client()
    big = {"name": "admin", "password": "p" * 9000}
    r = await c.post("/api/v1/login", json=big)
    assert r.status_code == 413 and r.json()["error"] == "request body too large (limit 8192 bytes)"
    assert (await c.post("/login", data=big)).status_code == 413
    streamed = Pieces(count=64, size=1024)
    r = await c.post("/api/v1/login", content=streamed, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and streamed.taken <= 9
    refused = web.ctx.metrics.registry.get_sample_value(
        "amoskys_web_requests_refused_total", {"reason": "body_too_large"}
    )
    assert refused == 3
    # other routes take up to [web] max_body_bytes (1 MiB by default)
    assert (await c.post("/api/v1/tokens", content=b"{}" + b" " * 2**16)).status_code == 401
    assert (await c.post("/api/v1/tokens", content=b"{}" + b" " * 2**20)).status_code == 413
    ok = await c.post("/api/v1/login", json={"name": "admin", "password": web.admin_password})
    assert ok.status_code == 200
