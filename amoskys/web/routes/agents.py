"""Agent routes: enrolled agents, and revoking one (through the control service)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from amoskys.pki.enrolment import agent_cert_path
from amoskys.pki.identities import key_id_of_raw
from amoskys.pki.issuance import cert_not_after
from amoskys.web.endpoints import Call, Router

router = Router("agents")


class AgentPath(msgspec.Struct, frozen=True):
    name: str


@router.get("/api/v1/agents", "Enrolled agents: role, key, last seen, certificate expiry")
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
            }
        )
    return {"items": items}


@router.post(
    "/api/v1/agents/{name}/revoke",
    "Revoke an agent: refused from its next call on, its calls in progress ended before the answer",
    role="admin",
)
async def revoke_agent(call: Call, *, path: AgentPath) -> Any:
    done = await call.ctx.control.revoke_agent(call.actor, path.name)
    # calls_ended: the agent's calls in progress the bus ended (None: no bus runs in this process)
    return {"name": path.name, "revoked": True, "calls_ended": done.calls_ended}
