"""sequence.py: exact loss counts from per-CPU sequence gaps, and which overrun explains them."""

from __future__ import annotations

from amoskys.collectors.process import parse
from amoskys.collectors.process.sequence import Loss, SequenceTracker


def exec_(cpu: int, seq: int, ts: int = 0) -> parse.Exec:
    return parse.Exec(cpu=cpu, seq=seq, ts_ns=ts or seq * 1000, pid=1, tgid=1)


def test_in_order_messages_lose_nothing_and_cpus_count_apart() -> None:
    t = SequenceTracker()
    for seq in range(5):
        t.check(exec_(0, seq))
        t.check(exec_(1, 100 + seq))
    assert t.take_losses() == []


def test_a_gap_is_counted_exactly_with_its_window() -> None:
    t = SequenceTracker()
    t.check(exec_(0, 7, ts=700))
    t.check(exec_(0, 11, ts=1100))  # 8, 9, 10 lost
    t.check(exec_(1, 3, ts=300))
    t.check(exec_(1, 5, ts=500))  # 4 lost
    assert t.take_losses() == [Loss(4, "sequence_gap", 300, 1100)]
    assert t.take_losses() == []


def test_an_overrun_explains_each_cpus_next_gap_and_every_gap_until_drained() -> None:
    t = SequenceTracker()
    t.check(exec_(0, 1))
    t.overrun()
    t.check(exec_(0, 5))  # congested: the overrun's
    t.check(exec_(0, 9))  # still congested (never drained): the overrun's too
    t.drained()
    t.check(exec_(1, 1))  # first message of cpu 1: no gap
    t.check(exec_(1, 4))  # cpu 1's first gap after the overrun: the overrun's
    t.check(exec_(1, 8))  # a later gap of cpu 1, after a drain: the kernel's
    losses = {loss.reason: loss.count for loss in t.take_losses()}
    assert losses == {"netlink_overrun": 3 + 3 + 2, "sequence_gap": 3}


def test_acks_count_only_when_they_continue_the_sequence_and_wraps_are_not_losses() -> None:
    t = SequenceTracker()
    t.check(exec_(0, 10))
    t.check(parse.Ack(cpu=0, seq=11, ack=5, err=0))  # a recent kernel: acks take a number
    t.check(exec_(0, 12))
    t.check(parse.Ack(cpu=0, seq=0, ack=5, err=0))  # an older kernel echoes the sender's seq
    t.check(exec_(0, 13))
    t.check(exec_(0, 2))  # the counter went back (not a loss we can size)
    t.check(exec_(0, 0xFFFFFFFF))
    t.check(exec_(0, 0))  # 32-bit wrap, in order
    assert t.take_losses() == []
