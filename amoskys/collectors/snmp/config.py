"""The ``[collectors.snmp]`` config section and its ``[[collectors.snmp.targets]]`` tables.

Secrets are never in this file: a target names the file or the environment variable holding its
community string or v3 keys, and they are read when the collector starts (init does no I/O).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from amoskys.collectors.base import CollectorConfig

Version = Literal["v2c", "v3"]
AuthProtocol = Literal["sha1", "sha224", "sha256", "sha384", "sha512"]
#: net-snmp's names: aes192/aes256 extend the key as in Blumenthal's draft, aes192c/aes256c as Cisco (Reeder).
PrivProtocol = Literal["aes128", "aes192", "aes256", "aes192c", "aes256c"]
SecurityLevel = Literal["auth_priv", "auth_no_priv"]
Profile = Literal["interfaces", "host_resources", "fdb"]
Switch = Literal["off", "on"]
Schedule = Literal["spread", "aligned"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _one_source(key: str, file: str, env: str) -> None:
    if file and env:
        raise ValueError(f"`{key}_file`: set {key}_file or {key}_env, not both")
    if env and not _ENV.fullmatch(env):
        raise ValueError(f"`{key}_env`: expected an environment variable name, got {env!r}")


class SnmpTargetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One device to poll. v2c needs a community source; v3 a user and its key sources."""

    name: str
    address: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 161
    version: Version = "v2c"
    community_file: str = ""
    community_env: str = ""
    user: str = ""
    security_level: SecurityLevel = "auth_priv"
    auth_protocol: AuthProtocol = "sha256"
    auth_key_file: str = ""
    auth_key_env: str = ""
    priv_protocol: PrivProtocol = "aes128"
    priv_key_file: str = ""
    priv_key_env: str = ""
    context_name: str = ""
    profiles: list[Profile] = msgspec.field(default_factory=list)  # empty: the collector's `profiles`

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"`name`: expected 1-63 letters, digits, '.', '_' or '-' starting with a letter or "
                f"digit, got {self.name!r}"
            )
        if not self.address or any(c.isspace() for c in self.address):
            raise ValueError(f"`address`: expected a host name or IP address, got {self.address!r}")
        _one_source("community", self.community_file, self.community_env)
        _one_source("auth_key", self.auth_key_file, self.auth_key_env)
        _one_source("priv_key", self.priv_key_file, self.priv_key_env)
        if self.version == "v2c":
            if not (self.community_file or self.community_env):
                raise ValueError(
                    f"`community_file`: target {self.name!r} (v2c) needs community_file or community_env"
                )
            if self.user:
                raise ValueError(f"`user`: target {self.name!r} is v2c; `user` is for v3 targets")
        else:
            if not self.user:
                raise ValueError(f"`user`: target {self.name!r} (v3) needs a user name")
            if not (self.auth_key_file or self.auth_key_env):
                raise ValueError(
                    f"`auth_key_file`: target {self.name!r} (v3) needs auth_key_file or auth_key_env"
                )
            has_priv = bool(self.priv_key_file or self.priv_key_env)
            if self.security_level == "auth_priv" and not has_priv:
                raise ValueError(
                    f"`priv_key_file`: target {self.name!r} (v3 auth_priv) needs priv_key_file or priv_key_env"
                )
            if self.community_file or self.community_env:
                raise ValueError(f"`community_file`: target {self.name!r} is v3; communities are for v2c")

    @property
    def endpoint(self) -> str:
        """``host:port`` as shown in events and messages (``[v6]:port`` for IPv6 literals)."""
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


class SnmpConfig(CollectorConfig, frozen=True):
    """Poll SNMP targets every `interval_seconds`; each poll ends by its `deadline_seconds`."""

    enabled: bool = True
    interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 60.0
    deadline_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 20.0
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    max_repetitions: Annotated[int, msgspec.Meta(ge=1, le=200)] = 25
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    backoff_max_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 900.0
    schedule: Schedule = "spread"
    profiles: list[Profile] = msgspec.field(default_factory=lambda: ["interfaces"])
    interface_metrics: Switch = "off"
    max_interface_series: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 2000
    targets: list[SnmpTargetConfig] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.deadline_seconds > self.interval_seconds:
            raise ValueError(
                f"`deadline_seconds` ({self.deadline_seconds}) must not exceed `interval_seconds` "
                f"({self.interval_seconds}): a poll must end before the next one is due"
            )
        if self.backoff_max_seconds < self.interval_seconds:
            raise ValueError(
                f"`backoff_max_seconds` ({self.backoff_max_seconds}) must not be smaller than "
                f"`interval_seconds` ({self.interval_seconds})"
            )
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"`targets`: two targets are named {target.name!r}")
            seen.add(target.name)

    def profiles_of(self, target: SnmpTargetConfig) -> list[Profile]:
        """The profiles polled on `target`: its own list, else the collector's."""
        return target.profiles or self.profiles
