"""Checks of the services this box talks to: NATS (the fleet forwarder and the hub's source) and an
upstream bus (the agent's or a relay's forwarder)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import nats as nats_client
from nats.errors import Error as NatsError

from amoskys.config import parse_listen
from amoskys.doctor.findings import Finding
from amoskys.nats.connection import NatsConnectError, _read_credentials, _tls_context, _wants_tls

#: What a failed connection or a silent server raises.
_UNREACHABLE = (OSError, TimeoutError, NatsError)

#: How long a connection to a NATS server or an upstream bus may take.
CONNECT_TIMEOUT_SECONDS = 3.0


def nats_server(subject: str, section: Any) -> Finding:
    """Connect to the servers of a `[forwarders.nats]` or `[sources.nats]` section as the appliance
    would (TLS and credentials from its files) and ask JetStream for its account."""
    try:
        return asyncio.run(_nats(subject, section))
    except _UNREACHABLE as err:
        return _nats_unreachable(subject, section, err)


async def _nats(subject: str, section: Any) -> Finding:
    servers = list(section.servers)
    try:
        tls = (
            _tls_context(section.tls_ca or None, section.tls_cert or None, section.tls_key or None)
            if _wants_tls(servers, section.tls_ca, section.tls_cert)
            else None
        )
        creds = _read_credentials(section.credentials) if section.credentials else None
    except NatsConnectError as err:
        return Finding(subject, "fail", str(err), f"fix the file named in [{_table(subject)}]")

    async def quiet(err: Exception) -> None:
        return None

    async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS * 2):
        client = await nats_client.connect(
            servers,
            name="amoskys-doctor",
            tls=tls,
            user_credentials=creds,
            allow_reconnect=False,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
        try:
            js = client.jetstream()
            try:
                await js.account_info()
            except _UNREACHABLE as err:
                return Finding(
                    subject,
                    "fail",
                    f"connected to {client.connected_url.netloc if client.connected_url else servers}, but "
                    f"JetStream does not answer: {err!r}",
                    "enable JetStream on the server (nats-server -js, or a jetstream {} block)",
                )
            where = client.connected_url.netloc if client.connected_url else ",".join(servers)
            return Finding(subject, "ok", f"{where} reachable, JetStream answers")
        finally:
            await client.close()


def _nats_unreachable(subject: str, section: Any, err: BaseException) -> Finding:
    what = type(err).__name__ if not str(err) else f"{type(err).__name__}: {err}"
    return Finding(
        subject,
        "fail",
        f"cannot reach NATS at {', '.join(section.servers)}: {what}",
        f"start the NATS server or fix servers in [{_table(subject)}] (and the firewall between)",
    )


def _table(subject: str) -> str:
    return "forwarders.nats" if subject.startswith("forwarder") else "sources.nats"


def tcp(subject: str, address: str, setting: str) -> Finding:
    """A TCP connection to HOST:PORT (an upstream bus) opens."""
    host, port = parse_listen(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS):
            pass
    except OSError as err:
        return Finding(
            subject,
            "fail",
            f"cannot connect to {address}: {err.strerror or err}",
            f"start the appliance there, or fix {setting} (and the firewall between)",
        )
    return Finding(subject, "ok", f"{address} accepts connections")
