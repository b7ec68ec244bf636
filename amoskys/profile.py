"""What the appliance (`amoskys run`) and an endpoint agent (`amoskys agent`) do differently: one
profile object, consulted by `amoskys.app` at the few places they part.

Both are the same binary and the same loop: a store, the in-process bus core, the supervised
collectors, the control socket and a web port. An agent serves no EventBus (so it needs no CA),
shows no dashboard (its web port answers /metrics, /healthz and /readyz only), keeps its data in its
own default directory (``amoskys-agent``), and forwards its store, the outbox, to an appliance.
"""

from __future__ import annotations

from dataclasses import dataclass

from amoskys.paths import Mode


@dataclass(frozen=True)
class Profile:
    """One way of running the loop."""

    mode: Mode
    """What the heartbeat and `amoskys status` call this process; also picks the default data dir."""
    serves_bus: bool
    """Whether it serves the EventBus to remote publishers (and keeps the CA and server certificate
    that needs in its data dir)."""
    dashboard: bool
    """Whether its web port serves the dashboard, the JSON API and logins; without it, only /metrics,
    /healthz and /readyz."""


APPLIANCE = Profile("appliance", serves_bus=True, dashboard=True)
AGENT = Profile("agent", serves_bus=False, dashboard=False)
