"""The ``[collectors.host]`` config section."""

from __future__ import annotations

from typing import Annotated

import msgspec

from amoskys.collectors.base import CollectorConfig


class HostConfig(CollectorConfig, frozen=True):
    """A HostMetrics event every `interval_seconds`; devices matching an exclude glob are left out."""

    enabled: bool = True
    interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 15.0
    # lists, not tuples: msgspec.to_builtins keeps tuples, and the shipped TOML has lists
    exclude_interfaces: list[str] = msgspec.field(default_factory=list)
    exclude_disks: list[str] = msgspec.field(default_factory=lambda: ["loop*", "ram*"])
    exclude_mountpoints: list[str] = msgspec.field(default_factory=lambda: ["/snap/*"])
    max_label_values: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
