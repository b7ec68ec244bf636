"""The chart endpoints (/api/v1/series/*): each one's values are the stored series points of a known set
of events as rates per second (the current bucket's over the seconds it has run), and a range beyond the
minute points' retention reads the quarter-hour points. The clock is mocked; the store is real."""

from __future__ import annotations

import time
from typing import Any

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record

from web_harness import VIEWER_PASSWORD, Web

NS = 1_000_000_000
MIN = 60 * NS


def _rec(stamper: EnvelopeStamper, ts_ns: int, **body: Any) -> Record:
    return Record.from_envelope(stamper.stamp(ev.Envelope(**body), ts_ns=ts_ns))


def _exec(kind: int = ev.ProcessEvent.EXEC) -> dict[str, Any]:
    return {"process": ev.ProcessEvent(kind=kind, pid=10, ppid=1, exe="/bin/true")}


def _flow() -> dict[str, Any]:
    return {
        "flow": ev.FlowRecord(
            src_addr="10.0.0.1",
            dst_addr="198.51.100.7",
            src_port=40000,
            dst_port=443,
            protocol=6,
            forward=ev.FlowDirection(packets=2, octets=1000),
            reverse=ev.FlowDirection(packets=3, octets=4000),
        )
    }


def _host(cpu: float, used: int) -> dict[str, Any]:
    return {"host": ev.HostMetrics(cpu_percent=cpu, memory_used_bytes=used, memory_total_bytes=8 << 30)}


def _snmp(in_bps: float | None, out_bps: float | None) -> dict[str, Any]:
    iface = ev.SnmpInterface(if_index=1, name="ge-0/0/1", speed_bps=100_000_000)
    if in_bps is not None and out_bps is not None:
        iface.in_bps, iface.out_bps = in_bps, out_bps
    return {"snmp": ev.SnmpSample(target="sw1", address="192.0.2.1", reachable=True, interfaces=[iface])}


def _by_name(answer: dict[str, Any]) -> dict[str, dict[int, float]]:
    return {s["name"]: {t: v for t, v in s["points"]} for s in answer["series"]}


async def test_each_series_endpoint_answers_the_stored_points_as_rates(web: Web) -> None:
    q0 = (time.time_ns() - 3 * 3600 * NS) // (15 * MIN) * (15 * MIN)  # a quarter start, in the past
    a = q0 + 2 * MIN  # a whole minute with the known events
    cur = q0 + 30 * MIN  # the minute the (mocked) clock is in, 30 s into it
    web.ctx.clock_ns = lambda: cur + 30 * NS
    s = EnvelopeStamper("sensor")
    records = [
        *(_rec(s, a + i * NS, **_exec()) for i in range(3)),
        _rec(s, a + 4 * NS, **_exec(ev.ProcessEvent.EXIT)),
        _rec(s, a + 5 * NS, **_flow()),
        _rec(s, a + 6 * NS, **_flow()),
        _rec(s, a + 7 * NS, **_host(20.0, 1 << 30)),
        _rec(s, a + 8 * NS, **_host(40.0, 3 << 30)),
        _rec(s, a + 9 * NS, **_snmp(1e6, 2e6)),
        _rec(s, a + 10 * NS, **_snmp(3e6, 4e6)),
        _rec(s, cur + NS, **_exec()),  # in the current minute: over its 30 s so far
    ]
    await web.ctx.store.submit(records)
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    t, now_t = a // NS, cur // NS

    r = (await c.get("/api/v1/series/events", params={"range": "1h"})).json()
    assert (r["range"], r["step_seconds"], r["unit"], r["fill"]) == ("1h", 60, "events/s", "zero")
    assert r["end"] == now_t + 60 and r["start"] == r["end"] - 3600
    stored = await web.ctx.reads.rows(
        "SELECT bucket_ns, kind, SUM(events) FROM series_events WHERE step = 60 AND bucket_ns >= ? "
        "AND bucket_ns < ? GROUP BY bucket_ns, kind",
        (r["start"] * NS, r["end"] * NS),
    )
    expected: dict[str, dict[int, float]] = {}
    for bucket, kind, n in stored:
        seconds = 30 if bucket == cur else 60
        expected.setdefault(kind, {})[bucket // NS] = round(n / seconds, 3)
    assert _by_name(r) == expected
    assert expected["process"] == {t: round(4 / 60, 3), now_t: round(1 / 30, 3)}
    assert expected["flow"] == {t: round(2 / 60, 3)} and expected["snmp"] == {t: round(2 / 60, 3)}

    r = (await c.get("/api/v1/series/execs", params={"range": "15m"})).json()
    assert r["step_seconds"] == 60 and r["start"] == now_t - 14 * 60  # 15 minutes, the current one last
    assert _by_name(r) == {"execs": {now_t: round(1 / 30, 3)}, "exits": {now_t: 0.0}}
    r = (await c.get("/api/v1/series/execs", params={"range": "1h", "source": "sensor"})).json()
    assert _by_name(r) == {
        "execs": {t: round(3 / 60, 3), now_t: round(1 / 30, 3)},
        "exits": {t: round(1 / 60, 3), now_t: 0.0},
    }
    assert _by_name((await c.get("/api/v1/series/execs", params={"source": "other"})).json()) == {
        "execs": {},
        "exits": {},
    }

    # 10.0.0.1 is the site's: it received the reverse octets and sent the forward ones, twice
    r = (await c.get("/api/v1/series/bandwidth", params={"range": "1h"})).json()
    assert r["unit"] == "bit/s"
    assert _by_name(r) == {"in": {t: round(2 * 4000 * 8 / 60, 3)}, "out": {t: round(2 * 1000 * 8 / 60, 3)}}
    r = (await c.get("/api/v1/series/bandwidth", params={"address": "198.51.100.7"})).json()
    assert _by_name(r) == {"in": {t: round(2 * 1000 * 8 / 60, 3)}, "out": {t: round(2 * 4000 * 8 / 60, 3)}}

    r = (await c.get("/api/v1/series/host", params={"range": "1h"})).json()
    assert (r["unit"], r["fill"]) == ("%", "gap")
    assert _by_name(r) == {"sensor": {t: 30.0}}
    assert {m["name"]: dict(m["points"]) for m in r["memory"]["series"]} == {"sensor": {t: 2 << 30}}
    assert r["memory_total_bytes"] == {"sensor": 8 << 30}

    r = (await c.get("/api/v1/series/snmp", params={"target": "sw1", "if_index": 1})).json()
    assert (r["speed_bps"], r["name"], r["polls_needed"]) == (100_000_000, "ge-0/0/1", False)
    assert _by_name(r) == {"in": {t: 2e6}, "out": {t: 3e6}}
    assert _by_name(r["utilisation"]) == {"in": {t: 2.0}, "out": {t: 3.0}}


async def test_an_interface_polled_once_says_it_waits_for_the_second_poll(web: Web) -> None:
    now = time.time_ns()
    await web.ctx.store.submit([_rec(EnvelopeStamper("sensor"), now - NS, **_snmp(None, None))])
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    r = (await c.get("/api/v1/series/snmp", params={"target": "sw1", "if_index": 1})).json()
    assert r["polls_needed"] is True and _by_name(r) == {"in": {}, "out": {}}
    page = await c.get("/snmp", params={"target": "sw1", "if_index": 1})
    assert page.status_code == 200 and "waiting for the second poll" in page.text


async def test_a_range_beyond_the_minute_retention_reads_quarter_points(web: Web) -> None:
    now = time.time_ns()
    web.ctx.clock_ns = lambda: now
    old = (now - 3 * 86400 * NS) // (15 * MIN) * (15 * MIN) + 2 * MIN  # three days back: past 48 h
    recent = now - 10 * MIN
    s = EnvelopeStamper("sensor")
    await web.ctx.store.submit(
        [*(_rec(s, old + i * NS, **_exec()) for i in range(4)), _rec(s, recent, **_exec())]
    )
    c, _ = await web.login("viewer", VIEWER_PASSWORD)
    week = (await c.get("/api/v1/series/execs", params={"range": "7d"})).json()
    assert week["step_seconds"] == 900 and week["end"] - week["start"] == 7 * 86400
    quarter_old, quarter_recent = old // NS // 900 * 900, recent // NS // 900 * 900
    current = now // NS // 900 * 900
    elapsed = max(1.0, (now - current * NS) / NS)
    execs = _by_name(week)["execs"]
    assert execs[quarter_old] == round(4 / 900, 3)
    assert execs[quarter_recent] == round(1 / (elapsed if quarter_recent == current else 900), 3)
    stored = await web.ctx.reads.rows(
        "SELECT bucket_ns / 1000000000, execs FROM series_process WHERE step = 900 ORDER BY bucket_ns"
    )
    assert [b for b, _ in stored] == sorted(execs)  # every quarter point stored, and only those
    day = (await c.get("/api/v1/series/execs", params={"range": "24h"})).json()
    assert day["step_seconds"] == 60 and quarter_old not in _by_name(day)["execs"]
    bad = await c.get("/api/v1/series/execs", params={"range": "2d"})
    assert bad.status_code == 400 and "range" in bad.json()["error"]
