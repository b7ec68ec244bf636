"""The ``[collectors.process]`` config section."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from amoskys.collectors.base import CollectorConfig

#: Option names whose values are secrets (regular expressions, case-insensitive, matched against the
#: end of an option name such as ``--db-password`` or ``MYSQL_PWD``).
DEFAULT_REDACT_PATTERNS: tuple[str, ...] = (
    "pass(w(or)?d)?",
    "pwd",
    "secret",
    "token",
    "api[-_]?key",
    "access[-_]?key",
    "private[-_]?key",
    "credentials?",
    "auth",
)

Mode = Literal["auto", "netlink", "polling"]


class ProcessConfig(CollectorConfig, frozen=True):
    """Real-time exec/exit from the proc connector (or polling diffs), plus periodic snapshots."""

    enabled: bool = True
    mode: Mode = "auto"
    snapshot_interval_seconds: Annotated[float, msgspec.Meta(ge=5, le=86_400)] = 300.0
    poll_interval_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 1.0
    self_test_timeout_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=60)] = 1.0
    receive_buffer_bytes: Annotated[int, msgspec.Meta(ge=65_536, le=1 << 30)] = 8 * 1024 * 1024
    hash_max_mb: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 64
    hash_cache_entries: Annotated[int, msgspec.Meta(ge=16, le=1_000_000)] = 4096
    redact_patterns: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_REDACT_PATTERNS))

    def __post_init__(self) -> None:
        for pattern in self.redact_patterns:
            if not pattern:
                raise ValueError("`redact_patterns`: an empty pattern would match every option")
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(
                    f"`redact_patterns`: {pattern!r} is not a regular expression: {err}"
                ) from None
