"""The global search route: an IP, a MAC, a host name, a process name, a user or a Community ID, looked
up across devices, hosts, flows, processes, the exec history, SNMP targets and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.store.queries import search as search_reads
from amoskys.web.endpoints import Call, Router
from amoskys.web.flowview import present

router = Router("search")


class SearchQuery(msgspec.Struct, frozen=True):
    q: Annotated[
        str,
        msgspec.Meta(
            max_length=200,
            description="an IP address, a MAC, a Community ID, or text: a host name, process name or user",
        ),
    ] = ""
    limit: Annotated[int, msgspec.Meta(ge=1, le=100, description="at most this many matches per kind")] = 20


@router.get(
    "/api/v1/search",
    "Search across kinds: devices, hosts (sources), flows, processes, exec history, SNMP targets and audit "
    "events matching an IP, a MAC, a Community ID, a host name, a process name or a user (`as` says which "
    "the text was taken for)",
)
async def search(call: Call, *, query: SearchQuery) -> Any:
    found = await search_reads.search(call.ctx.reads, query.q, limit=query.limit)
    return found | {"names": await present(call.ctx.reads, found["flows"])}
