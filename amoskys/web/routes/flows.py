"""Flow routes: recent flow records with search, and the top talkers."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import msgspec

from amoskys.proto import events_pb2
from amoskys.web.endpoints import Call, Router
from amoskys.web.reads import event_dict
from amoskys.web.routes.common import Before, Limit, Synthetic, page

router = Router("flows")


class FlowsQuery(msgspec.Struct, frozen=True):
    ip: str = ""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    community_id: str = ""
    before: Before | None = None
    limit: Limit = 50


class TopQuery(msgspec.Struct, frozen=True):
    records: Annotated[int, msgspec.Meta(ge=1, le=100_000, description="how many recent records to sum")] = (
        5000
    )
    synthetic: Synthetic = False
    limit: Limit = 20


@router.get("/api/v1/flows", "Recent flow records, newest first; search by IP, port or Community ID")
async def flows(call: Call, *, query: FlowsQuery) -> Any:
    ip, port, cid = query.ip, query.port, query.community_id

    def wanted(env: events_pb2.Envelope) -> bool:
        f = env.flow
        return (
            (not ip or ip in (f.src_addr, f.dst_addr))
            and (port is None or port in (f.src_port, f.dst_port))
            and (not cid or f.community_id == cid)
        )

    search = bool(ip or port is not None or cid)
    rows = await call.ctx.reads.recent(
        kind="flow", before_seq=query.before, limit=query.limit, match=wanted if search else None
    )
    return page([event_dict(e) for e in rows], query.limit)


@router.get(
    "/api/v1/flows/top",
    "Top talkers by octets over the most recent flow records (synthetic ones left out by default)",
)
async def top_talkers(call: Call, *, query: TopQuery) -> Any:
    octets: Counter[str] = Counter()
    packets: Counter[str] = Counter()
    synthetic = None if query.synthetic else False
    for e in await call.ctx.reads.recent(kind="flow", limit=query.records, synthetic=synthetic):
        f = e.parse().flow
        for addr, d_out, d_in in ((f.src_addr, f.forward, f.reverse), (f.dst_addr, f.reverse, f.forward)):
            octets[addr] += d_out.octets + d_in.octets
            packets[addr] += d_out.packets + d_in.packets
    items = [{"addr": a, "octets": o, "packets": packets[a]} for a, o in octets.most_common(query.limit)]
    return {"items": items, "records": query.records}
