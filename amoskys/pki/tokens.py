"""One-time enrolment tokens: their text form, the hash the appliance keeps, and CA fingerprints.

A token is ``amk1.<id>.<secret>.<ca>``: `id` names its row in the store (16 hex digits), `secret` is
32 random bytes and `ca` the SHA-256 of the appliance CA's DER, both base64url without padding. The
appliance keeps only SHA-256(secret) (the secret has 256 bits: a fast hash is enough) with the name,
role and expiry it was issued for; an endpoint checks `ca` against the CA the enrolment port presents
before it sends anything. The token is a secret until it is used; it is never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from amoskys.errors import PkiError

PREFIX = "amk1"
_TOKEN_RE = re.compile(r"amk1\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})")
_HEX_FP_RE = re.compile(r"[0-9a-f]{64}")
MAX_TTL_SECONDS = 7 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed enrolment token."""

    id: str
    secret: bytes
    ca_fingerprint: bytes  # SHA-256 of the CA certificate's DER

    def text(self) -> str:
        return f"{PREFIX}.{self.id}.{_b64(self.secret)}.{_b64(self.ca_fingerprint)}"


def new_token(ca_fingerprint: bytes) -> Token:
    """A fresh random token for the CA of `ca_fingerprint`."""
    return Token(secrets.token_hex(8), secrets.token_bytes(32), ca_fingerprint)


def secret_hash(secret: bytes) -> bytes:
    """What the appliance stores for a token's secret."""
    return hashlib.sha256(b"amoskys-enrol-token-v1" + secret).digest()


def parse_token(text: str) -> Token:
    """The token in `text`; PkiError (never quoting the text: it is a secret) when malformed."""
    match = _TOKEN_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise PkiError("enrolment token is malformed (expected amk1.<id>.<secret>.<ca>)")
    token_id, secret, fp = match.groups()
    return Token(token_id, _unb64(secret), _unb64(fp))


def ca_fingerprint(ca_pem: bytes) -> bytes:
    """SHA-256 of the DER of the CA certificate in `ca_pem`."""
    try:
        cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as err:
        raise PkiError("not a PEM X.509 certificate") from err
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def format_fingerprint(fp: bytes) -> str:
    """A fingerprint as operators compare it: 64 lowercase hex digits."""
    return fp.hex()


def parse_fingerprint(text: str) -> bytes:
    """A SHA-256 fingerprint from hex (any case, colons allowed, optional ``sha256:`` prefix)."""
    cleaned = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if not _HEX_FP_RE.fullmatch(cleaned):
        raise PkiError(f"CA fingerprint {text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return bytes.fromhex(cleaned)


def parse_ttl(text: str) -> int:
    """A token lifetime such as ``90s``, ``30m``, ``1h`` or ``2d`` (a bare number: seconds), in
    seconds; ValueError beyond 1 s .. 7 days."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if match is None:
        raise ValueError(f"expected a duration such as 30m, 1h or 2d, got {text!r}")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"expected a duration from 1s to 7d, got {text!r}")
    return seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise PkiError("enrolment token is malformed") from err
