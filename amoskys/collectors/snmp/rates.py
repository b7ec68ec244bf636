"""Counter arithmetic, pure: rates from two readings, 32-bit wrap versus counter reset, agent restarts.

A rate is ``((c2 − c1) mod 2^width) / (t2 − t1)`` with t the sysUpTime returned in the *same* response
as the counter (shared/reference/snmp.md). When that cannot be trusted the answer is "no rate" and,
where a counter series really broke, a reset mark — never a spike:

- the agent restarted (sysUpTime went back, or lost time against our clock): every counter reset;
- ifCounterDiscontinuityTime changed, or the counter changed width (32 ↔ 64 bit): that counter reset;
- a 64-bit counter went back: a reset (a real wrap takes decades);
- a 32-bit counter went back: a wrap when the wrapped delta is under half the range and, for octets on
  an interface of known speed, within 1.5× line rate; otherwise a reset.
"""

from __future__ import annotations

from dataclasses import dataclass

TICKS_PER_SECOND = 100
TIMETICKS_MODULUS = 2**32
SPEED_SLACK = 1.5  # a wrap implying more than this times the line rate is taken for a reset


@dataclass(frozen=True, slots=True)
class Reading:
    """One counter value and the sysUpTime (ticks) of the response that carried it."""

    value: int
    ticks: int
    width: int  # 32 or 64


@dataclass(frozen=True, slots=True)
class Rate:
    """The outcome for one counter: a per-second rate, or none (and whether the series reset)."""

    per_second: float | None
    reset: bool = False


NO_RATE = Rate(None)
RESET = Rate(None, reset=True)


def ticks_elapsed(prev_ticks: int, cur_ticks: int) -> int:
    """TimeTicks between two sysUpTime values, across the 2^32 wrap (~497 days)."""
    return (cur_ticks - prev_ticks) % TIMETICKS_MODULUS


def agent_restarted(prev_ticks: int, cur_ticks: int, wall_seconds: float) -> bool:
    """Whether the agent restarted between two polls `wall_seconds` apart (on our monotonic clock).

    sysUpTime going back is a restart unless it is the 2^32 wrap (then the wrapped delta matches our
    clock). sysUpTime that advanced by much less than our clock also means a restart in between (the
    new uptime merely overtook the old one). The tolerance (5 s + 20%) absorbs response latency and
    agent clock drift.
    """
    if wall_seconds <= 0:
        return cur_ticks < prev_ticks
    tolerance = 5.0 + 0.2 * wall_seconds
    elapsed = ticks_elapsed(prev_ticks, cur_ticks) / TICKS_PER_SECOND
    if cur_ticks < prev_ticks:
        return abs(elapsed - wall_seconds) > tolerance
    return elapsed + tolerance < wall_seconds


def counter_rate(prev: Reading, cur: Reading, *, max_per_second: float | None = None) -> Rate:
    """The per-second rate of one counter between two readings (see the module docstring).

    `max_per_second` bounds a 32-bit wrap's plausible rate (line rate in octets/s); None: unknown.
    """
    if prev.width != cur.width:
        return RESET
    seconds = ticks_elapsed(prev.ticks, cur.ticks) / TICKS_PER_SECOND
    if cur.value >= prev.value:
        if seconds <= 0:
            return NO_RATE
        return Rate((cur.value - prev.value) / seconds)
    if cur.width >= 64 or seconds <= 0:
        return RESET
    delta = (cur.value - prev.value) % (1 << cur.width)
    if delta >= 1 << (cur.width - 1):
        return RESET
    per_second = delta / seconds
    if max_per_second is not None and per_second > max_per_second * SPEED_SLACK:
        return RESET
    return Rate(per_second)
