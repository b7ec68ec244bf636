"""Pure pieces of the bus: quotas, fan-out, validation, chains, backoff."""

from __future__ import annotations

import random

from amoskys.bus.fanout import Fanout
from amoskys.bus.quota import TokenBuckets
from amoskys.bus.validate import check, parse_event
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2
from amoskys.retry import Backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refuses_a_noisy_source_but_not_a_quiet_one() -> None:
    clock = FakeClock()
    q = TokenBuckets(rate=100, burst=200, clock=clock)
    assert q.take("noisy", 200) == 0.0
    wait = q.take("noisy", 50)
    assert wait == 0.5  # 50 tokens at 100/s
    assert q.take("quiet", 10) == 0.0
    clock.now += 0.5
    assert q.take("noisy", 50) == 0.0


def test_token_bucket_lets_an_oversize_batch_through_on_a_full_bucket() -> None:
    q = TokenBuckets(rate=10, burst=20, clock=FakeClock())
    assert q.take("a", 500) == 0.0
    assert q.take("a", 1) > 0


async def test_slow_subscriber_drops_its_own_oldest_and_counts() -> None:
    drops: list[tuple[str, int]] = []
    fan: Fanout[int] = Fanout(on_drop=lambda name, n: drops.append((name, n)))
    slow = fan.subscribe("slow", maxlen=3)
    fast = fan.subscribe("fast", maxlen=100)
    fan.publish([1, 2, 3, 4, 5])
    assert await slow.get_many() == [3, 4, 5]
    assert slow.dropped == 2 and drops == [("slow", 2)]
    assert await fast.get_many() == [1, 2, 3, 4, 5]
    slow.close()
    fan.publish([6])
    assert await fast.get_many() == [6]


def _good() -> events_pb2.Envelope:
    env = events_pb2.Envelope(heartbeat=events_pb2.Heartbeat(version="1"))
    return EnvelopeStamper("agent-1").stamp(env)


def test_validation_names_each_reason() -> None:
    assert check(_good(), sender="agent-1") is None
    assert check(_good(), sender="agent-2") == "source_not_sender"
    assert check(_good(), sender=None) is None  # relay
    cases = {
        "missing_event_id": lambda e: e.ClearField("event_id"),
        "bad_event_id": lambda e: setattr(e, "event_id", "not-a-uuid"),
        "missing_source": lambda e: e.ClearField("source"),
        "missing_boot_id": lambda e: e.ClearField("boot_id"),
        "bad_source_seq": lambda e: e.ClearField("source_seq"),
        "missing_body": lambda e: e.ClearField("heartbeat"),
        "bad_ts": lambda e: setattr(e, "ts_ns", -5),
    }
    for reason, mutate in cases.items():
        env = _good()
        mutate(env)
        assert check(env, sender=None) == reason


def test_garbage_bytes_do_not_parse() -> None:
    assert parse_event(b"\xff\xff\xff") is None
    assert parse_event(_good().SerializeToString()) is not None


def test_backoff_grows_is_capped_and_honours_the_hint() -> None:
    b = Backoff(base_seconds=0.1, cap_seconds=1.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[5:]) > max(delays[:2])
    assert b.next_delay(hint_seconds=3.0) == 3.0
    b.reset()
    assert b.next_delay() <= 0.1
