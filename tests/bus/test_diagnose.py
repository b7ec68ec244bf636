"""One TLS handshake says why a publisher cannot reach a bus: against real TLS servers on free ports
(the bus's own certificates, from amoskys.pki), each failure is named in one line."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from amoskys.bus.diagnose import Diagnosis, diagnose, name_matches, split_address
from amoskys.pki.enrolment import enroll_agent
from amoskys.pki.issuance import ensure_appliance_pki
from amoskys.pki.layout import ApplianceCredentials

from support import free_port

SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _pki(root: Path) -> ApplianceCredentials:
    return ensure_appliance_pki(
        root, name="edge", trust_domain="amoskys.local", dns_names=["localhost"], ip_addresses=[]
    )


def _bundle(creds: ApplianceCredentials, out: Path) -> Path:
    enroll_agent(
        creds, name="lg-1", role="loadgen", trust_domain="amoskys.local", bus_address="", out_dir=out
    )
    return out


@pytest.fixture
def appliance(tmp_path: Path) -> tuple[ApplianceCredentials, Path]:
    creds = _pki(tmp_path / "pki")
    return creds, _bundle(creds, tmp_path / "bundle")


@pytest.fixture
def foreign_bundle(tmp_path: Path) -> Path:
    """A bundle of another appliance (another CA)."""
    return _bundle(_pki(tmp_path / "other-pki"), tmp_path / "other-bundle")


async def _h2_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        if await reader.read(64):
            writer.write(SETTINGS)
            await writer.drain()
            await reader.read(64)
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def _server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _bus_tls(creds: ApplianceCredentials) -> ssl.SSLContext:
    """What the bus requires: its server certificate, client certificates of its CA, ALPN h2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(creds.server_cert, creds.server_key)
    ctx.load_verify_locations(creds.ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def _diagnose(address: str, bundle: Path, ca: Path | None = None, **kw) -> Diagnosis:  # type: ignore[no-untyped-def]
    return await diagnose(
        address,
        ca_pem=(ca or bundle / "ca.crt").read_bytes(),
        cert_file=bundle / "client.crt",
        key_file=bundle / "client.key",
        **kw,
    )


def test_addresses_split_like_grpc_targets() -> None:
    assert split_address("localhost:50051") == ("localhost", 50051)
    assert split_address("[::1]:7") == ("::1", 7)
    assert split_address("dns:///bus.example:443") == ("bus.example", 443)
    assert split_address("ipv4:127.0.0.1:9") == ("127.0.0.1", 9)
    for bad in ("localhost", "::1:5", "host:0", "host:x", "[::1]5"):
        with pytest.raises(ValueError):
            split_address(bad)


def test_names_match_sans_as_grpc_checks_them() -> None:
    sans = [
        ("DNS", "bus.example"),
        ("DNS", "*.edge.example"),
        ("IP Address", "127.0.0.1"),
        ("IP Address", "::1"),
    ]
    assert name_matches("BUS.example", sans) and name_matches("a.edge.example", sans)
    assert not name_matches("a.b.edge.example", sans) and not name_matches("edge.example", sans)
    assert name_matches("127.0.0.1", sans) and name_matches("0:0::1", sans)
    assert not name_matches("127.0.0.2", sans) and not name_matches("localhost", sans)


async def test_a_good_bundle_completes_the_handshake(
    appliance: tuple[ApplianceCredentials, Path],
) -> None:
    creds, bundle = appliance
    async with _server(_h2_like, _bus_tls(creds)) as port:
        found = await _diagnose(f"127.0.0.1:{port}", bundle, server_name="localhost")
    assert found.ok and found.reason == "handshake_ok", found


async def test_an_address_not_in_the_certificate_is_named_with_the_names_it_carries(
    appliance: tuple[ApplianceCredentials, Path],
) -> None:
    creds, bundle = appliance
    async with _server(_h2_like, _bus_tls(creds)) as port:
        dialled = await _diagnose(f"127.0.0.1:{port}", bundle)
        overridden = await _diagnose(f"127.0.0.1:{port}", bundle, server_name="bus.example")
    assert dialled.reason == "name_mismatch"
    assert dialled.message == (
        f"bus 127.0.0.1:{port}: TLS name '127.0.0.1' (dialled) is not in the bus certificate "
        "(its names: localhost); dial one of those or pass --server-name NAME"
    )
    assert overridden.reason == "name_mismatch" and "'bus.example' (--server-name)" in overridden.message


async def test_a_bundle_of_another_ca_does_not_trust_the_bus(
    appliance: tuple[ApplianceCredentials, Path], foreign_bundle: Path
) -> None:
    creds, _ = appliance
    async with _server(_h2_like, _bus_tls(creds)) as port:
        found = await _diagnose(f"127.0.0.1:{port}", foreign_bundle, server_name="localhost")
    assert found.reason == "unknown_ca", found
    assert found.message.startswith(f"bus 127.0.0.1:{port}: its certificate is not signed by the bundle's CA")


async def test_a_client_certificate_the_bus_does_not_accept_is_named(
    appliance: tuple[ApplianceCredentials, Path], foreign_bundle: Path
) -> None:
    """The bundle trusts the bus (right CA file) but its client certificate is another CA's."""
    creds, _ = appliance
    async with _server(_h2_like, _bus_tls(creds)) as port:
        found = await _diagnose(
            f"127.0.0.1:{port}", foreign_bundle, ca=creds.ca_cert, server_name="localhost"
        )
    assert found.reason == "client_cert_rejected", found
    assert "rejected this bundle's client certificate" in found.message


async def test_a_closed_port_is_refused(appliance: tuple[ApplianceCredentials, Path]) -> None:
    _, bundle = appliance
    port = free_port()
    found = await _diagnose(f"127.0.0.1:{port}", bundle)
    assert found.reason == "refused"
    assert found.message.startswith(f"bus 127.0.0.1:{port}: connection refused")


async def test_a_peer_that_never_answers_the_handshake_times_out(
    appliance: tuple[ApplianceCredentials, Path],
) -> None:
    _, bundle = appliance
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, say nothing

    async with _server(silent) as port:
        t0 = time.monotonic()
        found = await _diagnose(f"127.0.0.1:{port}", bundle, timeout_seconds=0.5)
        elapsed = time.monotonic() - t0
        for w in held:
            w.close()
    assert found.reason == "timeout" and "connected, but no TLS answer within 0.5 s" in found.message
    assert elapsed < 5


async def test_a_port_that_does_not_speak_tls_is_a_tls_error(
    appliance: tuple[ApplianceCredentials, Path],
) -> None:
    _, bundle = appliance

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(64)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with _server(http) as port:
        found = await _diagnose(f"127.0.0.1:{port}", bundle)
    assert found.reason == "tls_error", found
    assert "\n" not in found.message


async def test_an_unparsable_address_is_named(appliance: tuple[ApplianceCredentials, Path]) -> None:
    _, bundle = appliance
    found = await _diagnose("no-port-here", bundle)
    assert found.reason == "bad_address" and "HOST:PORT" in found.message
