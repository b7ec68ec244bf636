"""amoskys.pki.identities: Ed25519 identity keys and their key ids."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.pki.identities import key_id, public_key_raw


def test_key_id_is_sixteen_hex_digits_of_sha256_of_the_raw_key() -> None:
    key = Ed25519PrivateKey.generate()
    kid = key_id(key.public_key())
    assert kid == hashlib.sha256(public_key_raw(key)).hexdigest()[:16]
    assert kid == key_id(key.public_key())
    assert kid != key_id(Ed25519PrivateKey.generate().public_key())
