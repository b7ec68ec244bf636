"""The ``[collectors.heartbeat]`` config section."""

from __future__ import annotations

from typing import Annotated

import msgspec

from amoskys.collectors.base import CollectorConfig


class HeartbeatConfig(CollectorConfig, frozen=True):
    """Publish a Heartbeat event at start and then every `interval_seconds`."""

    enabled: bool = True
    interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 60.0
