"""Who is publishing: mTLS identity → enrolled, unrevoked identity → verified batch signature → chain.

Revocation is live: enrolled identities are re-read from the store at most `cache_seconds` after a
change made by another process (`amoskys agents revoke`), without a restart.
"""

from __future__ import annotations

import asyncio
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
    """Per-sender hash chains, tolerant of pipelined publishers.

    A batch continues the chain when its prev_digest is a digest this sender recently had taken
    (submitted to the store): the anchor, or one of the last `recent` ones. That lets a publisher keep
    several batches in flight, each chained to the one before it. A batch whose predecessor is still
    unknown waits up to `wait_seconds` for it (pipelined batches may be judged out of order) before it
    is called a fork. A batch whose own digest was already taken is a replay.
    """

    def __init__(self, recent: int = 256, wait_seconds: float = 0.5) -> None:
        self._anchor: dict[str, bytes] = {}
        self._known: dict[str, OrderedDict[bytes, None]] = {}
        self._changed: dict[str, asyncio.Condition] = {}
        self._keep = recent
        self._wait = wait_seconds

    def anchor(self, sender: str) -> bytes | None:
        return self._anchor.get(sender)

    def _is_known(self, sender: str, digest: bytes) -> bool:
        return digest in self._known.get(sender, ()) or digest == self._anchor.get(sender)

    async def judge(self, sender: str, prev_digest: bytes, digest: bytes) -> ChainVerdict:
        if self._is_known(sender, digest):
            return "replay"
        if sender not in self._anchor:
            return "first"
        if self._is_known(sender, prev_digest):
            return "next"
        cond = self._changed.setdefault(sender, asyncio.Condition())
        async with cond:
            try:
                async with asyncio.timeout(self._wait):
                    await cond.wait_for(lambda: self._is_known(sender, prev_digest))
            except TimeoutError:
                return "fork"
        return "replay" if self._is_known(sender, digest) else "next"

    def advance(self, sender: str, digest: bytes) -> None:
        """Record that a batch with this digest was taken (call it when it is handed to the store)."""
        self._anchor[sender] = digest
        known = self._known.setdefault(sender, OrderedDict())
        known[digest] = None
        while len(known) > self._keep:
            known.popitem(last=False)
        cond = self._changed.get(sender)
        if cond is not None:
            asyncio.get_running_loop().create_task(_notify(cond))


async def _notify(cond: asyncio.Condition) -> None:
    async with cond:
        cond.notify_all()
