"""Parameter types and helpers that several route modules share (paging, times, counter totals)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from prometheus_client.metrics import MetricWrapperBase

Limit = Annotated[int, msgspec.Meta(ge=1, le=500, description="at most this many items (1..500)")]
Before = Annotated[int, msgspec.Meta(ge=1, description="page on: only items with store_seq below this")]
After = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        description="page on: the items after this one in the page's order (newest observation first), "
        "given by its store_seq (the previous page's `next_before`)",
    ),
]
Synthetic = Annotated[
    bool,
    msgspec.Meta(
        description="1: count synthetic events (published by loadgen identities) in the totals; "
        "by default they are left out"
    ),
]


def page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A page of items, newest first, with the `before` that continues it (None: the last page)."""
    more = len(items) == limit and items
    return {"items": items, "next_before": items[-1]["store_seq"] if more else None}


def time_ns(when: datetime | None) -> int | None:
    """Nanoseconds since the epoch (a time without a zone is UTC)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def counter_totals(metric: MetricWrapperBase, label: str) -> dict[str, float]:
    """Totals of one labelled counter by one label (reads only that metric, not the registry)."""
    out: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out
