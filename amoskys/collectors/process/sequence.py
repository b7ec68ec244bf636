"""Loss accounting for the proc connector: gaps in the kernel's per-CPU sequence numbers.

The kernel numbers the messages it sends per CPU (``cn_msg.seq``); a message whose number is not
the previous one + 1 on its CPU follows lost ones, and the difference says exactly how many. Each
gap is put down to an overrun of our socket (``netlink_overrun``) when an ENOBUFS explains it, else
to the kernel (``sequence_gap``). Filtering event types in the subscription would consume numbers
too, which is why the collector subscribes to every type and skips the ones it does not use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from amoskys.collectors.process import parse

#: After an overrun, how long a CPU's first gap is still put down to it.
OVERRUN_ATTRIBUTION_SECONDS = 10.0

#: Records that carry a per-CPU sequence number and a kernel time (an Ack's is checked apart).
TIMED = frozenset({parse.Fork, parse.Exec, parse.Exit, parse.Other})


@dataclass(frozen=True, slots=True)
class Loss:
    """Messages lost before this point in the stream (a dataclass, not a NamedTuple: a tuple's
    ``count`` method would clash with the field)."""

    count: int
    reason: str  # netlink_overrun, sequence_gap
    start_mono_ns: int  # kernel time of the message before the gap (CLOCK_MONOTONIC)
    end_mono_ns: int  # ... and after it


class SequenceTracker:
    """Per-CPU last (seq, kernel time), and which gaps an overrun explains.

    ``last`` is public so that the reader's hot loop can take the in-order case inline and call
    ``check()`` only for the rest.
    """

    def __init__(self) -> None:
        self.last: dict[int, tuple[int, int]] = {}  # cpu → (seq, ts) of its last message
        # After an ENOBUFS, each CPU's next gap is that overrun's; until the kernel's queue was once
        # drained, every gap is (see ProcConnector.receive).
        self._overrun_mono = -1e9
        self._explained_cpus: set[int] = set()
        self._congested = False
        self._losses: dict[str, list[int]] = {}  # reason → [count, window start, window end]

    def overrun(self) -> None:
        """The socket reported ENOBUFS."""
        self._explained_cpus = set()
        self._overrun_mono = time.monotonic()
        self._congested = True

    def drained(self) -> None:
        """The socket was read empty: the kernel will report the next overrun again."""
        self._congested = False

    def check(self, record: parse.Record) -> None:
        """Note `record`'s place in its CPU's sequence; a gap before it is added to the losses."""
        if isinstance(record, parse.NetlinkError | parse.Overrun):
            return
        cpu, seq = record.cpu, record.seq
        ts = 0 if isinstance(record, parse.Ack) else record.ts_ns
        last = self.last.get(cpu)
        if isinstance(record, parse.Ack) and (last is None or seq != (last[0] + 1) & 0xFFFFFFFF):
            return  # an older kernel echoes the subscriber's seq in acks instead of counting
        self.last[cpu] = (seq, ts or (last[1] if last else 0))
        if last is None:
            return
        gap = (seq - last[0] - 1) & 0xFFFFFFFF
        if gap == 0 or gap >= 1 << 31:  # in order, or the counter went back (not a loss we can size)
            return
        recent = time.monotonic() - self._overrun_mono < OVERRUN_ATTRIBUTION_SECONDS
        overrun = self._congested or (recent and cpu not in self._explained_cpus)
        self._explained_cpus.add(cpu)
        self._add("netlink_overrun" if overrun else "sequence_gap", gap, last[1], ts or last[1])

    def _add(self, reason: str, count: int, start: int, end: int) -> None:
        total = self._losses.get(reason)
        if total is None:
            self._losses[reason] = [count, start, end]
        else:
            total[0] += count
            total[1] = min(total[1], start)
            total[2] = max(total[2], end)

    def take_losses(self) -> list[Loss]:
        """The losses found since the last call, one per reason."""
        if not self._losses:
            return []
        losses = [Loss(count, reason, start, end) for reason, (count, start, end) in self._losses.items()]
        self._losses = {}
        return losses
