"""Series routes: the dashboard's charts as JSON, one endpoint per chart, over a picked range.

Every answer has the same shape: the range, the step of its points (60 s while the range fits in the
minute points' retention, `[store] series_minute_hours`; beyond, 900 s quarter points), the window
(`start`, `end`, seconds since the epoch), the unit, how a missing point reads (`fill`: "zero" for
counts — no event is a rate of 0 —, "gap" for samples — no sample is no value), and `series`: each a
name and its points `[t, value]` (t: the bucket's start, seconds since the epoch, oldest first).
Counts become rates per second over the bucket; the current bucket's over the seconds it has run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgspec

from amoskys.store.queries import charts
from amoskys.store.queries.charts import Window
from amoskys.store.series import MINUTE_S, QUARTER_S
from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.common import Synthetic

router = Router("series")

Range = Literal["15m", "1h", "24h", "7d"]
#: the ranges a chart offers, in seconds
RANGES: dict[str, int] = {"15m": 900, "1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
_NS = 1_000_000_000

RangeParam = Annotated[
    Range,
    msgspec.Meta(
        description="how far back: 15m, 1h, 24h (minute points) or 7d (quarter-hour points beyond the "
        "minute points' retention)"
    ),
]


class EventsQuery(msgspec.Struct, frozen=True):
    range: RangeParam = "1h"
    synthetic: Synthetic = False


class BandwidthQuery(msgspec.Struct, frozen=True):
    range: RangeParam = "1h"
    address: Annotated[
        str | None, msgspec.Meta(description="one address's in/out instead of the site's addresses'")
    ] = None


class SourceQuery(msgspec.Struct, frozen=True):
    range: RangeParam = "1h"
    source: Annotated[
        str | None, msgspec.Meta(description="only this source (the appliance or an agent)")
    ] = None


class SnmpQuery(msgspec.Struct, frozen=True):
    target: Annotated[str, msgspec.Meta(min_length=1, description="the SNMP target's name")]
    if_index: Annotated[int, msgspec.Meta(ge=0, description="the interface's ifIndex")]
    range: RangeParam = "1h"


def window_of(call: Call, range_: str) -> Window:
    """The window of `range_` ending now, in minute points when the minute points still hold all of it."""
    seconds = RANGES[range_]
    step = MINUTE_S if seconds <= call.ctx.config.store.series_minute_hours * 3600 else QUARTER_S
    return Window.ending_at(call.ctx.clock_ns(), seconds, step)


class _Rates:
    """Counts per bucket as rates per second: a whole bucket over its step, the current one over the
    seconds it has run (at least one)."""

    def __init__(self, w: Window, now_ns: int) -> None:
        self.step = w.step
        self.current = w.end_ns - w.step * _NS
        self.elapsed = max(1.0, (now_ns - self.current) / _NS)

    def __call__(self, bucket_ns: int, count: float, scale: float = 1.0) -> float:
        seconds = self.elapsed if bucket_ns >= self.current else self.step
        return round(count * scale / seconds, 3)


def _answer(
    range_: str, w: Window, unit: str, fill: str, series: Iterable[tuple[str, list[list[float]]]]
) -> dict[str, Any]:
    return {
        "range": range_,
        "step_seconds": w.step,
        "start": w.first_ns // _NS,
        "end": w.end_ns // _NS,
        "unit": unit,
        "fill": fill,
        "series": [{"name": name, "points": points} for name, points in series],
    }


@router.get(
    "/api/v1/series/events",
    "Committed events per second by kind over a range (synthetic events left out by default)",
)
async def events(call: Call, *, query: EventsQuery) -> Any:
    w = window_of(call, query.range)
    rate = _Rates(w, call.ctx.clock_ns())
    kinds: dict[str, list[list[float]]] = {}
    for bucket, kind, n in await charts.events_by_kind(call.ctx.reads, w, synthetic=query.synthetic):
        kinds.setdefault(kind, []).append([bucket // _NS, rate(bucket, n)])
    return _answer(query.range, w, "events/s", "zero", sorted(kinds.items()))


@router.get(
    "/api/v1/series/bandwidth",
    "Flow traffic in and out in bit/s over a range: received and sent by the site's addresses "
    "(private, link-local, unique-local; traffic between two of them counts both ways), or by `address`",
)
async def bandwidth(call: Call, *, query: BandwidthQuery) -> Any:
    w = window_of(call, query.range)
    rate = _Rates(w, call.ctx.clock_ns())
    rows = await charts.bandwidth(call.ctx.reads, w, address=query.address)
    ins = [[b // _NS, rate(b, i, 8)] for b, i, _ in rows]
    outs = [[b // _NS, rate(b, o, 8)] for b, _, o in rows]
    return _answer(query.range, w, "bit/s", "zero", (("in", ins), ("out", outs))) | {"address": query.address}


@router.get(
    "/api/v1/series/execs", "Process execs and exits per second over a range (of every source or one)"
)
async def execs(call: Call, *, query: SourceQuery) -> Any:
    w = window_of(call, query.range)
    rate = _Rates(w, call.ctx.clock_ns())
    rows = await charts.execs(call.ctx.reads, w, source=query.source)
    execs_ = [[b // _NS, rate(b, e)] for b, e, _ in rows]
    exits = [[b // _NS, rate(b, x)] for b, _, x in rows]
    return _answer(query.range, w, "/s", "zero", (("execs", execs_), ("exits", exits)))


@router.get(
    "/api/v1/series/host",
    "Host CPU % (average per point) and memory used (bytes, average per point) per source over a range; "
    f"at most {charts.HOST_SOURCES} sources",
)
async def host(call: Call, *, query: SourceQuery) -> Any:
    w = window_of(call, query.range)
    cpu: dict[str, list[list[float]]] = {}
    mem: dict[str, list[list[float]]] = {}
    total: dict[str, int] = {}
    for p in await charts.host(call.ctx.reads, w, source=query.source):
        t, src = p["bucket_ns"] // _NS, p["source"]
        cpu.setdefault(src, []).append([t, round(p["cpu_percent"], 2)])
        mem.setdefault(src, []).append([t, round(p["memory_used_bytes"])])
        total[src] = max(total.get(src, 0), p["memory_total_bytes"])
    answer = _answer(query.range, w, "%", "gap", sorted(cpu.items()))
    answer["memory"] = {"unit": "B", "series": [{"name": s, "points": pts} for s, pts in sorted(mem.items())]}
    answer["memory_total_bytes"] = total
    return answer


@router.get(
    "/api/v1/series/snmp",
    "One SNMP interface's in/out bit/s (averages per point) and utilisation (rate / ifSpeed, %) over a "
    "range; `polls_needed` says the rate needs a second poll",
)
async def snmp(call: Call, *, query: SnmpQuery) -> Any:
    w = window_of(call, query.range)
    points, speed, name = await charts.snmp_interface(
        call.ctx.reads, w, target=query.target, if_index=query.if_index
    )
    ins = [[b // _NS, round(i, 1)] for b, i, _, _, _ in points]
    outs = [[b // _NS, round(o, 1)] for b, _, o, _, _ in points]
    answer = _answer(query.range, w, "bit/s", "gap", (("in", ins), ("out", outs)))
    util: list[tuple[str, list[list[float]]]] = []
    if speed:
        util = [
            ("in", [[b // _NS, round(100 * i / speed, 3)] for b, i, _, _, _ in points]),
            ("out", [[b // _NS, round(100 * o / speed, 3)] for b, _, o, _, _ in points]),
        ]
    answer["utilisation"] = {"unit": "%", "series": [{"name": n, "points": pts} for n, pts in util]}
    answer |= {"target": query.target, "if_index": query.if_index, "name": name, "speed_bps": speed}
    answer["polls_needed"] = not points  # a rate takes two polls: none rated in this range yet
    return answer


async def interface_chart(
    call: Call, target: str, wanted: str | None, interfaces: list[dict[str, Any]]
) -> dict[str, Any]:
    """For the SNMP page: which interface of `target` it charts (`wanted`, an ifIndex from the URL, else
    the first of the page's `interfaces`), its name, and whether it still waits for a second poll (no
    rated point in the quarter points' last week)."""
    chart_if: int | None = None
    if wanted is not None and wanted.isdigit():
        chart_if = int(wanted)
    elif interfaces:
        chart_if = int(interfaces[0]["if_index"])
    if not target or chart_if is None:
        return {"chart_if": None, "chart_name": "", "polls_needed": False}
    w = Window.ending_at(call.ctx.clock_ns(), RANGES["7d"], QUARTER_S)
    points, _, name = await charts.snmp_interface(call.ctx.reads, w, target=target, if_index=chart_if)
    return {"chart_if": chart_if, "chart_name": name, "polls_needed": not points}
