"""Certificate requests: an endpoint's CSR and Ed25519 proof of its identity key, and the appliance
issuing a client certificate for the key a CSR carries.

The appliance takes nothing from a CSR but its public key (after checking the CSR's self-signature):
the name, role and validity come from the token or the current certificate, never from the request.
The Ed25519 identity key signs ``<context> || SHA-256(csr)``, so one proof cannot serve another
purpose (``amoskys-enrol-v1`` for a token enrolment, ``amoskys-renew-v1`` for a renewal).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amoskys.errors import PkiError
from amoskys.pki.issuance import LEAF_VALID_DAYS, _leaf, _load_ca, _now, _validity
from amoskys.pki.layout import ApplianceCredentials

ENROL_CONTEXT = b"amoskys-enrol-v1"
RENEW_CONTEXT = b"amoskys-renew-v1"
MAX_CSR_BYTES = 4096


def make_csr(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    """A DER PKCS#10 request for `key` (its subject names `name`; the appliance decides the name)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name or "amoskys-agent")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def prove(identity: Ed25519PrivateKey, context: bytes, csr_der: bytes) -> bytes:
    """The identity key's signature binding `csr_der` to `context`."""
    return identity.sign(context + hashlib.sha256(csr_der).digest())


def proof_valid(public_raw: bytes, context: bytes, csr_der: bytes, signature: bytes) -> bool:
    """Whether `signature` is the proof `prove` makes with the key `public_raw` (32 raw bytes)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(public_raw)
        key.verify(signature, context + hashlib.sha256(csr_der).digest())
    except (ValueError, InvalidSignature):
        return False
    return True


def csr_public_key(csr_der: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a well-formed, self-signed CSR; PkiError naming what is wrong."""
    if not csr_der or len(csr_der) > MAX_CSR_BYTES:
        raise PkiError(f"certificate request: expected 1..{MAX_CSR_BYTES} bytes of DER, got {len(csr_der)}")
    try:
        csr = x509.load_der_x509_csr(csr_der)
        signed = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, TypeError) as err:
        raise PkiError("certificate request: not a DER PKCS#10 request") from err
    if not signed:
        raise PkiError("certificate request: its signature does not verify")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PkiError("certificate request: expected an ECDSA P-256 key")
    return key


def issue_for_csr(
    credentials: ApplianceCredentials,
    csr_der: bytes,
    *,
    uri: str,
    common_name: str,
    valid_days: int = LEAF_VALID_DAYS,
    now: datetime | None = None,
) -> x509.Certificate:
    """A client certificate (URI SAN `uri`, clientAuth) from the appliance's CA for the key of
    `csr_der` (checked by `csr_public_key`). CPU and file reads: call it off the event loop."""
    public = csr_public_key(csr_der)
    issuer = _load_ca(credentials.ca_cert, credentials.ca_key)
    start, end = _validity(_now(now), valid_days, None, None)
    return _leaf(
        issuer,
        common_name=common_name,
        sans=[x509.UniformResourceIdentifier(uri)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        key=public,
        not_before=start,
        not_after=end,
    )
