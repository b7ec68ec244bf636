"""Enrolment tokens as text, and what the appliance keeps of them (amoskys.pki.tokens)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from pki_support import ensure

from amoskys.errors import PkiError
from amoskys.pki.issuance import load_cert
from amoskys.pki.tokens import (
    ca_fingerprint,
    new_token,
    parse_fingerprint,
    parse_token,
    parse_ttl,
    secret_hash,
)


def test_a_token_survives_its_text_form() -> None:
    token = new_token(bytes(range(32)))

    assert parse_token(token.text()) == token
    assert parse_token(f"  {token.text()}\n") == token


@pytest.mark.parametrize(
    "text", ["", "amk1.0123", "amk2.0123456789abcdef.x.y", "amk1.0123456789ABCDEF.secretpart.capart"]
)
def test_a_malformed_token_is_refused_without_quoting_it(text: str) -> None:
    with pytest.raises(PkiError) as refused:
        parse_token(text)
    assert not text or text not in str(refused.value)


def test_a_token_with_one_character_more_is_refused() -> None:
    with pytest.raises(PkiError):
        parse_token(new_token(bytes(32)).text() + "A")


def test_the_stored_hash_is_not_the_secret_and_differs_per_token() -> None:
    a, b = new_token(bytes(32)), new_token(bytes(32))

    assert a.id != b.id and a.secret != b.secret
    assert secret_hash(a.secret) != secret_hash(b.secret)
    assert a.secret not in secret_hash(a.secret)


def test_the_ca_fingerprint_is_sha256_of_its_der(tmp_path) -> None:  # type: ignore[no-untyped-def]
    creds = ensure(tmp_path / "pki")
    der = load_cert(creds.ca_cert).public_bytes(serialization.Encoding.DER)

    fp = ca_fingerprint(creds.ca_cert.read_bytes())

    assert fp == hashlib.sha256(der).digest()
    assert parse_fingerprint(fp.hex().upper()) == fp
    assert parse_fingerprint("sha256:" + ":".join(f"{b:02x}" for b in fp)) == fp


@pytest.mark.parametrize("text", ["ab" * 31, "zz" * 32, ""])
def test_a_fingerprint_of_the_wrong_shape_is_refused(text: str) -> None:
    with pytest.raises(PkiError, match="SHA-256"):
        parse_fingerprint(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("7d", 604800)]
)
def test_ttls(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0", "8d", "1w", "-1h", "h"])
def test_ttls_out_of_range_or_unknown_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)
