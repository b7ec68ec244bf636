"""Why a publisher cannot reach a bus, in one line: one TLS handshake with the bundle's certificates.

gRPC reports every failed connection as UNAVAILABLE and keeps its reasons in the C core, so a
publisher that must not wait forever (`amoskys loadgen --connect-timeout`) asks `diagnose()` instead:
it dials the bus with Python's ``ssl`` the way gRPC would (the bundle's CA, its client certificate and
key, ALPN ``h2``, the same TLS name) and names the first thing that fails — the name does not resolve,
the connection is refused or never answered, the bus certificate is not from the bundle's CA or does
not carry the name dialled (listing the names it does carry), or the bus rejects the client
certificate. Nothing is sent beyond the HTTP/2 preface, so the bus never sees a call.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

#: The HTTP/2 client preface and an empty SETTINGS frame: the bus answers with its own SETTINGS once
#: it accepted the client certificate (TLS 1.3 reports a rejected one only after the handshake).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

#: OpenSSL verify codes that mean "this certificate does not chain to the CA we trust".
_UNKNOWN_CA_CODES = frozenset({2, 18, 19, 20, 21})
_EXPIRED_CODE = 10
#: TLS alerts a server sends when it refuses the client's certificate.
_CLIENT_CERT_ALERTS = (
    "ALERT_UNKNOWN_CA",
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_CERTIFICATE_REVOKED",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_UNSUPPORTED_CERTIFICATE",
    "ALERT_ACCESS_DENIED",
    "ALERT_DECRYPT_ERROR",
)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What one handshake found. `reason` is one of REASONS; `message` is one line for the operator,
    naming the address (and the TLS name, the certificate's names or the TLS alert when they matter)."""

    reason: str
    message: str

    @property
    def ok(self) -> bool:
        return self.reason == "handshake_ok"


REASONS = (
    "bad_address",
    "unresolved",
    "refused",
    "unreachable",
    "timeout",
    "unknown_ca",
    "server_cert_expired",
    "server_cert_invalid",
    "name_mismatch",
    "client_cert_rejected",
    "tls_error",
    "handshake_ok",
)


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (gRPC's ``dns:`` / ``ipv4:`` / ``ipv6:`` prefixes allowed) →
    (host, port); ValueError when it is neither."""
    target = address
    for prefix in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(prefix):
            target = target[len(prefix) :]
            break
    if target.startswith("["):
        host, sep, rest = target[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [ADDRESS]:PORT, got {address!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = target.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"expected HOST:PORT, got {address!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port of {address!r} must be 1..65535")
    return host, int(port_text)


def name_matches(name: str, sans: list[tuple[str, str]]) -> bool:
    """Whether TLS name `name` (a DNS name or an IP address) is one of the certificate's SANs, as
    gRPC checks it: an address against the IP SANs, a DNS name against the DNS SANs (case-insensitive,
    a ``*.`` wildcard covers exactly one left-most label)."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        for kind, value in sans:
            if kind == "IP Address":
                try:
                    if ipaddress.ip_address(value.strip()) == ip:
                        return True
                except ValueError:
                    continue
        return False
    wanted = name.rstrip(".").lower()
    for kind, value in sans:
        if kind != "DNS":
            continue
        pattern = value.rstrip(".").lower()
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            if wanted.split(".", 1)[1] == pattern[2:] and wanted.split(".", 1)[0]:
                return True
    return False


def _san_list(sans: list[tuple[str, str]]) -> str:
    names = []
    for kind, value in sans:
        if kind == "DNS":
            names.append(value.strip())
        elif kind == "IP Address":
            try:
                names.append(str(ipaddress.ip_address(value.strip())))  # ::1, not 0:0:0:0:0:0:0:1
            except ValueError:
                names.append(value.strip())
    return ", ".join(names) if names else "none"


def client_context(ca_pem: bytes, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS client context like gRPC's: trusts only `ca_pem`, presents the client certificate, offers
    ALPN h2. The name is compared by `diagnose` itself, so that it can list the certificate's names."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def diagnose(
    address: str,
    *,
    ca_pem: bytes,
    cert_file: Path,
    key_file: Path,
    server_name: str | None = None,
    timeout_seconds: float = 5.0,
) -> Diagnosis:
    """Dial `address` once, as gRPC would with this bundle, and say what fails first (or
    "handshake_ok"). Never raises for what it finds; `timeout_seconds` bounds the whole attempt."""
    try:
        host, port = split_address(address)
    except ValueError as err:
        return Diagnosis("bad_address", f"bus address {address!r}: {err}")
    try:
        ctx = client_context(ca_pem, cert_file, key_file)
    except (OSError, ssl.SSLError) as err:
        return Diagnosis("tls_error", f"cannot load the bundle's certificates ({cert_file}): {err}")
    name = server_name or host
    connected: list[bool] = []
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _dial(address, host, port, name, ctx, server_name is not None, connected)
    except TimeoutError:
        if connected:
            return Diagnosis(
                "timeout",
                f"bus {address}: connected, but no TLS answer within {timeout_seconds:g} s (is this the "
                "bus port?)",
            )
        return Diagnosis(
            "timeout",
            f"bus {address}: no answer within {timeout_seconds:g} s (a firewall dropping packets, "
            "or the wrong host?)",
        )


async def _dial(
    address: str,
    host: str,
    port: int,
    name: str,
    ctx: ssl.SSLContext,
    overridden: bool,
    connected: list[bool],
) -> Diagnosis:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return Diagnosis("unresolved", f"bus {address}: cannot resolve {host!r} ({err.strerror})")
    reader = writer = None
    errors: list[OSError] = []
    for family, _, proto, _, sockaddr in infos:
        ip = sockaddr[0]
        if not isinstance(ip, str):
            continue  # (int, bytes): IPv6 on a Python built without it, which cannot dial it
        try:  # the port is `port`: getaddrinfo was given it as a number
            reader, writer = await asyncio.open_connection(ip, port, family=family, proto=proto)
            break
        except OSError as err:
            errors.append(err)
    if writer is None or reader is None:
        if any(isinstance(e, ConnectionRefusedError) for e in errors):
            return Diagnosis(
                "refused",
                f"bus {address}: connection refused, nothing listens there (is `amoskys run` up, and is "
                "this its [bus] listen address?)",
            )
        first = errors[0] if errors else OSError(errno.EHOSTUNREACH, "no address to dial")
        return Diagnosis("unreachable", f"bus {address}: cannot connect: {first.strerror or first}")
    connected.append(True)
    try:
        return await _handshake(address, name, ctx, overridden, reader, writer)
    finally:
        # A probe: dropped at once (a TLS close would wait for a peer that may never answer).
        writer.transport.abort()


async def _handshake(
    address: str,
    name: str,
    ctx: ssl.SSLContext,
    overridden: bool,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> Diagnosis:
    sni = None if _is_ip(name) else name
    try:
        await writer.start_tls(ctx, server_hostname=sni)
    except ssl.SSLCertVerificationError as err:
        return _server_cert_problem(address, err)
    except ssl.SSLError as err:
        if _is_client_cert_alert(err):
            return _client_cert_rejected(address, err)
        return Diagnosis("tls_error", f"bus {address}: TLS handshake failed: {_ssl_reason(err)}{_hint(err)}")
    except (ConnectionError, asyncio.IncompleteReadError) as err:
        return _client_cert_rejected(address, err)
    ssl_object = writer.get_extra_info("ssl_object")
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    sans = list((cert or {}).get("subjectAltName", ()))
    if not name_matches(name, sans):
        how = "--server-name" if overridden else "dialled"
        return Diagnosis(
            "name_mismatch",
            f"bus {address}: TLS name {name!r} ({how}) is not in the bus certificate (its names: "
            f"{_san_list(sans)}); dial one of those or pass --server-name NAME",
        )
    # TLS 1.3: the bus judges the client certificate after the handshake; its verdict is the next read.
    try:
        writer.write(_H2_PREFACE)
        await writer.drain()
        data = await reader.read(9)
    except ssl.SSLError as err:
        if _is_client_cert_alert(err):
            return _client_cert_rejected(address, err)
        return Diagnosis("tls_error", f"bus {address}: TLS failed after the handshake: {_ssl_reason(err)}")
    except ConnectionError as err:
        return _client_cert_rejected(address, err)
    if not data:
        return _client_cert_rejected(address, None)
    return Diagnosis("handshake_ok", f"bus {address}: the TLS handshake with this bundle succeeds")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _ssl_reason(err: ssl.SSLError) -> str:
    reason = getattr(err, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else (err.strerror or str(err))


def _hint(err: ssl.SSLError) -> str:
    reason = str(getattr(err, "reason", "") or "")
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return " (it does not speak TLS: is this the bus port, not the dashboard's?)"
    return ""


def _is_client_cert_alert(err: ssl.SSLError) -> bool:
    reason = str(getattr(err, "reason", "") or "")
    return any(alert in reason for alert in _CLIENT_CERT_ALERTS)


def _client_cert_rejected(address: str, err: BaseException | None) -> Diagnosis:
    why = (
        f"TLS alert: {_ssl_reason(err)}"
        if isinstance(err, ssl.SSLError)
        else "it closed the connection right after the handshake"
    )
    return Diagnosis(
        "client_cert_rejected",
        f"bus {address}: the bus rejected this bundle's client certificate ({why}): the bundle is from "
        "another appliance's CA, or expired; enrol again on that appliance",
    )


def _server_cert_problem(address: str, err: ssl.SSLCertVerificationError) -> Diagnosis:
    code, message = err.verify_code, err.verify_message
    if code in _UNKNOWN_CA_CODES:
        return Diagnosis(
            "unknown_ca",
            f"bus {address}: its certificate is not signed by the bundle's CA ({message}): the bundle "
            "is from another appliance (or that appliance's CA was re-created); enrol again there",
        )
    if code == _EXPIRED_CODE:
        return Diagnosis(
            "server_cert_expired",
            f"bus {address}: its certificate has expired ({message}); run `amoskys certs renew` there",
        )
    return Diagnosis("server_cert_invalid", f"bus {address}: its certificate fails verification: {message}")
