"""Who is publishing: mTLS identity → enrolled, unrevoked identity → verified batch signature → chain.

Revocation is live: enrolled identities are re-read from the store at most `cache_seconds` after a
change made by another process (`amoskys agents revoke`), without a restart.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from amoskys import pki
from amoskys.proto import bus_pb2


@dataclass(frozen=True, slots=True)
class Identity:
    """An enrolled publisher, as the bus needs it."""

    name: str
    role: Literal["agent", "relay"]
    public_key: bytes  # raw Ed25519, 32 bytes
    key_id: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class Denied:
    """The batch is refused as a whole; `reason` labels a metric (bounded)."""

    reason: str
    message: str


IdentityLoader = Callable[[str], Awaitable[Identity | None]]

ChainVerdict = Literal["next", "first", "replay", "fork"]


class Authenticator:
    def __init__(
        self,
        trust_domain: str,
        load_identity: IdentityLoader,
        *,
        cache_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trust_domain = trust_domain
        self._load = load_identity
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)

    async def identity(self, name: str) -> Identity | None:
        now = self._clock()
        hit = self._cache.get(name)
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1]
        ident = await self._load(name)
        self._cache[name] = (now, ident)
        return ident

    async def authorize(
        self, auth_context: Mapping[str, Sequence[bytes]], batch: bus_pb2.SignedBatch
    ) -> Identity | Denied:
        """Check the peer certificate identity, enrolment, sender and signature of one batch."""
        peer = pki.peer_identity(auth_context, self.trust_domain)
        if peer is None:
            return Denied("no_identity", "client certificate carries no identity of this trust domain")
        ident = await self.identity(peer)
        if ident is None:
            return Denied("not_enrolled", f"identity {peer!r} is not enrolled")
        if ident.revoked:
            return Denied("revoked", f"identity {peer!r} is revoked")
        if batch.sender != peer:
            return Denied(
                "sender_mismatch", f"sender {batch.sender!r} is not the certificate identity {peer!r}"
            )
        if batch.key_id != ident.key_id:
            return Denied("unknown_key", f"key_id {batch.key_id!r} is not the key enrolled for {peer!r}")
        if not pki.verify_batch(
            ident.public_key, batch.key_id, batch.prev_digest, batch.events, batch.signature
        ):
            return Denied("bad_signature", "batch signature does not verify")
        return ident


class ChainTracker:
    """Per-sender hash chains: the digest of the last accepted batch, and recent ones to spot replays."""

    def __init__(self, anchors: Mapping[str, bytes] | None = None, recent: int = 64) -> None:
        self._anchor: dict[str, bytes] = dict(anchors or {})
        self._recent: dict[str, OrderedDict[bytes, None]] = {}
        self._keep = recent

    def anchor(self, sender: str) -> bytes | None:
        return self._anchor.get(sender)

    def judge(self, sender: str, prev_digest: bytes, digest: bytes) -> ChainVerdict:
        if digest in self._recent.get(sender, ()):
            return "replay"
        anchor = self._anchor.get(sender)
        if anchor is None:
            return "first"
        if digest == anchor:  # the last accepted batch again (its ack was lost)
            return "replay"
        return "next" if prev_digest == anchor else "fork"

    def advance(self, sender: str, digest: bytes) -> None:
        self._anchor[sender] = digest
        recent = self._recent.setdefault(sender, OrderedDict())
        recent[digest] = None
        while len(recent) > self._keep:
            recent.popitem(last=False)
