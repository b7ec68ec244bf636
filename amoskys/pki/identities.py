"""Ed25519 identity keys: created, written (PKCS8 PEM, 0600) and read back, and their key ids.

An identity key signs batches (``amoskys.pki.signatures``); its ``key_id`` names it in every batch and in
the appliance's record of enrolled identities.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from amoskys.errors import PkiError
from amoskys.pki import _files


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


def load_private_key(path: Path) -> object:
    """The private key in PEM file `path`, of any type; PkiError naming the file otherwise."""
    try:
        return serialization.load_pem_private_key(_files.read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        # TypeError: the key is encrypted; the message never includes the key material
        raise PkiError(f"{path}: not an unencrypted PEM private key", path=str(path)) from err


def load_identity_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 identity key in PEM (PKCS8) file `path`; PkiError naming the file otherwise."""
    key = load_private_key(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise PkiError(f"{path}: expected an Ed25519 private key, found {type(key).__name__}", path=str(path))
    return key


def create_identity_key(path: Path) -> Ed25519PrivateKey:
    """Generate an Ed25519 identity key and write it to `path` (PKCS8 PEM, 0600, atomically)."""
    key = Ed25519PrivateKey.generate()
    _files.write(path, _files.key_pem(key), _files.KEY_MODE)
    return key
