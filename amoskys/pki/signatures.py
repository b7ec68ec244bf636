"""The per-batch signature contract (DESIGN §3): what an agent signs and what the bus verifies.

This module is what a security reviewer audits for batch authenticity. It imports Ed25519 and
SHA-256 only (never ``cryptography.x509``; tests/pki/test_imports.py checks it), and the bus's
verification path imports nothing else from the PKI.

The signed message is, byte for byte::

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
"""

from __future__ import annotations

import functools
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

BATCH_CONTEXT = b"amoskys-batch-v1"
"""Domain separation tag at the start of every signed batch message."""

GENESIS_DIGEST = b""
"""``prev_digest`` of a sender's first batch (the protobuf default of an unset bytes field)."""

_U16 = struct.Struct(">H")


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
    return verified_digest(public_key_raw, key_id, prev_digest, events, signature) is not None


def verified_digest(
    public_key_raw: bytes, key_id: str, prev_digest: bytes, events: bytes, signature: bytes
) -> bytes | None:
    """The batch's ``batch_digest`` when `signature` is a valid signature of it by `public_key_raw`,
    else None (never raises, as `verify_batch`): the bus verifies and chains a batch hashing its
    events once."""
    if not isinstance(key_id, str):
        return None
    try:
        public = _public_key(bytes(public_key_raw))
        message = _batch_message(key_id, prev_digest, events)
        public.verify(bytes(signature), message)
    except (InvalidSignature, ValueError, TypeError):
        # ValueError: a malformed key, an over-long field, a key_id that is not UTF-8 encodable;
        # TypeError: an argument that is not bytes-like
        return None
    return hashlib.sha256(message).digest()
