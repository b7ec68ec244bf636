"""A page of flow records as the dashboard shows them: each record's protocol and service names and its
duration, and who is behind each address of the page (the device or host: one lookup per page)."""

from __future__ import annotations

from typing import Any

from amoskys.store.queries.names import address_names
from amoskys.store.queries.reader import Reader
from amoskys.web.netnames import flow_service, protocol_name


def describe(item: dict[str, Any]) -> dict[str, Any]:
    """One flow item (flows.flow_item) with `protocol_name`, `service` and `duration_seconds` added."""
    body = item["body"]
    proto = int(body.get("protocol", 0))
    first, last = int(body.get("first_ts_ns", 0)), int(body.get("last_ts_ns", 0))
    item["protocol_name"] = protocol_name(proto)
    item["service"] = flow_service(proto, int(body.get("src_port", 0)), int(body.get("dst_port", 0)))
    item["duration_seconds"] = max(0, last - first) / 1e9 if first and last else 0.0
    return item


async def present(reader: Reader, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Describe each of `items` (in place), and name the page's addresses: {address: {"device": ...,
    "host": ...}} for those the inventory or a heartbeat knows."""
    for item in items:
        describe(item)
    addrs = {a for i in items for a in (i["body"].get("src_addr", ""), i["body"].get("dst_addr", ""))}
    return await address_names(reader, addrs)
