"""amoskys.pki.signatures: the per-batch signature contract, byte for byte."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from amoskys.pki import identities
from amoskys.pki.signatures import GENESIS_DIGEST, batch_digest, sign_batch, verified_digest, verify_batch


@dataclass
class Batch:
    key: Ed25519PrivateKey
    raw: bytes
    key_id: str
    prev: bytes
    events: bytes
    sig: bytes


@pytest.fixture
def batch() -> Batch:
    key = Ed25519PrivateKey.generate()
    kid = identities.key_id(key.public_key())
    prev = hashlib.sha256(b"previous").digest()
    events = b"\x0a\x05hello" * 50
    return Batch(key, identities.public_key_raw(key), kid, prev, events, sign_batch(key, kid, prev, events))


def test_a_signed_batch_verifies(batch: Batch) -> None:
    assert len(batch.sig) == 64
    assert verify_batch(batch.raw, batch.key_id, batch.prev, batch.events, batch.sig)
    first = sign_batch(batch.key, batch.key_id, GENESIS_DIGEST, batch.events)
    assert verify_batch(batch.raw, batch.key_id, b"", batch.events, first)
    assert verify_batch(bytearray(batch.raw), batch.key_id, batch.prev, memoryview(batch.events), batch.sig)


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("field", ["events", "prev_digest", "key_id", "signature", "public_key"])
@pytest.mark.parametrize("where", [0, -1])
def test_a_flipped_bit_anywhere_fails_verification(batch: Batch, field: str, where: int) -> None:
    args = {
        "public_key_raw": batch.raw,
        "key_id": batch.key_id,
        "prev_digest": batch.prev,
        "events": batch.events,
        "signature": batch.sig,
    }
    if field == "key_id":
        args["key_id"] = flip(batch.key_id.encode(), where % len(batch.key_id)).decode()
    elif field == "public_key":
        args["public_key_raw"] = flip(batch.raw, where % len(batch.raw))
    else:
        name = {"events": "events", "prev_digest": "prev_digest", "signature": "signature"}[field]
        value = args[name]
        assert isinstance(value, bytes)
        args[name] = flip(value, where % len(value))

    assert verify_batch(**args) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"signature": b""},
        {"signature": b"\x00" * 63},
        {"signature": b"\x00" * 65},
        {"public_key_raw": b""},
        {"public_key_raw": b"\x00" * 31},
        {"prev_digest": b"\x00" * 70000},
        {"key_id": "k" * 70000},
        {"key_id": "\udcff"},
        {"signature": None},
        {"events": None},
        {"key_id": None},
        {"prev_digest": None},
    ],
)
def test_malformed_input_returns_false_without_raising(batch: Batch, bad: dict[str, object]) -> None:
    args: dict[str, object] = {
        "public_key_raw": batch.raw,
        "key_id": batch.key_id,
        "prev_digest": batch.prev,
        "events": batch.events,
        "signature": batch.sig,
    }
    args.update(bad)
    assert verify_batch(**args) is False  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=40),
    key_id=st.text(max_size=40),
    prev=st.binary(max_size=40),
    events=st.binary(max_size=200),
    sig=st.binary(max_size=80),
)
def test_arbitrary_input_never_raises_and_never_verifies(
    raw: bytes, key_id: str, prev: bytes, events: bytes, sig: bytes
) -> None:
    assert verify_batch(raw, key_id, prev, events, sig) is False


def test_the_truncated_signature_of_a_real_batch_returns_false(batch: Batch) -> None:
    for length in (0, 1, 32, 63):
        assert verify_batch(batch.raw, batch.key_id, batch.prev, batch.events, batch.sig[:length]) is False


def test_batch_digest_follows_the_documented_byte_layout() -> None:
    events = b"serialized EventList"
    expected = hashlib.sha256(
        b"amoskys-batch-v1" + b"\x00\x02ab" + b"\x00\x03xyz" + hashlib.sha256(events).digest()
    ).digest()
    assert batch_digest("ab", b"xyz", events) == expected
    # length prefixes make the split between key_id and prev_digest unambiguous
    assert batch_digest("a", b"bxyz", events) != expected
    assert batch_digest("ab", b"", events) != batch_digest("a", b"", events)


def test_a_signature_is_bound_to_its_place_in_the_chain(batch: Batch) -> None:
    digest = batch_digest(batch.key_id, batch.prev, batch.events)
    second = sign_batch(batch.key, batch.key_id, digest, batch.events)

    assert verify_batch(batch.raw, batch.key_id, digest, batch.events, second)
    assert not verify_batch(batch.raw, batch.key_id, batch.prev, batch.events, second)
    assert batch_digest(batch.key_id, digest, batch.events) != digest


def test_the_verified_digest_is_the_batch_digest_and_only_for_a_good_signature(batch: Batch) -> None:
    good = verified_digest(batch.raw, batch.key_id, batch.prev, batch.events, batch.sig)
    assert good == batch_digest(batch.key_id, batch.prev, batch.events)
    assert verified_digest(batch.raw, batch.key_id, batch.prev, batch.events + b"x", batch.sig) is None
    assert verified_digest(batch.raw, batch.key_id, b"other", batch.events, batch.sig) is None
