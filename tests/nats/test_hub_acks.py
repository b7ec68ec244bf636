"""AckPlan (amoskys.sources.acks): an AckAll never covers a message that is not committed."""

from __future__ import annotations

from amoskys.sources.acks import AckPlan
from amoskys.sources.gaps import GapCounter


def test_the_ack_names_the_highest_committed_message() -> None:
    plan: AckPlan[str] = AckPlan()
    plan.bound(0)
    for seq in (1, 2, 3):
        plan.committed(seq, f"m{seq}")
    assert plan.target() == (3, "m3")
    plan.acked(3)
    assert plan.target() is None and plan.held == 0


def test_no_ack_reaches_a_nacked_message_until_it_is_committed() -> None:
    plan: AckPlan[str] = AckPlan()
    plan.bound(0)
    plan.committed(1, "m1")
    plan.naked(2)
    plan.committed(3, "m3")
    assert plan.target() == (1, "m1")  # below the NAKed one only
    plan.acked(1)
    assert plan.target() is None  # 3 waits: an AckAll for it would ack 2
    plan.committed(2, "m2'")  # redelivered and committed
    assert plan.target() == (3, "m3")


def test_a_terminated_message_holds_nothing_back() -> None:
    plan: AckPlan[str] = AckPlan()
    plan.bound(0)
    plan.naked(1)
    plan.terminated(1)
    plan.committed(2, "m2")
    assert plan.target() == (2, "m2")


def test_after_a_bind_with_unknown_pending_messages_nothing_is_acked_until_they_are_accounted_for() -> None:
    plan: AckPlan[str] = AckPlan()
    plan.bound(2)  # two messages delivered to a killed predecessor, never acked
    plan.committed(10, "m10")
    assert plan.blocked and plan.target() is None
    assert not plan.settle(3)  # the server: 3 pending; the plan knows 1
    plan.committed(4, "m4")  # a redelivered one
    plan.committed(5, "m5")  # and the other
    assert plan.settle(3)
    assert plan.target() == (10, "m10")


def test_a_dropped_connection_blocks_acks_until_the_counts_agree() -> None:
    plan: AckPlan[str] = AckPlan()
    plan.bound(0)
    plan.committed(1, "m1")
    plan.suspect()
    assert plan.target() is None
    assert plan.settle(1)
    assert plan.target() == (1, "m1")


def test_gaps_count_the_numbers_skipped_per_boot() -> None:
    gaps = GapCounter(max_boots=2)
    assert gaps.note("a", "b1", 5) == 0  # first seen: no baseline
    assert gaps.note("a", "b1", 6) == 0
    assert gaps.note("a", "b1", 9) == 2
    assert gaps.note("a", "b1", 7) == 0  # late: fills nothing back, counts nothing
    assert gaps.note("a", "b2", 1) == 0  # a new boot starts again
    assert gaps.note("c", "b1", 1) == 0
    assert gaps.note("a", "b1", 20) == 0  # forgotten (bounded): a new baseline
