"""Counter arithmetic: rates, 32-bit wraps, resets, agent restarts — never a spike."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amoskys.collectors.snmp.rates import Reading, agent_restarted, counter_rate, ticks_elapsed

C32 = 2**32


def test_rate_is_delta_over_the_uptime_of_the_same_responses() -> None:
    rate = counter_rate(Reading(1_000, 10_000, 64), Reading(61_000, 16_000, 64))
    assert rate.per_second == pytest.approx(1_000.0) and not rate.reset


def test_32bit_counter_that_wrapped_gives_the_modular_rate() -> None:
    before, after = Reading(C32 - 5_000, 100, 32), Reading(15_000, 1_100, 32)
    rate = counter_rate(before, after, max_per_second=125_000_000)
    assert rate.per_second == pytest.approx(2_000.0) and not rate.reset


def test_32bit_counter_that_went_back_by_more_than_half_the_range_is_a_reset_not_a_spike() -> None:
    rate = counter_rate(Reading(1_000_000_000, 100, 32), Reading(5_000, 1_100, 32))
    assert rate.per_second is None and rate.reset


def test_32bit_wrap_faster_than_the_line_allows_is_a_reset() -> None:
    # 10 Mbit/s interface: a "wrap" of 1.2 GB in 10 s would be ~960 Mbit/s
    rate = counter_rate(
        Reading(2_000_000_000, 0, 32), Reading(900_000_000, 1_000, 32), max_per_second=1_250_000
    )
    assert rate.per_second is None and rate.reset


def test_64bit_counter_that_went_back_is_a_reset() -> None:
    rate = counter_rate(Reading(2**64 - 10, 0, 64), Reading(10, 100, 64))
    assert rate.per_second is None and rate.reset


def test_counter_that_changed_width_is_a_reset() -> None:
    assert counter_rate(Reading(10, 0, 32), Reading(20, 100, 64)).reset


def test_no_elapsed_uptime_gives_no_rate_and_no_reset() -> None:
    rate = counter_rate(Reading(10, 500, 64), Reading(20, 500, 64))
    assert rate.per_second is None and not rate.reset


def test_uptime_ticks_wrap_at_2_to_the_32() -> None:
    assert ticks_elapsed(C32 - 100, 50) == 150
    rate = counter_rate(Reading(0, C32 - 100, 64), Reading(3_000, 200, 64))
    assert rate.per_second == pytest.approx(1_000.0)


def test_uptime_going_back_is_an_agent_restart() -> None:
    assert agent_restarted(prev_ticks=500_000, cur_ticks=1_000, wall_seconds=60)


def test_uptime_wrapping_at_2_to_the_32_is_not_a_restart() -> None:
    assert not agent_restarted(prev_ticks=C32 - 3_000, cur_ticks=3_000, wall_seconds=60)


def test_uptime_that_lost_time_against_our_clock_is_a_restart_in_between() -> None:
    # polled 10 min apart, but the agent's uptime grew by 1 min: it restarted and overtook the old uptime
    assert agent_restarted(prev_ticks=6_000, cur_ticks=12_000, wall_seconds=600)
    assert not agent_restarted(prev_ticks=6_000, cur_ticks=66_100, wall_seconds=600)


def test_uptime_that_keeps_pace_with_our_clock_is_no_restart() -> None:
    assert not agent_restarted(prev_ticks=100_000, cur_ticks=106_000, wall_seconds=60.4)


@given(
    start=st.integers(0, C32 - 1),
    per_second=st.integers(0, 100_000_000),
    seconds=st.integers(1, 40),
)
def test_any_real_32bit_wrap_at_line_rate_gives_the_true_rate(
    start: int, per_second: int, seconds: int
) -> None:
    end = (start + per_second * seconds) % C32
    rate = counter_rate(Reading(start, 0, 32), Reading(end, seconds * 100, 32), max_per_second=125_000_000)
    if per_second * seconds < 2**31:
        assert rate.per_second == pytest.approx(per_second) and not rate.reset


@given(prev=st.integers(0, 2**64 - 1), cur=st.integers(0, 2**64 - 1), width=st.sampled_from([32, 64]))
def test_a_rate_is_never_negative_nor_beyond_the_counter_range(prev: int, cur: int, width: int) -> None:
    prev, cur = prev % 2**width, cur % 2**width
    rate = counter_rate(Reading(prev, 0, width), Reading(cur, 100, width))
    assert rate.per_second is None or 0 <= rate.per_second <= 2**width  # float rounding near 2^64
    if cur < prev and rate.per_second is not None:  # a wrap: never more than half the range
        assert width == 32 and rate.per_second < 2**31
