"""The NATS connection every fleet component uses: reconnects forever, TLS and credentials from files.

Loading certificates and credentials is file I/O, so it runs in a thread before the client connects;
the client then holds them in memory (nats-py would otherwise read the credentials file on the loop at
every reconnect). Connection state changes are logged once each (lost, back) and passed to
`on_state_change` for whoever needs to act on them (the forwarder reconciles after a reconnect).
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.client import RawCredentials

from amoskys.errors import AmoskysError

log = structlog.get_logger(__name__)

#: nats-py's default pending (reconnect) buffer: publishes made while disconnected wait here.
DEFAULT_PENDING_BYTES = 2 * 1024 * 1024


class NatsConnectError(AmoskysError):
    """The NATS connection cannot be set up (an unreadable TLS or credentials file, a missing
    dependency). `path` names the file when one is at fault."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class ConnectionState(enum.Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    CLOSED = "closed"


StateCallback = Callable[[ConnectionState], None]


def _tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A client TLS context (blocking: reads the files)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
    except (OSError, ssl.SSLError) as err:
        raise NatsConnectError(f"NATS TLS CA file {ca!r}: {err}", path=ca or "") from err
    if cert or key:
        if not (cert and key):
            raise NatsConnectError("NATS TLS: a client certificate needs both cert_file and key_file")
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise NatsConnectError(f"NATS TLS certificate {cert!r} / key {key!r}: {err}", path=cert) from err
    return context


_NKEYS_MISSING = "NATS credentials files need the 'nkeys' package (pip install 'nats-py[nkeys]')"


def _read_credentials(path: str) -> RawCredentials:
    """The credentials file's text, checked as nats-py will read it (blocking: reads the file).

    nats-py takes the line after each BEGIN marker as the JWT and the seed; a file without the JWT
    marker would make it spin on the loop forever, a bad seed would surface as a bare exception from
    the connect."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NatsConnectError(f"NATS credentials file {path!r}: {err}", path=path) from err
    lines = text.split("\n")

    def after(marker: str) -> str:
        for i, line in enumerate(lines[:-1]):
            if marker in line:
                return lines[i + 1]
        raise NatsConnectError(
            f"NATS credentials file {path!r}: no '-----{marker}-----' block (not a .creds file)", path=path
        )

    if after("BEGIN NATS USER JWT").count(".") != 2:
        raise NatsConnectError(f"NATS credentials file {path!r}: the user JWT is not a JWT", path=path)
    try:
        import nkeys  # type: ignore[import-untyped]
    except ImportError as err:
        raise NatsConnectError(_NKEYS_MISSING, path=path) from err
    try:
        prefix, _ = nkeys.decode_seed(after("BEGIN USER NKEY SEED").encode())
    except nkeys.NkeysError as err:
        raise NatsConnectError(f"NATS credentials file {path!r}: the user seed: {err}", path=path) from err
    if prefix != nkeys.PREFIX_BYTE_USER:
        raise NatsConnectError(
            f"NATS credentials file {path!r}: the seed is not a user's NKey seed", path=path
        )
    return RawCredentials(text)


def describe_error(err: BaseException) -> str:
    """A connection error as a short status reason (bounded: no payloads)."""
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text[:200]}"


def _wants_tls(servers: Sequence[str], ca: str | None, cert: str | None) -> bool:
    return bool(ca or cert) or any(s.startswith("tls://") for s in servers)


async def connect(
    servers: Sequence[str] | str,
    *,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    credentials: str | None = None,
    name: str,
    on_state_change: StateCallback | None = None,
    on_error: Callable[[Exception], None] | None = None,
    reconnect_time_wait_seconds: float = 2.0,
    connect_timeout_seconds: float = 2.0,
    ping_interval_seconds: float = 20.0,
    pending_bytes: int = DEFAULT_PENDING_BYTES,
) -> NATS:
    """Connect to `servers` (waiting as long as it takes: a fleet box keeps trying forever) and keep
    reconnecting forever after. `name` labels the connection in the server's monitoring;
    `on_error` hears every error of the connection (a refused login, say), not only the first of a
    streak that the log shows."""
    urls = [servers] if isinstance(servers, str) else list(servers)
    tls: ssl.SSLContext | None = None
    if _wants_tls(urls, tls_ca, tls_cert):
        tls = await asyncio.to_thread(_tls_context, tls_ca, tls_cert, tls_key)
    creds: RawCredentials | None = None
    if credentials:
        if importlib.util.find_spec("nkeys") is None:
            raise NatsConnectError(_NKEYS_MISSING, path=credentials)
        creds = await asyncio.to_thread(_read_credentials, credentials)
    tracker = _StateLog(urls, on_state_change, on_error)
    client = await nats.connect(
        urls,
        name=name,
        tls=tls,
        user_credentials=creds,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=reconnect_time_wait_seconds,
        connect_timeout=connect_timeout_seconds,
        ping_interval=ping_interval_seconds,
        max_outstanding_pings=2,
        pending_size=pending_bytes,
        error_cb=tracker.error,
        disconnected_cb=tracker.disconnected,
        reconnected_cb=tracker.reconnected,
        closed_cb=tracker.closed,
    )
    tracker.connected(client)
    return client


class _StateLog:
    """Logs each state change once (and the first error of a streak), and passes it on."""

    def __init__(
        self,
        servers: list[str],
        callback: StateCallback | None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._servers = servers
        self._callback = callback
        self._on_error = on_error
        self._down = False
        self._error_logged = False
        self._client: NATS | None = None

    def _notify(self, state: ConnectionState) -> None:
        if self._callback is not None:
            self._callback(state)

    def connected(self, client: NATS) -> None:
        self._client = client
        self._error_logged = False
        log.info("nats_connected", server=str(client.connected_url.netloc if client.connected_url else ""))
        self._notify(ConnectionState.CONNECTED)

    async def error(self, err: Exception) -> None:
        if self._on_error is not None:
            self._on_error(err)
        if not self._error_logged:  # once per streak: reconnect attempts fail every few seconds
            self._error_logged = True
            log.warning("nats_error", servers=self._servers, error=repr(err))

    async def disconnected(self) -> None:
        if self._client is None and self._down:
            return  # still trying the first connect
        if not self._down:
            self._down = True
            log.warning("nats_disconnected", servers=self._servers)
        self._notify(ConnectionState.DISCONNECTED)

    async def reconnected(self) -> None:
        self._down = False
        self._error_logged = False
        client = self._client
        url = client.connected_url.netloc if client is not None and client.connected_url else ""
        log.info("nats_reconnected", server=str(url))
        self._notify(ConnectionState.RECONNECTED)

    async def closed(self) -> None:
        self._notify(ConnectionState.CLOSED)
