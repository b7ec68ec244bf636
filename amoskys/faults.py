"""Fault injection for tests, from the AMOSKYS_FAULTS environment variable.

Format: comma-separated ``name=value`` pairs, e.g. ``slow_shutdown_ms=3000``. Never set it in
production: the appliance logs a warning at start for every active fault.

Known faults:
- ``slow_shutdown_ms``: graceful shutdown waits this long before stopping (to test a forced exit).
- ``ack_before_commit_ms``: the bus acks remote batches OK at once and commits them this much later
  — exactly the lie the crash-proof test must catch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from amoskys.errors import ConfigError

KNOWN = frozenset({"slow_shutdown_ms", "ack_before_commit_ms"})


def parse(env: Mapping[str, str] | None = None) -> dict[str, int]:
    raw = (env if env is not None else os.environ).get("AMOSKYS_FAULTS", "")
    faults: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        name, _, value = item.partition("=")
        if name not in KNOWN or not value.isdigit():
            raise ConfigError(
                f"AMOSKYS_FAULTS: unknown or malformed fault {item!r} (known: {', '.join(sorted(KNOWN))})",
                path="AMOSKYS_FAULTS",
                value=item,
            )
        faults[name] = int(value)
    return faults
