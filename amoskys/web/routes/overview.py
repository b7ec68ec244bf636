"""The overview route: health, rates, store, sinks, losses, collectors and open alerts in one answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from amoskys import __version__
from amoskys.loophealth import LoopLag
from amoskys.store.queries import alerts, log
from amoskys.web.context import WebContext
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
    "Health, events/s, store size, sink lag, losses, collectors, open alerts (synthetic events left out "
    "by default)",
)
async def overview(call: Call, *, query: OverviewQuery) -> Any:
    ctx, with_synthetic = call.ctx, query.synthetic
    # the reads on their threads (the store's reader, its stat, the dashboard's readers): at once
    stats, sinks, (losses, _), open_alerts = await asyncio.gather(
        ctx.store.stats(),
        ctx.store.state.list_sinks(),
        log.page(ctx.reads, kind="loss", limit=10, synthetic=None if with_synthetic else False),
        alerts.open_counts(ctx.reads, synthetic=with_synthetic),
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
        "alerts": open_alerts | {"rules": _rule_counts(ctx)},
    }


def _rule_counts(ctx: WebContext) -> dict[str, int] | None:
    """The detection rules loaded, unsupported and invalid (in memory); None when detections do not run."""
    if ctx.detections is None:
        return None
    view = ctx.detections.rules()
    return {
        "loaded": view.loaded,
        "enabled": view.enabled,
        "unsupported": view.unsupported,
        "invalid": view.invalid,
    }
