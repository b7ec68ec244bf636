"""The appliance's public-key infrastructure: CA, TLS certificates, Ed25519 identities, batch signatures.

Everything cryptographic is done by the ``cryptography`` library; this module only decides what to
issue, where it lives on disk and how the pieces are checked against each other (DESIGN §3, §8).

Files in the appliance's PKI dir (mode 0700; keys 0600, certificates 0644)::

    ca.crt  ca.key            private CA (ECDSA P-256, 10 years) — signs every TLS certificate below
    server.crt  server.key    the bus server certificate (P-256, 397 days, SANs from config, serverAuth)
    identity.ed25519          the appliance's own Ed25519 identity (PKCS8 PEM) — signs batches
    client.crt  client.key    a client certificate for the appliance itself (URI SAN = its identity,
                              clientAuth), so it can publish to an upstream bus as a relay

An enrolment bundle (``enroll_agent``) holds ``client.crt``, ``client.key``, ``identity.ed25519``,
``ca.crt`` and ``bundle.json`` (name, role, bus_address, trust_domain, key_id).

TLS certificates use ECDSA P-256 with SHA-256 because that is what every TLS stack (grpc's BoringSSL
included) accepts for both server and client authentication; Ed25519 is used only for batch signatures.
Identities live in a URI SAN, ``spiffe://<trust-domain>/agent/<name>``. grpc exposes it in
``context.auth_context()`` (a ``dict[str, list[bytes]]``) under ``"peer_spiffe_id"`` (only when the
certificate carries exactly one URI SAN, a valid SPIFFE ID), ``"peer_uri"`` (every URI SAN) and
``"x509_subject_alternative_name"`` (every SAN, of every type, as text; also what
``context.peer_identity_key()`` names, so ``context.peer_identities()`` returns the same list).
``PEER_IDENTITY_KEYS`` lists them in the order ``peer_identity`` consults them (verified with grpcio
1.85 by tests/test_pki.py). Only a handshake that verified the client
certificate against the configured CA reaches Python at all; a missing, expired or foreign certificate
fails the handshake and the client sees UNAVAILABLE.

Batch signatures (DESIGN §3). The signed message is, byte for byte::

    b"amoskys-batch-v1"                  16 bytes, domain separation tag
    len(key_id)       u16, big-endian    key_id is UTF-8 encoded
    key_id            len(key_id) bytes
    len(prev_digest)  u16, big-endian    0 for a sender's first batch (prev_digest = b"", GENESIS_DIGEST)
    prev_digest       len(prev_digest) bytes
    SHA-256(events)   32 bytes           events = the exact serialized EventList bytes that were sent

Every variable-length field is length-prefixed, so no two different (key_id, prev_digest, events)
triples share a message. ``signature = Ed25519(message)`` (64 bytes) and ``batch_digest =
SHA-256(message)``, which is the sender's ``prev_digest`` for its next batch (the hash chain). The
bus verifies the bytes it received; nothing is re-serialized.

Secrets are written atomically (a 0600 temp file created with ``os.open``, fsynced, renamed over the
target, directory fsynced) and never printed or logged; error messages name files, never contents.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amoskys.errors import PkiError
from amoskys.files import write_atomic

IDENTITY_URI = "spiffe://{trust_domain}/agent/{name}"
"""Template of an identity URI; it is carried in the URI SAN of every client certificate."""

PEER_IDENTITY_KEYS: tuple[str, ...] = ("peer_spiffe_id", "peer_uri", "x509_subject_alternative_name")
"""``context.auth_context()`` keys under which grpc (1.85, BoringSSL) exposes a peer's URI SANs."""

BATCH_CONTEXT = b"amoskys-batch-v1"
"""Domain separation tag at the start of every signed batch message."""

GENESIS_DIGEST = b""
"""``prev_digest`` of a sender's first batch (the protobuf default of an unset bytes field)."""

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 397
BACKDATE = timedelta(hours=1)
"""Certificates start this long before "now" so a peer whose clock lags a little still accepts them."""

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
IDENTITY_KEY = "identity.ed25519"
CLIENT_CERT = "client.crt"
CLIENT_KEY = "client.key"
BUNDLE_JSON = "bundle.json"

KEY_MODE = 0o600
CERT_MODE = 0o600  # public, but nothing in a data dir is readable by other users
DIR_MODE = 0o700

#: agent: publishes its own events; relay: may also forward others' events; loadgen: publishes only
#: synthetic events (`amoskys loadgen`), which the bus marks as such when it stores them.
Role = Literal["agent", "relay", "loadgen"]
ROLES: tuple[str, ...] = ("agent", "relay", "loadgen")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,253}[a-z0-9])?")
_U16 = struct.Struct(">H")


# ---------------------------------------------------------------------------------------------------
# Identities


def is_valid_name(name: str) -> bool:
    """Whether `name` can be an identity name (1–64 of ``[A-Za-z0-9._-]``, starting alphanumeric)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def validate_name(name: str) -> str:
    """Return `name` if it can be an identity name (1–64 of ``[A-Za-z0-9._-]``, starting alphanumeric)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise PkiError(
            f"identity name {name!r} is not valid: expected 1–64 characters of [A-Za-z0-9._-], "
            "starting with a letter or digit"
        )
    return name


def validate_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` if it is a valid SPIFFE trust domain (lowercase ``[a-z0-9._-]``)."""
    if not isinstance(trust_domain, str) or not _TRUST_DOMAIN_RE.fullmatch(trust_domain):
        raise PkiError(
            f"trust domain {trust_domain!r} is not valid: expected lowercase letters, digits, '.', '-' "
            "or '_', starting and ending with a letter or digit"
        )
    return trust_domain


def identity_uri(trust_domain: str, name: str) -> str:
    """The identity URI of `name` in `trust_domain` (``spiffe://<trust-domain>/agent/<name>``)."""
    return IDENTITY_URI.format(trust_domain=validate_trust_domain(trust_domain), name=validate_name(name))


def identity_from_uri(uri: str, trust_domain: str) -> str | None:
    """The identity name in `uri`, or None when it is not an agent identity of `trust_domain`."""
    prefix = f"spiffe://{trust_domain}/agent/"
    if not isinstance(uri, str) or not uri.startswith(prefix):
        return None
    name = uri[len(prefix) :]
    return name if _NAME_RE.fullmatch(name) else None


def peer_identity(auth_context: Mapping[str, Sequence[bytes]], trust_domain: str) -> str | None:
    """The identity name of a grpc peer from ``context.auth_context()``, or None.

    The keys of ``PEER_IDENTITY_KEYS`` are consulted in order; the first that carries an identity of
    `trust_domain` decides. A certificate naming two different identities of ours is ambiguous and
    yields None (our CA never issues one).
    """
    for key in PEER_IDENTITY_KEYS:
        names: set[str] = set()
        for value in auth_context.get(key, ()):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
            name = identity_from_uri(text, trust_domain)
            if name is not None:
                names.add(name)
        if len(names) == 1:
            return names.pop()
        if len(names) > 1:
            return None
    return None


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short stable id of an Ed25519 public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return key_id_of_raw(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def key_id_of_raw(raw: bytes) -> str:
    """`key_id` of a raw 32-byte Ed25519 public key, as stored for enrolled identities."""
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key (of a private key's public half)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------------------------------------------
# Batch signatures


def _batch_message(key_id: str, prev_digest: bytes, events: bytes) -> bytes:
    """The exact signed message (layout in the module docstring); ValueError when a field is too long."""
    kid = key_id.encode("utf-8")
    if len(kid) > 0xFFFF or len(prev_digest) > 0xFFFF:
        raise ValueError("key_id and prev_digest must each be at most 65535 bytes")
    return b"".join(
        (
            BATCH_CONTEXT,
            _U16.pack(len(kid)),
            kid,
            _U16.pack(len(prev_digest)),
            bytes(prev_digest),
            hashlib.sha256(events).digest(),
        )
    )


def batch_digest(key_id: str, prev_digest: bytes, events: bytes) -> bytes:
    """SHA-256 of the signed message of a batch: the sender's `prev_digest` for its next batch."""
    return hashlib.sha256(_batch_message(key_id, prev_digest, events)).digest()


def sign_batch(key: Ed25519PrivateKey, key_id: str, prev_digest: bytes, events: bytes) -> bytes:
    """The 64-byte Ed25519 signature of a batch (see the module docstring for the signed bytes)."""
    return key.sign(_batch_message(key_id, prev_digest, events))


@functools.lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_batch(
    public_key_raw: bytes, key_id: str, prev_digest: bytes, events: bytes, signature: bytes
) -> bool:
    """True when `signature` is a valid signature of the batch by `public_key_raw`.

    Never raises on bad input: a malformed key, an over-long field, a wrong type or a bad, truncated
    or over-long signature all return False.
    """
    if not isinstance(key_id, str):
        return False
    try:
        public = _public_key(bytes(public_key_raw))
        message = _batch_message(key_id, prev_digest, events)
        public.verify(bytes(signature), message)
    except (InvalidSignature, ValueError, TypeError):
        # ValueError: a malformed key, an over-long field, a key_id that is not UTF-8 encodable;
        # TypeError: an argument that is not bytes-like
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# Files


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    try:
        write_atomic(path, data, mode)
    except OSError as err:
        raise PkiError(f"{path}: cannot write: {err.strerror or err}", path=str(path)) from err


def _ensure_dir(path: Path) -> None:
    """Create `path` (mode 0700) when missing; an existing directory is left as it is."""
    try:
        if not path.is_dir():
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            path.chmod(DIR_MODE)
    except OSError as err:
        raise PkiError(f"{path}: cannot create directory: {err.strerror or err}", path=str(path)) from err


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise PkiError(f"{path}: cannot read: {err.strerror or err}", path=str(path)) from err


def _key_pem(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path: Path) -> x509.Certificate:
    """The certificate in PEM file `path`; PkiError naming the file when unreadable or not a certificate."""
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as err:
        raise PkiError(f"{path}: not a PEM X.509 certificate", path=str(path)) from err


def _load_private_key(path: Path) -> object:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        # TypeError: the key is encrypted; the message never includes the key material
        raise PkiError(f"{path}: not an unencrypted PEM private key", path=str(path)) from err


def load_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The ECDSA private key of a TLS certificate in PEM file `path`."""
    key = _load_private_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: expected an ECDSA private key, found {type(key).__name__}", path=str(path))
    return key


def load_identity_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 identity key in PEM (PKCS8) file `path`; PkiError naming the file otherwise."""
    key = _load_private_key(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise PkiError(f"{path}: expected an Ed25519 private key, found {type(key).__name__}", path=str(path))
    return key


def cert_not_after(path: Path) -> datetime:
    """The end of validity (UTC) of the certificate in `path`."""
    return load_cert(path).not_valid_after_utc


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _check_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = load_cert(cert_path)
    key = load_tls_key(key_path)
    if not _same_public_key(cert, key):
        raise PkiError(f"{key_path}: private key does not match certificate {cert_path}", path=str(key_path))
    return cert, key


def _check_issued_by(cert: x509.Certificate, cert_path: Path, ca: x509.Certificate, ca_path: Path) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise PkiError(f"{cert_path}: not signed by the CA in {ca_path}", path=str(cert_path)) from err


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


# ---------------------------------------------------------------------------------------------------
# Issuing


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _load_ca(ca_cert: Path, ca_key: Path) -> _Issuer:
    """The CA pair, checked: a CA certificate and the private key that matches it."""
    cert, key = _check_pair(ca_cert, ca_key)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError(
            f"{ca_cert}: not a CA certificate (BasicConstraints ca=true missing)", path=str(ca_cert)
        )
    return _Issuer(cert, key)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _leaf(
    issuer: _Issuer,
    *,
    common_name: str,
    sans: Sequence[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_aki(issuer.cert), critical=False)
    )
    return builder.sign(issuer.key, hashes.SHA256())


def create_ca(dir: Path, common_name: str, now: datetime | None = None) -> tuple[Path, Path]:
    """Create a private CA (ECDSA P-256, 10 years) as `dir`/ca.crt and `dir`/ca.key; return both paths.

    Refuses to replace an existing CA: every certificate it issued would stop chaining.
    """
    at = _now(now)
    cert_path, key_path = dir / CA_CERT, dir / CA_KEY
    for path in (cert_path, key_path):
        if path.exists():
            raise PkiError(f"{path}: already exists; a CA is never replaced", path=str(path))
    _ensure_dir(dir)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - BACKDATE)
        .not_valid_after(at + timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_atomic(key_path, _key_pem(key), KEY_MODE)
    _write_atomic(cert_path, _cert_pem(cert), CERT_MODE)
    return cert_path, key_path


def _validity(
    at: datetime, valid_days: int, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else at - BACKDATE
    end = not_after if not_after is not None else at + timedelta(days=valid_days)
    if end <= start:
        raise ValueError(
            f"certificate validity ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    return start, end


def issue_client_cert(
    ca_cert: Path,
    ca_key: Path,
    *,
    uri: str,
    common_name: str,
    cert_path: Path,
    key_path: Path,
    valid_days: int = LEAF_VALID_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """Issue a TLS client certificate (URI SAN `uri`, EKU clientAuth) from the CA in `ca_cert`/`ca_key`.

    A fresh P-256 key is written to `key_path` (0600) and the certificate to `cert_path` (0644).
    `not_before`/`not_after` override the default validity (one hour ago .. `valid_days` from now), so
    tests can make an expired certificate; any CA pair works, so tests can make a foreign one.
    """
    issuer = _load_ca(ca_cert, ca_key)
    start, end = _validity(_now(now), valid_days, not_before, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(
        issuer,
        common_name=common_name,
        sans=[x509.UniformResourceIdentifier(uri)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        key=key,
        not_before=start,
        not_after=end,
    )
    _write_atomic(key_path, _key_pem(key), KEY_MODE)
    _write_atomic(cert_path, _cert_pem(cert), CERT_MODE)
    return cert


def _server_sans(dns_names: Iterable[str], ip_addresses: Iterable[str], path: Path) -> list[x509.GeneralName]:
    """Validated, de-duplicated SANs in a stable order (DNS names, then IPs)."""
    dns = sorted({d.strip().lower() for d in dns_names if d.strip()})
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in ip_addresses:
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError as err:
            raise PkiError(f"{path}: server SAN {text!r} is not an IP address", path=str(path)) from err
        if ip not in ips:
            ips.append(ip)
    for name in dns:
        if not name.isascii():
            raise PkiError(
                f"{path}: server SAN {name!r} must be ASCII (use the IDNA A-label)", path=str(path)
            )
    if not dns and not ips:
        raise PkiError(
            f"{path}: the server certificate needs at least one DNS name or IP address", path=str(path)
        )
    return [x509.DNSName(d) for d in dns] + [x509.IPAddress(ip) for ip in sorted(ips, key=_ip_sort_key)]


def _ip_sort_key(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    return ip.version, int(ip)


def _san_set(cert: x509.Certificate) -> set[tuple[str, str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {("dns", d.lower()) for d in san.get_values_for_type(x509.DNSName)} | {
        ("ip", str(ip)) for ip in san.get_values_for_type(x509.IPAddress)
    }


def cert_accepts_host(path: Path, host: str) -> tuple[bool, str]:
    """Whether the certificate at `path` names `host` (a DNS name, ignoring case, or an IP address)
    among its SANs; also the SANs it names, as text for an error message."""
    sans = _san_set(load_cert(path))
    try:
        wanted = ("ip", str(ipaddress.ip_address(host)))
    except ValueError:
        wanted = ("dns", host.lower().rstrip("."))
    return wanted in sans, _describe_sans(sans)


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _describe_sans(sans: set[tuple[str, str]]) -> str:
    return ", ".join(value for _, value in sorted(sans)) or "none"


def _issue_server_cert(
    issuer: _Issuer,
    *,
    cert_path: Path,
    key_path: Path,
    sans: Sequence[x509.GeneralName],
    key: ec.EllipticCurvePrivateKey | None,
    valid_days: int,
    at: datetime,
) -> None:
    """Issue the bus server certificate; write a new key first when `key` is None."""
    new_key = key is None
    key = key or ec.generate_private_key(ec.SECP256R1())
    first = sans[0]
    common_name = str(first.value)
    start, end = _validity(at, valid_days, None, None)
    cert = _leaf(
        issuer,
        common_name=common_name,
        sans=sans,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        key=key,
        not_before=start,
        not_after=end,
    )
    if new_key:
        _write_atomic(key_path, _key_pem(key), KEY_MODE)
    _write_atomic(cert_path, _cert_pem(cert), CERT_MODE)


# ---------------------------------------------------------------------------------------------------
# The appliance


@dataclass(frozen=True)
class ApplianceCredentials:
    """Paths of the appliance's PKI files, and what the call that returned them created."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    identity_key: Path
    """The appliance's own Ed25519 private key (PEM, PKCS8): it signs the batches it relays upstream."""
    identity_cert: Path
    identity_cert_key: Path
    """A client certificate (URI SAN = the appliance's identity) and its key, to publish upstream."""
    created: tuple[str, ...] = ()
    """What this call wrote (file names, re-issues with the reason); empty when everything existed."""

    @classmethod
    def in_dir(cls, pki_dir: Path, created: tuple[str, ...] = ()) -> ApplianceCredentials:
        """The standard file layout inside `pki_dir` (see the module docstring)."""
        return cls(
            ca_cert=pki_dir / CA_CERT,
            ca_key=pki_dir / CA_KEY,
            server_cert=pki_dir / SERVER_CERT,
            server_key=pki_dir / SERVER_KEY,
            identity_key=pki_dir / IDENTITY_KEY,
            identity_cert=pki_dir / CLIENT_CERT,
            identity_cert_key=pki_dir / CLIENT_KEY,
            created=created,
        )


def _partial(paths: Sequence[Path]) -> tuple[bool, Path | None]:
    """(all present, the first missing one when only some are present)."""
    present = [p.exists() for p in paths]
    if all(present):
        return True, None
    if any(present):
        return False, paths[present.index(False)]
    return False, None


def _missing_pair_error(missing: Path, paths: Sequence[Path]) -> PkiError:
    others = ", ".join(p.name for p in paths if p != missing)
    return PkiError(
        f"{missing}: missing while {others} exists; restore it, or remove both to have them re-created",
        path=str(missing),
    )


def ensure_appliance_pki(
    pki_dir: Path,
    *,
    name: str,
    trust_domain: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: datetime | None = None,
) -> ApplianceCredentials:
    """Create the appliance's PKI on first run; on later runs check it and reuse it.

    Each group of files (the CA pair, the server pair, the identity key, the client pair) is created
    when all its files are absent, checked when present, and refused (PkiError naming the missing
    file) when only part of it exists. A missing CA is never re-created while certificates it issued
    remain. The server certificate is re-issued from the same CA, with its existing key, when the
    configured SANs differ from the certificate's or it has expired; the client certificate likewise
    when the identity URI changed or it has expired. `created` says what was written and why.
    """
    at = _now(now)
    validate_name(name)
    validate_trust_domain(trust_domain)
    creds = ApplianceCredentials.in_dir(pki_dir)
    sans = _server_sans(dns_names, ip_addresses, creds.server_cert)
    created: list[str] = []
    _ensure_dir(pki_dir)

    # the CA
    ca_paths = (creds.ca_cert, creds.ca_key)
    ca_complete, ca_missing = _partial(ca_paths)
    if ca_missing is not None:
        raise _missing_pair_error(ca_missing, ca_paths)
    if not ca_complete:
        for dependant in (creds.server_cert, creds.server_key, creds.identity_cert, creds.identity_cert_key):
            if dependant.exists():
                raise PkiError(
                    f"{creds.ca_cert}: missing while {dependant} exists; restore the CA, or remove the "
                    "whole PKI dir to start over (every enrolled agent must then be enrolled again)",
                    path=str(creds.ca_cert),
                )
        create_ca(pki_dir, f"AMOSKYS CA {name} ({trust_domain})", now=at)
        created += [CA_CERT, CA_KEY]
    issuer = _load_ca(creds.ca_cert, creds.ca_key)

    # the bus server certificate
    server_paths = (creds.server_cert, creds.server_key)
    server_complete, server_missing = _partial(server_paths)
    if server_missing is not None:
        raise _missing_pair_error(server_missing, server_paths)
    if not server_complete:
        _issue_server_cert(
            issuer,
            cert_path=creds.server_cert,
            key_path=creds.server_key,
            sans=sans,
            key=None,
            valid_days=LEAF_VALID_DAYS,
            at=at,
        )
        created += [SERVER_CERT, SERVER_KEY]
    else:
        cert, key = _check_pair(creds.server_cert, creds.server_key)
        _check_issued_by(cert, creds.server_cert, issuer.cert, creds.ca_cert)
        wanted = _san_set_of(sans)
        reason = ""
        if _san_set(cert) != wanted:
            reason = f"SANs changed from [{_describe_sans(_san_set(cert))}] to [{_describe_sans(wanted)}]"
        elif cert.not_valid_after_utc <= at:
            reason = f"expired {cert.not_valid_after_utc.isoformat()}"
        if reason:
            _issue_server_cert(
                issuer,
                cert_path=creds.server_cert,
                key_path=creds.server_key,
                sans=sans,
                key=key,
                valid_days=LEAF_VALID_DAYS,
                at=at,
            )
            created.append(f"{SERVER_CERT} (re-issued: {reason})")

    # the Ed25519 identity
    if creds.identity_key.exists():
        load_identity_key(creds.identity_key)
    else:
        _write_atomic(creds.identity_key, _key_pem(Ed25519PrivateKey.generate()), KEY_MODE)
        created.append(IDENTITY_KEY)

    # the appliance's own client certificate
    uri = identity_uri(trust_domain, name)
    client_paths = (creds.identity_cert, creds.identity_cert_key)
    client_complete, client_missing = _partial(client_paths)
    if client_missing is not None:
        raise _missing_pair_error(client_missing, client_paths)
    reason = ""
    if client_complete:
        cert, _ = _check_pair(creds.identity_cert, creds.identity_cert_key)
        _check_issued_by(cert, creds.identity_cert, issuer.cert, creds.ca_cert)
        if _uris(cert) != [uri]:
            reason = f"identity changed from {', '.join(_uris(cert)) or 'none'} to {uri}"
        elif cert.not_valid_after_utc <= at:
            reason = f"expired {cert.not_valid_after_utc.isoformat()}"
    if not client_complete or reason:
        issue_client_cert(
            creds.ca_cert,
            creds.ca_key,
            uri=uri,
            common_name=name,
            cert_path=creds.identity_cert,
            key_path=creds.identity_cert_key,
            now=at,
        )
        created += [f"{CLIENT_CERT} (re-issued: {reason})"] if reason else [CLIENT_CERT, CLIENT_KEY]

    return ApplianceCredentials.in_dir(pki_dir, tuple(created))


def _san_set_of(sans: Sequence[x509.GeneralName]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for san in sans:
        if isinstance(san, x509.DNSName):
            out.add(("dns", san.value.lower()))
        elif isinstance(san, x509.IPAddress):
            out.add(("ip", str(san.value)))
    return out


def renew_server_cert(
    credentials: ApplianceCredentials,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    valid_days: int = LEAF_VALID_DAYS,
    now: datetime | None = None,
) -> None:
    """Re-issue the bus server certificate from the same CA with these SANs.

    The existing server key is kept, so the certificate file is the only thing replaced (atomically)
    and a server reloading its credentials never reads a certificate that does not match its key.
    """
    issuer = _load_ca(credentials.ca_cert, credentials.ca_key)
    sans = _server_sans(dns_names, ip_addresses, credentials.server_cert)
    key = load_tls_key(credentials.server_key) if credentials.server_key.exists() else None
    _issue_server_cert(
        issuer,
        cert_path=credentials.server_cert,
        key_path=credentials.server_key,
        sans=sans,
        key=key,
        valid_days=valid_days,
        at=_now(now),
    )


# ---------------------------------------------------------------------------------------------------
# Enrolment


def same_name(a: str, b: str) -> bool:
    """Whether two identity names are the same name: compared ignoring case, so that `Edge-1` can
    never pass for `edge-1` on a page or in a log."""
    return a.lower() == b.lower()


def appliance_identity(credentials: ApplianceCredentials, trust_domain: str) -> str:
    """The appliance's own identity name, read from its client certificate (PkiError when that
    certificate is unreadable or names no identity of `trust_domain`)."""
    cert = load_cert(credentials.identity_cert)
    for uri in _uris(cert):
        name = identity_from_uri(uri, trust_domain)
        if name is not None:
            return name
    raise PkiError(
        f"{credentials.identity_cert}: names no identity of trust domain {trust_domain!r}",
        path=str(credentials.identity_cert),
    )


@dataclass(frozen=True)
class EnrolmentBundle:
    """What ``enroll_agent`` wrote, and what the appliance records about the new identity."""

    dir: Path
    name: str
    role: str
    public_key_raw: bytes
    key_id: str
    cert_serial: int
    not_after: datetime


def enroll_agent(
    credentials: ApplianceCredentials,
    *,
    name: str,
    role: Role,
    trust_domain: str,
    bus_address: str,
    out_dir: Path,
    valid_days: int = LEAF_VALID_DAYS,
    now: datetime | None = None,
) -> EnrolmentBundle:
    """Issue a client certificate and an Ed25519 identity for a remote agent into `out_dir`.

    Writes client.crt, client.key (0600), identity.ed25519 (0600), ca.crt and bundle.json. Refuses to
    overwrite an existing bundle (PkiError naming the file): its keys may be in use. Refuses the
    appliance's own name, ignoring case (read from its client certificate): no enrolled identity may
    ever speak as the appliance.
    """
    validate_name(name)
    own = appliance_identity(credentials, trust_domain)
    if same_name(name, own):
        raise PkiError(
            f"cannot enrol {name!r}: that is this appliance's own name ({own!r}, compared ignoring case), "
            "and no agent or relay may publish as the appliance; choose another name",
            path=str(credentials.identity_cert),
        )
    uri = identity_uri(trust_domain, name)
    if role not in ROLES:
        raise PkiError(f"role {role!r} is not valid: expected one of {', '.join(ROLES)}")
    paths = {n: out_dir / n for n in (CLIENT_CERT, CLIENT_KEY, IDENTITY_KEY, CA_CERT, BUNDLE_JSON)}
    for path in paths.values():
        if path.exists():
            raise PkiError(f"{path}: already exists; choose an empty directory", path=str(path))
    ca_pem = _read(credentials.ca_cert)
    _ensure_dir(out_dir)
    cert = issue_client_cert(
        credentials.ca_cert,
        credentials.ca_key,
        uri=uri,
        common_name=name,
        cert_path=paths[CLIENT_CERT],
        key_path=paths[CLIENT_KEY],
        valid_days=valid_days,
        now=now,
    )
    identity = Ed25519PrivateKey.generate()
    kid = key_id(identity.public_key())
    _write_atomic(paths[IDENTITY_KEY], _key_pem(identity), KEY_MODE)
    _write_atomic(paths[CA_CERT], ca_pem, CERT_MODE)
    bundle = {
        "name": name,
        "role": role,
        "bus_address": bus_address,
        "trust_domain": trust_domain,
        "key_id": kid,
    }
    _write_atomic(paths[BUNDLE_JSON], (json.dumps(bundle, indent=2) + "\n").encode(), CERT_MODE)
    return EnrolmentBundle(
        dir=out_dir,
        name=name,
        role=role,
        public_key_raw=public_key_raw(identity),
        key_id=kid,
        cert_serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
    )
