"""Agent routes: enrolled agents with what their heartbeats say, and revoking one (through the control
service)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from amoskys.pki.enrolment import agent_cert_path
from amoskys.pki.identities import key_id_of_raw
from amoskys.pki.issuance import cert_not_after
from amoskys.store.queries import sources
from amoskys.web.endpoints import Call, Router

router = Router("agents")


class AgentPath(msgspec.Struct, frozen=True):
    name: str


#: What an agent's heartbeat interval is taken to be when its heartbeat does not say (older agents).
DEFAULT_HEARTBEAT_INTERVAL_SECONDS = 60.0


def liveness(heartbeat: dict[str, Any] | None, now_ns: int, silent_after: int) -> dict[str, Any]:
    """What an agent's newest heartbeat says about it: version, OS, addresses, outbox lag, and whether
    it is silent (no heartbeat received for `silent_after` of its intervals; None: it never sent one)."""
    if heartbeat is None:
        return {
            "last_heartbeat_ns": None,
            "heartbeat_interval_seconds": None,
            "silent": None,
            "silent_for_seconds": None,
            "version": None,
            "os": None,
            "hostname": None,
            "addresses": [],
            "outbox_lag_events": None,
            "outbox_lag_seconds": None,
        }
    body = heartbeat["body"]
    interval = float(body.get("interval_seconds") or DEFAULT_HEARTBEAT_INTERVAL_SECONDS)
    quiet_s = max(0, now_ns - int(heartbeat["received_ns"])) / 1e9
    return {
        "last_heartbeat_ns": heartbeat["received_ns"],
        "heartbeat_interval_seconds": interval,
        "silent": quiet_s > silent_after * interval,
        "silent_for_seconds": round(quiet_s, 1),
        "version": body.get("version", ""),
        "os": body.get("os", ""),
        "hostname": body.get("hostname", ""),
        "addresses": body.get("addresses", []),
        "outbox_lag_events": body.get("outbox_lag_events", 0),
        "outbox_lag_seconds": body.get("outbox_lag_seconds", 0.0),
    }


@router.get(
    "/api/v1/agents",
    "Enrolled agents: role, key, last seen, events/s, certificate expiry, and from their newest heartbeat "
    "version, OS, addresses, outbox lag and whether they are silent ([bus] silent_after_heartbeats); "
    "on a hub ([sources.nats]) also every box of the fleet with its sources, seen the same way",
)
async def agents(call: Call) -> Any:
    ctx = call.ctx
    last_seen = await ctx.reads.dicts(
        "SELECT source, MAX(last_received_ns) AS last_seen_ns FROM source_marks GROUP BY source"
    )
    seen = {r["source"]: r["last_seen_ns"] for r in last_seen}
    identities = await ctx.store.state.list_identities()

    def expiries() -> list[str | None]:  # certificate files: read off the loop
        paths = [agent_cert_path(ctx.pki_dir, ident.name) for ident in identities]
        return [cert_not_after(p).isoformat() if p.exists() else None for p in paths]

    names = [ident.name for ident in identities]
    now_ns = ctx.clock_ns()
    heartbeats = await sources.latest_heartbeats(ctx.reads, names)
    rates = await sources.event_rates(ctx.reads, names, now_ns)
    silent_after = ctx.config.bus.silent_after_heartbeats
    items = []
    for ident, expires in zip(identities, await asyncio.to_thread(expiries), strict=True):
        items.append(
            {
                "name": ident.name,
                "role": ident.role,
                "key_id": key_id_of_raw(ident.public_key),
                "enrolled_ns": ident.enrolled_ns,
                "revoked_ns": ident.revoked_ns,
                "cert_expires": expires,
                "last_seen_ns": seen.get(ident.name),
                "events_per_second": rates.get(ident.name, 0.0),
            }
            | liveness(heartbeats.get(ident.name), now_ns, silent_after)
        )
    return {
        "items": items,
        "silent_after_heartbeats": silent_after,
        "boxes": await _boxes(call, seen, now_ns),
    }


async def _boxes(call: Call, seen: dict[str, int], now_ns: int) -> list[dict[str, Any]]:
    """The fleet's boxes a hub consumes ([sources.nats]), each with its sources (the box itself and
    its agents): last seen, events/s and what their newest heartbeat says."""
    ctx = call.ctx
    boxes = await sources.nats_boxes(ctx.reads, list(seen))
    names = [name for found in boxes.values() for name in found]
    heartbeats = await sources.latest_heartbeats(ctx.reads, names)
    rates = await sources.event_rates(ctx.reads, names, now_ns)
    silent_after = ctx.config.bus.silent_after_heartbeats
    return [
        {
            "box": box,
            "sources": [
                {
                    "name": name,
                    "last_seen_ns": seen.get(name),
                    "events_per_second": rates.get(name, 0.0),
                }
                | liveness(heartbeats.get(name), now_ns, silent_after)
                for name in found
            ],
        }
        for box, found in boxes.items()
    ]


@router.post(
    "/api/v1/agents/{name}/revoke",
    "Revoke an agent: refused from its next call on, its calls in progress ended before the answer",
    role="admin",
)
async def revoke_agent(call: Call, *, path: AgentPath) -> Any:
    done = await call.ctx.control.revoke_agent(call.actor, path.name)
    # calls_ended: the agent's calls in progress the bus ended (None: no bus runs in this process)
    return {"name": path.name, "revoked": True, "calls_ended": done.calls_ended}
