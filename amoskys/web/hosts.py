"""The Host header check for the whole web port (`[web] allowed_hosts`): one ASGI middleware.

A DNS rebinding page makes a victim's browser send requests to the web port under the attacker's own
name (``Host: evil.example``); answering only the names and addresses the dashboard is really reached
by refuses them. Only the host part of the header counts (the port is stripped, ``[::1]:8080`` is
understood, case and a trailing dot do not matter). A request without a Host header, with several, or
with a host not allowed is answered ``400`` before any handler runs, with a plain-text body naming the
setting; each refusal is counted (never labelled with the host, which the client chooses) and logged at
most once a minute.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable

import psutil
import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from amoskys.config import is_wildcard_host

log = structlog.get_logger(__name__)

ANY = "*"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
LOG_EVERY_S = 60.0
_BODY = (
    b"400 Bad Request: this host name is not one the dashboard answers to; "
    b"add it to [web] allowed_hosts in amoskys.toml\n"
)


def normalize(host: str) -> str:
    """The form hosts are compared in: lower case, no trailing dot, no IPv6 brackets, addresses in
    their canonical text (``0:0::1`` is ``::1``); IPv6 zone ids (``%eth0``) are dropped."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0] if ":" in host else host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def host_part(header: str) -> str | None:
    """The host of a Host header value, normalized; None when the value is malformed (an empty host,
    a port that is not a number, an unclosed IPv6 bracket)."""
    value = header.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
    elif value.count(":") > 1:  # a bare IPv6 address (not valid HTTP, but unambiguous)
        host = value
    else:
        host, sep, port = value.partition(":")
        if sep and not port.isdigit():
            return None
    host = normalize(host)
    return host or None


def default_hosts(
    listen_host: str,
    *,
    tls_names: Iterable[str] = (),
    hostname: Callable[[], str] = socket.gethostname,
    interface_addresses: Callable[[], Iterable[str]] | None = None,
) -> frozenset[str]:
    """What an empty `[web] allowed_hosts` means: the listen host when it is a specific address, plus
    localhost, 127.0.0.1 and ::1, plus `tls_names` (the certificate's names when the web port speaks
    TLS); with a wildcard listen also this machine's host name (and its short form when the name has
    dots; the FQDN is not looked up: that could wait on DNS at start-up) and every interface address.
    Reads the interfaces once: call it before the loop serves, or in a thread."""
    hosts = {normalize(h) for h in (*LOCAL_NAMES, *tls_names)}
    if not is_wildcard_host(listen_host):
        hosts.add(normalize(listen_host))
    else:
        name = normalize(hostname())
        if name:
            hosts.update({name, name.split(".", 1)[0]})
        hosts.update(normalize(a) for a in (interface_addresses or _interface_addresses)())
    return frozenset(hosts)


def _interface_addresses() -> list[str]:
    families = (socket.AF_INET, socket.AF_INET6)
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family in families]


def resolve(configured: Iterable[str], defaults: Callable[[], frozenset[str]]) -> frozenset[str] | None:
    """The hosts allowed: `configured` when not empty (it replaces the defaults), else `defaults()`;
    None when any host is allowed (``"*"``)."""
    configured = tuple(configured)
    if ANY in configured:
        return None
    if configured:
        return frozenset(normalize(h) for h in configured)
    return defaults()


class AllowedHosts:
    """Answer 400 to a request whose Host header is missing, repeated or not in `allowed` (None: any
    host; the check still refuses a request without a Host header)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed: frozenset[str] | None,
        on_refused: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.allowed = allowed
        self._on_refused = on_refused
        self._clock = clock
        self._next_log = float("-inf")
        self._unlogged = 0

    def allows(self, scope: Scope) -> bool:
        values = [v for k, v in scope["headers"] if k == b"host"]
        if len(values) != 1:
            return False
        host = host_part(values[0].decode("latin-1"))
        return host is not None and (self.allowed is None or host in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allows(scope):  # no websockets on this port (ws="none")
            await self.app(scope, receive, send)
            return
        self._refused(scope)
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(_BODY)).encode()),
                    (b"connection", b"close"),  # any body sent is never read
                ],
            }
        )
        await send({"type": "http.response.body", "body": _BODY})

    def _refused(self, scope: Scope) -> None:
        if self._on_refused is not None:
            self._on_refused()
        self._unlogged += 1
        now = self._clock()
        if now < self._next_log:
            return
        self._next_log = now + LOG_EVERY_S
        host = next((v for k, v in scope["headers"] if k == b"host"), b"")
        log.warning(
            "web_host_not_allowed",
            host=host[:100].decode("latin-1"),  # the client's choice: capped, never a metric label
            refused=self._unlogged,
            fix="add the name the dashboard is reached by to [web] allowed_hosts",
        )
        self._unlogged = 0
