"""Per-sender batch hash chains: where each signed batch stands in its sender's chain.

Every batch names the digest of the batch before it (``prev_digest``). The tracker keeps, per sender,
the recent digests it took and the successor each was given, and judges a new batch:

- ``replay``: its own digest was already taken (a re-sent batch; its events are duplicates);
- ``start``: it names the genesis value (empty ``prev_digest``): the publisher began a new chain — a
  fresh agent, or one restarted without its chain state. Counted and logged at info; no alert. Loss
  across such restarts shows in the (boot_id, source_seq) marks of the events, not in the chain;
- ``next``: its predecessor was taken and has no other successor (pipelined publishers may have
  several batches in flight, each naming the one before it);
- ``fork``: its predecessor already has a *different* accepted successor — two histories claim the
  same past. The bus stores it and raises an Alert; the sender is never locked out;
- ``unknown``: it names a predecessor the tracker has not seen, even after waiting up to
  ``wait_seconds`` for it (pipelined batches may be judged out of order). Counted and logged once
  per sender; the batch is taken.

The successor of a digest is recorded when the store takes the batch (``advance``): two batches
naming the same predecessor while both are still being judged are not told apart (a window of one
commit).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Literal

ChainVerdict = Literal["start", "next", "replay", "fork", "unknown"]

#: The ``prev_digest`` of a chain's first batch.
GENESIS = b""


class ChainTracker:
    """The recent chain of every sender, in memory (the last digest also persists as the anchor)."""

    def __init__(self, recent: int = 256, wait_seconds: float = 0.5) -> None:
        # sender → digest → the digest of its accepted successor (None: none yet), oldest first
        self._known: dict[str, OrderedDict[bytes, bytes | None]] = {}
        self._anchor: dict[str, bytes] = {}
        self._changed: dict[str, asyncio.Condition] = {}
        self._keep = recent
        self._wait = wait_seconds

    def anchor(self, sender: str) -> bytes | None:
        """The digest of the sender's last taken batch (None: nothing taken since start)."""
        return self._anchor.get(sender)

    def successor(self, sender: str, digest: bytes) -> bytes | None:
        """The accepted successor of one of the sender's recent digests."""
        known = self._known.get(sender)
        return None if known is None else known.get(digest)

    def _is_known(self, sender: str, digest: bytes) -> bool:
        return digest in self._known.get(sender, ())

    async def judge(self, sender: str, prev_digest: bytes, digest: bytes) -> ChainVerdict:
        if self._is_known(sender, digest):
            return "replay"
        if prev_digest == GENESIS:
            return "start"
        if not self._is_known(sender, prev_digest):
            cond = self._changed.setdefault(sender, asyncio.Condition())
            async with cond:
                try:
                    async with asyncio.timeout(self._wait):
                        await cond.wait_for(lambda: self._is_known(sender, prev_digest))
                except TimeoutError:
                    return "unknown"
            if self._is_known(sender, digest):
                return "replay"
        taken = self.successor(sender, prev_digest)
        return "fork" if taken is not None and taken != digest else "next"

    def advance(self, sender: str, digest: bytes, prev_digest: bytes = GENESIS) -> None:
        """Record that a batch was taken (call it when it is handed to the store)."""
        self._anchor[sender] = digest
        known = self._known.setdefault(sender, OrderedDict())
        if prev_digest in known and known[prev_digest] is None:
            known[prev_digest] = digest
        known.setdefault(digest, None)
        known.move_to_end(digest)
        while len(known) > self._keep:
            known.popitem(last=False)
        cond = self._changed.get(sender)
        if cond is not None:
            asyncio.get_running_loop().create_task(_notify(cond))


async def _notify(cond: asyncio.Condition) -> None:
    async with cond:
        cond.notify_all()
