"""Renewing an agent's client certificate over the bus before it expires (the agent runtime calls
`renew_if_due` periodically, e.g. hourly).

Due when a third of the certificate's life or less is left. The agent asks over mTLS with its current
certificate and proves its Ed25519 identity (amoskys.pki.csr, ``amoskys-renew-v1``); the appliance
issues a certificate for the same name and role (a revoked identity is refused by the bus). The TLS key
is kept, so only ``client.crt`` changes, replaced atomically: a crash leaves the old certificate or the
new one, each matching ``client.key``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from amoskys.bus.client import PublisherIdentity
from amoskys.errors import PkiError
from amoskys.pki import _files
from amoskys.pki import csr as csrs
from amoskys.pki.issuance import load_tls_key
from amoskys.pki.layout import CLIENT_CERT, CLIENT_KEY
from amoskys.proto import bus_pb2, bus_pb2_grpc

log = structlog.get_logger(__name__)

DUE_FRACTION = 1 / 3


class RenewRefusedError(PkiError):
    """The appliance refused the renewal (`code`: the gRPC status name, PERMISSION_DENIED when the
    identity is revoked); the current certificate is kept."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the appliance refused to renew the certificate ({code}): {message}")
        self.code = code


def renewal_due(cert: x509.Certificate, now: datetime) -> bool:
    """Whether a third of `cert`'s life or less is left at `now`."""
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now <= life * DUE_FRACTION


async def renew_if_due(
    bundle_dir: Path,
    *,
    bus_address: str | None = None,
    now: datetime | None = None,
    timeout_seconds: float = 15.0,
    server_name: str | None = None,
) -> datetime | None:
    """Renew the certificate of the bundle in `bundle_dir` when due; return its new end of validity,
    or None when it was not due. `bus_address` defaults to the bundle's. Raises RenewRefusedError
    when the appliance refuses, PkiError for an unreadable bundle or an unusable answer."""
    at = now or datetime.now(UTC)
    bundle = await PublisherIdentity.load(bundle_dir)  # the bundle as every publisher reads it
    current = _certificate(bundle.client_cert)
    if not renewal_due(current, at):
        return None
    tls_key = await asyncio.to_thread(load_tls_key, bundle_dir / CLIENT_KEY)
    csr = csrs.make_csr(tls_key, bundle.name)
    request = bus_pb2.RenewRequest(
        csr=csr, identity_signature=csrs.prove(bundle.key, csrs.RENEW_CONTEXT, csr)
    )
    creds = grpc.ssl_channel_credentials(bundle.ca_cert, bundle.client_key, bundle.client_cert)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    async with grpc.aio.secure_channel(bus_address or bundle.bus_address, creds, options=options) as channel:
        try:
            reply = await bus_pb2_grpc.EnrolmentStub(channel).Renew(request, timeout=timeout_seconds)
        except grpc.aio.AioRpcError as err:
            raise RenewRefusedError(err.code().name, err.details() or "") from None
    cert = _check(reply.certificate, current, bundle.ca_cert)
    await asyncio.to_thread(_files.write, bundle_dir / CLIENT_CERT, reply.certificate, _files.CERT_MODE)
    return cert.not_valid_after_utc


async def keep_renewed(
    bundle_dir: Path,
    *,
    bus_address: str | None = None,
    interval_seconds: float = 3600.0,
    on_renewed: Callable[[datetime], Awaitable[None]] | None = None,
) -> None:
    """Call `renew_if_due` every `interval_seconds` until cancelled (the agent runtime's task). A
    renewal is logged and handed to `on_renewed` (to reconnect with the new certificate); a failure is
    logged once until a check succeeds again, and retried at the next interval."""
    failing = False
    while True:
        try:
            renewed = await renew_if_due(bundle_dir, bus_address=bus_address)
        except PkiError as err:
            if not failing:
                log.warning("agent_cert_renewal_failed", bundle=str(bundle_dir), error=str(err))
            failing = True
        else:
            if failing:
                log.info("agent_cert_renewal_recovered", bundle=str(bundle_dir))
            failing = False
            if renewed is not None:
                log.info("agent_cert_renewed", bundle=str(bundle_dir), not_after=renewed.isoformat())
                if on_renewed is not None:
                    await on_renewed(renewed)
        await asyncio.sleep(interval_seconds)


def _certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise PkiError(f"the identity bundle's client certificate is unreadable: {err}") from err


def _check(cert_pem: bytes, current: x509.Certificate, ca_pem: bytes) -> x509.Certificate:
    """The renewed certificate, when it is issued by the bundle's CA for the same key and identity."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
        new_sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        old_sans = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound) as err:
        raise PkiError(f"the renewed certificate is not usable: {err}") from err
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*fmt) != current.public_key().public_bytes(*fmt):
        raise PkiError("the renewed certificate is not for this agent's key")
    if new_sans != old_sans:
        raise PkiError("the renewed certificate names another identity")
    return cert
