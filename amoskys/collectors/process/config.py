"""The ``[collectors.process]`` config section."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from amoskys.collectors.base import CollectorConfig

#: Option names whose values are secrets (regular expressions, case-insensitive, matched against the
#: end of an option or variable name such as ``--db-password``, ``MYSQL_PWD`` or ``X-Api-Key``). The
#: password pattern also matches inside a name (``PASSWORD_ADMIN``); ``(?-i:…)`` makes ``*_KEY`` match
#: only upper-case, environment-style names (``STRIPE_KEY=``, not ``--tls-key /path``). Names ending
#: in ``file``, ``path``, ``dir``, ``fd``, ``stdin``, ``env`` … are never secret (redact.py). No pattern
#: may hold a "|": the README's configuration table could not show it.
DEFAULT_REDACT_PATTERNS: tuple[str, ...] = (
    "pass",
    "passw(or)?d[0-9a-z_.-]*",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "bearer",
    "api[-_]?key",
    "access[-_]?key",
    "private[-_]?key",
    "(?-i:[A-Z0-9]_KEY)",
    "credentials?",
    "auth",
    "psk",
    "community",
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
            try:
                compiled = re.compile(pattern)
            except re.error as err:
                raise ValueError(
                    f"`redact_patterns`: {pattern!r} is not a regular expression: {err}"
                ) from None
            if compiled.fullmatch("") is not None:
                raise ValueError(
                    f"`redact_patterns`: {pattern!r} matches an empty name, so it would match every option"
                )
