"""uvicorn's Server inside the appliance's loop, on a socket we bind, with our own signal handling.

Proxy headers (X-Forwarded-For, X-Forwarded-Proto) are ignored unless the peer is one of
`trusted_proxies` (``[web] trusted_proxies``): otherwise any client could pick the address the login
throttle and the audit log see. uvicorn trusts 127.0.0.1 (or $FORWARDED_ALLOW_IPS) by default; we never
let it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator, Sequence
from pathlib import Path

import uvicorn
from starlette.applications import Starlette


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.started_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The appliance owns SIGINT/SIGTERM; uvicorn must not install its own handlers.
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket now, so the chosen port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class WebServer:
    """Serves a Starlette app on one bound socket until stop()."""

    def __init__(
        self,
        app: Starlette,
        sock: socket.socket,
        *,
        graceful_seconds: float = 2.0,
        tls: tuple[Path, Path] | None = None,
        limit_concurrency: int | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        """`limit_concurrency`: connections served at once (more are answered 503); `trusted_proxies`:
        addresses and networks whose X-Forwarded-For / X-Forwarded-Proto are believed."""
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            ws="none",  # no websockets: live views use Server-Sent Events
            log_config=None,
            access_log=False,
            server_header=False,
            # uvicorn annotates it int but only hands it to asyncio.timeout(), which takes a float
            timeout_graceful_shutdown=graceful_seconds,  # type: ignore[arg-type]
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
            limit_concurrency=limit_concurrency,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies),  # never None: uvicorn would read the environment
        )
        self._server = _Server(config)

    async def wait_started(self) -> None:
        """Return once uvicorn has started serving on the socket."""
        await self._server.started_event.wait()

    async def serve(self) -> None:
        await self._server.serve(sockets=[self.sock])

    def stop(self) -> None:
        self._server.should_exit = True
