"""State-changing commands go through the one control service, so each is audited as ``cli:<user>``.

When the appliance runs (its control socket answers) the request goes over the socket: the running
appliance's service does it and audits it as the connecting user (SO_PEERCRED). Otherwise the store
is opened here — `Store.open` takes its lock file, so it refuses while an appliance holds the store
(starting up, say: never a second writer) — and a local ControlService does it, its audit events
committed through the store's writer under this process's own stamper, so the audit rows are there
when the appliance next starts. Both paths give the same reply (amoskys.control.perform).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amoskys.errors import AmoskysError

if TYPE_CHECKING:
    from amoskys.config import Config
    from amoskys.control_service import Actor
    from amoskys.paths import Layout


class RefusedError(AmoskysError):
    """A request the control service refused (for a command that reports it as an error, exit 2)."""

    def __init__(self, reply: Mapping[str, Any]) -> None:
        self.reply = dict(reply)
        super().__init__(str(reply.get("error", "the appliance refused the command")))


#: Exit codes of a refused request: nothing to act on (1), refused or failed (2).
EXIT_NOTHING, EXIT_REFUSED = 1, 2


def act(config: Config, layout: Layout, message: Mapping[str, Any]) -> dict[str, Any]:
    """The reply to `message` (see amoskys.control), from the running appliance when it answers on its
    control socket, else done here on the stopped data dir. Raises ControlError when the appliance
    cannot be talked to, StoreError when the store cannot be opened."""
    from amoskys.control import NotRunningError, request

    try:
        reply = request(layout.control_socket, message, timeout_seconds=30.0)
    except NotRunningError:
        from amoskys.control_service import Actor

        return asyncio.run(_locally(config, layout, message, Actor.unix_user()))
    reply.setdefault("running", True)
    return reply


async def _locally(
    config: Config, layout: Layout, message: Mapping[str, Any], actor: Actor
) -> dict[str, Any]:
    from amoskys.app import appliance_name
    from amoskys.control import perform
    from amoskys.control_service import ControlService
    from amoskys.events import EnvelopeStamper
    from amoskys.metrics import Metrics
    from amoskys.proto import events_pb2
    from amoskys.store import Store
    from amoskys.store.records import Record

    stamper = EnvelopeStamper(appliance_name(config))  # this process's: audit events carry its boot_id
    store = await Store.open(layout.db, config.store, Metrics(), stamper=stamper)
    writer = asyncio.create_task(store.run(), name="store-writer")
    try:

        async def audit(event: events_pb2.AuditEvent) -> None:
            envelope = stamper.stamp(events_pb2.Envelope(audit=event))
            await store.submit([Record.from_envelope(envelope)], local=True)

        service = ControlService(store.state, audit)
        reply = await perform(service, actor, message)
    finally:
        await store.close()
        await writer
    return reply | {"running": False}


def refused(reply: Mapping[str, Any]) -> int | None:
    """Print a refusal the way every command does and return its exit code (None: not refused)."""
    if reply.get("ok"):
        return None
    print(f"amoskys: error: {reply.get('error', 'the appliance refused the command')}", file=sys.stderr)
    return EXIT_NOTHING if reply.get("not_found") or reply.get("nothing_to_do") else EXIT_REFUSED
