"""Who is publishing: mTLS identity → enrolled, unrevoked identity → verified batch signature → chain.

Revocation is live: `amoskys agents revoke` records it in the store and then has the running
appliance re-read the identity at once (`refresh`, over the control socket); any other change to the
identities table is seen at most `cache_seconds` later, without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from amoskys.pki.names import peer_identity
from amoskys.pki.signatures import verified_digest
from amoskys.proto import bus_pb2


@dataclass(frozen=True, slots=True)
class Identity:
    """An enrolled publisher, as the bus needs it."""

    name: str
    role: Literal["agent", "relay", "loadgen"]
    public_key: bytes  # raw Ed25519, 32 bytes
    key_id: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class Denied:
    """The batch is refused as a whole; `reason` labels a metric (bounded)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Authorized:
    """The batch is the sender's: its identity, and the batch digest its signature covers (the chain
    link; computed with the verification, so the events are hashed once)."""

    identity: Identity
    digest: bytes


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
        # bumped by invalidate/refresh: a load that was in flight meanwhile may hold older data
        self._generation: dict[str, int] = {}

    @property
    def cache_seconds(self) -> float:
        return self._cache_seconds

    def invalidate(self, name: str | None = None) -> None:
        names = set(self._cache) | set(self._generation) if name is None else {name}
        for n in names:
            self._cache.pop(n, None)
            self._generation[n] = self._generation.get(n, 0) + 1

    async def identity(self, name: str) -> Identity | None:
        """The enrolled identity `name` (None when not enrolled), at most `cache_seconds` old."""
        hit = self._cache.get(name)
        if hit is not None and self._clock() - hit[0] < self._cache_seconds:
            return hit[1]
        while True:
            now = self._clock()
            generation = self._generation.get(name, 0)
            ident = await self._load(name)
            if self._generation.get(name, 0) == generation:
                self._cache[name] = (now, ident)
                return ident
            # refreshed while this load was in flight: its answer may predate a revocation

    async def refresh(self, name: str) -> Identity | None:
        """Re-read `name` from the store now; every later call sees the new state."""
        self.invalidate(name)
        return await self.identity(name)

    async def admit(self, auth_context: Mapping[str, Iterable[bytes]]) -> Identity | Denied:
        """The enrolled, unrevoked identity of a caller's certificate, or why it is refused."""
        peer = peer_identity(auth_context, self.trust_domain)
        if peer is None:
            return Denied("no_identity", "client certificate carries no identity of this trust domain")
        ident = await self.identity(peer)
        if ident is None:
            return Denied("not_enrolled", f"identity {peer!r} is not enrolled")
        if ident.revoked:
            return Denied("revoked", f"identity {peer!r} is revoked")
        return ident

    async def authorize(
        self, auth_context: Mapping[str, Iterable[bytes]], batch: bus_pb2.SignedBatch
    ) -> Authorized | Denied:
        """Check the peer certificate identity, enrolment, sender and signature of one batch."""
        verdict = await self.admit(auth_context)
        if isinstance(verdict, Denied):
            return verdict
        ident, peer = verdict, verdict.name
        if batch.sender != peer:
            return Denied(
                "sender_mismatch", f"sender {batch.sender!r} is not the certificate identity {peer!r}"
            )
        if batch.key_id != ident.key_id:
            return Denied("unknown_key", f"key_id {batch.key_id!r} is not the key enrolled for {peer!r}")
        digest = verified_digest(
            ident.public_key, batch.key_id, batch.prev_digest, batch.events, batch.signature
        )
        if digest is None:
            return Denied("bad_signature", "batch signature does not verify")
        return Authorized(ident, digest)
