"""Which message the hub may acknowledge with AckAll, so that no message it has not committed is acked.

The hub's durable consumer acks with AckAll: acking stream sequence S acks every message of the
consumer pending at or below S. That is safe only when every such message is committed, so `AckPlan`
tracks what can be pending below a candidate:

- messages this hub NAKed (the store said RETRY) and has not committed since: no ack may reach them;
- messages delivered before the hub (re)bound its subscription — to a process that was killed, or to
  an inbox that is gone — or while its connection dropped, and not acked: their sequences are unknown. While the consumer says any are
  pending (`num_ack_pending` at bind time), the plan acks nothing; the server redelivers them after
  the ack wait, the hub commits them (the store drops the duplicates), and once the consumer's
  pending count equals what the hub itself holds (`settle`), none is unknown any more.

Committed messages wait in the plan until an ack may name them; the ack names the highest committed
one below every NAKed one.
"""

from __future__ import annotations

from typing import Generic, TypeVar

M = TypeVar("M")


class AckPlan(Generic[M]):
    """The committed-but-unacked messages (by stream sequence), the NAKed ones, and whether unknown
    pending messages may exist."""

    def __init__(self) -> None:
        self._held: dict[int, M] = {}  # committed, not acked yet
        self._naked: set[int] = set()  # NAKed, not committed since
        self._unknown = False  # messages delivered before the bind may still be pending

    def bound(self, num_ack_pending: int) -> None:
        """A (new) subscription was bound; the consumer had `num_ack_pending` messages delivered and
        not acked. Whatever this plan held belongs to the old binding: forgotten (it is redelivered)."""
        self._held.clear()
        self._naked.clear()
        self._unknown = num_ack_pending > 0

    def suspect(self) -> None:
        """Deliveries or acks may have been lost (the connection dropped): until the consumer's count
        says otherwise (`settle`), messages unknown to this plan may be pending."""
        self._unknown = True

    @property
    def blocked(self) -> bool:
        """Whether acks wait for unknown pending messages to come back."""
        return self._unknown

    def settle(self, num_ack_pending: int) -> bool:
        """The consumer now has `num_ack_pending` unacked messages: when that is no more than what this
        plan knows of (held and NAKed), none is unknown. Returns whether acks are unblocked."""
        if self._unknown and num_ack_pending <= len(self._held) + len(self._naked):
            self._unknown = False
        return not self._unknown

    def committed(self, seq: int, message: M) -> None:
        """Message `seq` is committed (or was a duplicate of a committed one)."""
        self._naked.discard(seq)
        self._held[seq] = message

    def terminated(self, seq: int) -> None:
        """Message `seq` was terminated (refused for good): nothing waits for it."""
        self._naked.discard(seq)
        self._held.pop(seq, None)

    def naked(self, seq: int) -> None:
        """Message `seq` was NAKed: it comes back later, and no ack may cover it until then."""
        self._naked.add(seq)
        self._held.pop(seq, None)

    def target(self) -> tuple[int, M] | None:
        """The message to ack now (its sequence and itself): the highest committed one below every
        NAKed one; None when there is none, or while unknown messages may be pending."""
        if self._unknown or not self._held:
            return None
        floor = min(self._naked, default=None)
        best = max((s for s in self._held if floor is None or s < floor), default=None)
        return None if best is None else (best, self._held[best])

    def acked(self, seq: int) -> None:
        """An AckAll for `seq` was sent: every held message at or below it is acked."""
        for s in [s for s in self._held if s <= seq]:
            del self._held[s]

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def outstanding_naks(self) -> int:
        return len(self._naked)
