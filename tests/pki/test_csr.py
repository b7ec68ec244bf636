"""Certificate requests and proofs of possession (amoskys.pki.csr), and when renewal is due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from pki_support import NOW, TD, sans_of

from amoskys.errors import PkiError
from amoskys.pki import csr as csrs
from amoskys.pki.identities import public_key_raw
from amoskys.pki.issuance import load_cert
from amoskys.pki.layout import ApplianceCredentials
from amoskys.pki.names import identity_uri
from amoskys.pki.renewal import renewal_due


def test_the_certificate_is_for_the_requests_key_and_the_name_given_not_the_requests(
    creds: ApplianceCredentials,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = csrs.make_csr(key, "admin")  # a subject asking for more than it gets

    cert = csrs.issue_for_csr(creds, request, uri=identity_uri(TD, "edge-1"), common_name="edge-1", now=NOW)

    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)
    assert sans_of(cert).get_values_for_type(x509.UniformResourceIdentifier) == [identity_uri(TD, "edge-1")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "edge-1"
    cert.verify_directly_issued_by(load_cert(creds.ca_cert))


def test_a_request_for_another_curve_or_garbage_is_refused(creds: ApplianceCredentials) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    other = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(p384, hashes.SHA256())
    for bad, match in [
        (other.public_bytes(serialization.Encoding.DER), "P-256"),
        (b"\x30\x03garbage", "not a DER"),
        (b"", "bytes"),
        (b"x" * 5000, "bytes"),
    ]:
        with pytest.raises(PkiError, match=match):
            csrs.issue_for_csr(creds, bad, uri=identity_uri(TD, "e"), common_name="e")


def test_a_proof_is_bound_to_its_key_its_request_and_its_purpose() -> None:
    identity = Ed25519PrivateKey.generate()
    request = csrs.make_csr(ec.generate_private_key(ec.SECP256R1()), "e")
    proof = csrs.prove(identity, csrs.ENROL_CONTEXT, request)
    raw = public_key_raw(identity)

    assert csrs.proof_valid(raw, csrs.ENROL_CONTEXT, request, proof)
    assert not csrs.proof_valid(raw, csrs.RENEW_CONTEXT, request, proof)
    assert not csrs.proof_valid(raw, csrs.ENROL_CONTEXT, request + b"x", proof)
    assert not csrs.proof_valid(
        public_key_raw(Ed25519PrivateKey.generate()), csrs.ENROL_CONTEXT, request, proof
    )
    assert not csrs.proof_valid(b"short", csrs.ENROL_CONTEXT, request, proof)


def test_renewal_is_due_when_a_third_of_the_life_is_left(creds: ApplianceCredentials) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = csrs.issue_for_csr(
        creds, csrs.make_csr(key, "e"), uri=identity_uri(TD, "e"), common_name="e", valid_days=90, now=NOW
    )
    third = (cert.not_valid_after_utc - cert.not_valid_before_utc) / 3

    assert not renewal_due(cert, NOW)
    assert not renewal_due(cert, cert.not_valid_after_utc - third - timedelta(seconds=1))
    assert renewal_due(cert, cert.not_valid_after_utc - third)
    assert renewal_due(cert, cert.not_valid_after_utc + timedelta(days=1))
