"""Enrolling this endpoint with a one-time token (`amoskys agent enroll`): its keys are made here and
never leave it.

1. The CA is pinned before anything is sent: a TLS handshake with the enrolment port reads the chain
   it presents (the server certificate, then the CA), and the certificate whose SHA-256 is the
   fingerprint (from the token, and from ``--ca-fingerprint`` when given: both must agree) becomes the
   only root the gRPC channel trusts. A server presenting no such CA gets nothing, the token included.
2. A P-256 TLS key and an Ed25519 identity key are generated and written (0600) into the bundle dir.
3. Enrol sends the token, a CSR and the Ed25519 public key with its proof of possession; the answer's
   certificate must be for our key and the answer's CA must be the pinned one.
4. The bundle is completed in the layout of `amoskys agents enroll --out` (amoskys.pki.layout), so
   everything that loads a bundle loads this one. On any failure the keys written in 2 are removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.config import format_listen, parse_listen
from amoskys.errors import PkiError
from amoskys.pki import _files
from amoskys.pki import csr as csrs
from amoskys.pki.identities import key_id
from amoskys.pki.layout import BUNDLE_JSON, CA_CERT, CLIENT_CERT, CLIENT_KEY, IDENTITY_KEY
from amoskys.pki.names import identity_uri, validate_name
from amoskys.pki.tokens import format_fingerprint, parse_fingerprint, parse_token
from amoskys.proto import bus_pb2, bus_pb2_grpc

DEFAULT_TIMEOUT_SECONDS = 15.0


class EnrolRefusedError(PkiError):
    """The appliance refused the enrolment (`code`: the gRPC status name); nothing was enrolled."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the appliance refused the enrolment ({code}): {message}")
        self.code = code


@dataclass(frozen=True)
class Enrolled:
    dir: Path
    name: str
    role: str
    key_id: str
    not_after: datetime


def presented_chain(host: str, port: int, timeout: float) -> list[bytes]:
    """The DER certificates a TLS server at host:port presents, unverified (blocking)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # nothing is trusted from here: the fingerprint decides
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            # public from Python 3.13; the same method of the underlying object before
            chain = tls.get_unverified_chain() if hasattr(tls, "get_unverified_chain") else None
            if chain is None:
                chain = tls._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
            return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain or []]  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as err:
        raise PkiError(f"cannot reach the enrolment port {format_listen(host, port)}: {err}") from err


def pinned_ca(chain: list[bytes], fingerprint: bytes, where: str) -> bytes:
    """The PEM of the certificate of `chain` whose SHA-256 is `fingerprint`, when it is a CA that
    issued the first (the server's); PkiError otherwise."""
    for der in chain:
        if hashlib.sha256(der).digest() == fingerprint:
            ca = x509.load_der_x509_certificate(der)
            try:
                x509.load_der_x509_certificate(chain[0]).verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature) as err:
                raise PkiError(f"{where}: the server certificate is not issued by the pinned CA") from err
            return ca.public_bytes(serialization.Encoding.PEM)
    seen = ", ".join(hashlib.sha256(d).hexdigest()[:16] + "…" for d in chain) or "none"
    raise PkiError(
        f"{where} does not present the CA with fingerprint {format_fingerprint(fingerprint)} "
        f"(it presents {seen}); nothing was sent — check the address and the fingerprint"
    )


async def enrol(
    token_text: str,
    *,
    bus_address: str,
    enrol_port: int,
    out_dir: Path,
    ca_fingerprint: str | None = None,
    name: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> Enrolled:
    """Enrol this endpoint with `token_text` at the appliance whose bus is `bus_address` and whose
    enrolment port is `enrol_port` (same host); write the bundle into `out_dir`."""
    token = parse_token(token_text)
    fingerprint = token.ca_fingerprint
    if ca_fingerprint is not None and parse_fingerprint(ca_fingerprint) != fingerprint:
        raise PkiError("--ca-fingerprint differs from the CA fingerprint in the token; nothing was sent")
    if name:
        validate_name(name)
    try:
        host, port = parse_listen(bus_address)
    except ValueError as err:
        raise PkiError(f"--bus: {err}") from None
    where = f"the enrolment port {format_listen(host, enrol_port)}"
    paths = {n: out_dir / n for n in (CLIENT_CERT, CLIENT_KEY, IDENTITY_KEY, CA_CERT, BUNDLE_JSON)}
    await asyncio.to_thread(_check_empty, list(paths.values()))

    chain = await asyncio.to_thread(presented_chain, host, enrol_port, timeout_seconds)
    ca_pem = pinned_ca(chain, fingerprint, where)

    tls_key = ec.generate_private_key(ec.SECP256R1())
    identity = Ed25519PrivateKey.generate()
    csr = csrs.make_csr(tls_key, name or "")
    request = bus_pb2.EnrolRequest(
        token=token.text(),
        name=name or "",
        csr=csr,
        identity_public_key=identity.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ),
        identity_signature=csrs.prove(identity, csrs.ENROL_CONTEXT, csr),
    )
    await asyncio.to_thread(_write_keys, paths, tls_key, identity)
    try:
        reply = await _call(host, enrol_port, ca_pem, request, timeout_seconds)
        cert = _check_reply(reply, tls_key, ca_pem, fingerprint)
        bundle = {
            "name": reply.name,
            "role": reply.role,
            "bus_address": format_listen(host, port),
            "trust_domain": reply.trust_domain,
            "key_id": key_id(identity.public_key()),
        }
        await asyncio.to_thread(_write_rest, paths, reply.certificate, ca_pem, bundle)
    except BaseException:
        await asyncio.to_thread(_remove, list(paths.values()))
        raise
    return Enrolled(out_dir, reply.name, reply.role, str(bundle["key_id"]), cert.not_valid_after_utc)


async def _call(
    host: str, port: int, ca_pem: bytes, request: bus_pb2.EnrolRequest, timeout_seconds: float
) -> bus_pb2.EnrolResponse:
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    async with grpc.aio.secure_channel(format_listen(host, port), creds) as channel:
        try:
            reply: bus_pb2.EnrolResponse = await bus_pb2_grpc.EnrolmentStub(channel).Enrol(
                request, timeout=timeout_seconds
            )
        except grpc.aio.AioRpcError as err:
            raise EnrolRefusedError(err.code().name, err.details() or "") from None
    return reply


def _check_reply(
    reply: bus_pb2.EnrolResponse, key: ec.EllipticCurvePrivateKey, ca_pem: bytes, fingerprint: bytes
) -> x509.Certificate:
    """The certificate of `reply`, when it is for `key`, names the identity answered and comes with
    the pinned CA."""
    try:
        cert = x509.load_pem_x509_certificate(reply.certificate)
        ca = x509.load_pem_x509_certificate(reply.ca_certificate)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
        uri = identity_uri(reply.trust_domain, reply.name)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, PkiError, x509.ExtensionNotFound) as err:
        raise PkiError(f"the appliance's answer is not usable: {err}") from err
    if hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).digest() != fingerprint:
        raise PkiError("the appliance answered with another CA than the pinned one")
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
        raise PkiError("the appliance's certificate is not for this endpoint's key")
    if sans.get_values_for_type(x509.UniformResourceIdentifier) != [uri]:
        raise PkiError(f"the appliance's certificate does not name {uri}")
    return cert


def _check_empty(paths: list[Path]) -> None:
    for path in paths:
        if path.exists():
            raise PkiError(f"{path}: already exists; choose an empty directory", path=str(path))


def _write_keys(
    paths: dict[str, Path], tls_key: ec.EllipticCurvePrivateKey, identity: Ed25519PrivateKey
) -> None:
    _files.ensure_dir(paths[CLIENT_KEY].parent)
    _files.write(paths[CLIENT_KEY], _files.key_pem(tls_key), _files.KEY_MODE)
    _files.write(paths[IDENTITY_KEY], _files.key_pem(identity), _files.KEY_MODE)


def _write_rest(paths: dict[str, Path], cert_pem: bytes, ca_pem: bytes, bundle: dict[str, str]) -> None:
    _files.write(paths[CLIENT_CERT], cert_pem, _files.CERT_MODE)
    _files.write(paths[CA_CERT], ca_pem, _files.CERT_MODE)
    _files.write(paths[BUNDLE_JSON], (json.dumps(bundle, indent=2) + "\n").encode(), _files.CERT_MODE)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
