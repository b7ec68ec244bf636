"""The overview route: health, rates, store, sinks, losses and collectors in one answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from amoskys import __version__
from amoskys.loophealth import LoopLag
from amoskys.store.queries import log
from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.common import Synthetic, counter_totals

router = Router("overview")


class OverviewQuery(msgspec.Struct, frozen=True):
    synthetic: Synthetic = False


def _per_second(series: list[tuple[int, int]]) -> float:
    recent = [c for _, c in series[-10:]]
    return round(sum(recent) / len(recent), 1) if recent else 0.0


def _without(totals: dict[str, float], part: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, v - part.get(k, 0.0)) for k, v in totals.items()}


@router.get(
    "/api/v1/overview",
    "Health, events/s, store size, sink lag, losses, collectors (synthetic events left out by default)",
)
async def overview(call: Call, *, query: OverviewQuery) -> Any:
    ctx, with_synthetic = call.ctx, query.synthetic
    # three reads on three threads (the store's reader, its stat, the dashboard's reader): at once
    stats, sinks, (losses, _) = await asyncio.gather(
        ctx.store.stats(),
        ctx.store.state.list_sinks(),
        log.page(ctx.reads, kind="loss", limit=10, synthetic=None if with_synthetic else False),
    )
    synthetic_rows = stats.synthetic_rows
    series = ctx.rates.series(synthetic=with_synthetic)
    by_outcome = counter_totals(ctx.metrics.bus_events, "outcome")
    synthetic_by_outcome = counter_totals(ctx.metrics.bus_synthetic_events, "outcome")
    return {
        "appliance": {"name": ctx.name, "version": __version__},
        "health": ctx.health.snapshot(),
        "loop_lag": ctx.metrics.component(LoopLag).summary(time.monotonic()),
        "events_per_second": _per_second(series),
        "rate_series": [{"t": t, "events": c} for t, c in series],
        "store": {
            "rows": stats.rows if with_synthetic else max(0, stats.rows - synthetic_rows),
            "last_seq": stats.last_seq,
            "db_bytes": stats.db_bytes,
            "wal_bytes": stats.wal_bytes,
            "space_state": str(getattr(stats.space_state, "value", stats.space_state)),
            "high_water_bytes": stats.high_water_bytes,
            "hard_cap_bytes": stats.hard_cap_bytes,
        },
        "sinks": [
            {"name": s.name, "enabled": s.enabled, "lag_events": max(0, stats.last_seq - s.store_seq)}
            for s in sinks
        ],
        "losses": {
            "store_by_reason": counter_totals(ctx.metrics.store_lost, "reason"),
            "recent_reports": losses,
        },
        "bus": {
            "batches_by_status": counter_totals(ctx.metrics.bus_batches, "status"),
            "events_by_outcome": by_outcome if with_synthetic else _without(by_outcome, synthetic_by_outcome),
        },
        "synthetic": {
            "included": with_synthetic,
            "rows": synthetic_rows,
            "events_per_second": _per_second(ctx.rates.synthetic_series()),
            "events_by_outcome": synthetic_by_outcome,
        },
        "collectors": [c.to_dict() | {"state_text": c.state_text} for c in ctx.supervisor.status()],
    }
