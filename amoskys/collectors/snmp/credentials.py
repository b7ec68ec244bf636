"""Reading a target's secrets (community, v3 keys) from their file or environment variable.

A `Secret` never shows its value: not in repr, str, logs or error messages, which name the file or
the variable instead. Secrets are read when the collector starts (or the CLI runs), never at init.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from amoskys.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret string; ``value`` is the only way to see it."""

    value: str
    origin: str  # "file /etc/amoskys/core-sw1.community" or "environment variable SW_COMMUNITY"

    def __repr__(self) -> str:
        return f"Secret(<hidden>, from {self.origin})"

    __str__ = __repr__


class SecretError(ConfigError):
    """A target's secret cannot be read (missing or unreadable file, unset or empty variable)."""

    def __init__(self, target: str, what: str, message: str) -> None:
        super().__init__(f"snmp target {target!r}: {what}: {message}", path=f"collectors.snmp.targets.{what}")
        self.target = target
        self.what = what


def read_secret(target: str, what: str, *, file: str, env: str, environ: Mapping[str, str]) -> Secret:
    """The secret `what` (``community``, ``auth_key``, ``priv_key``) of `target` from `file` or `env`.

    A file holds the secret on its first line (trailing whitespace and the newline are dropped).
    """
    if file:
        path = Path(file)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as err:
            raise SecretError(target, f"{what}_file", f"cannot read {path}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise SecretError(target, f"{what}_file", f"{path} is not UTF-8 text") from None
        lines = raw.splitlines()
        value = lines[0].strip() if lines else ""
        if not value:
            raise SecretError(target, f"{what}_file", f"{path} is empty")
        return Secret(value, f"file {path}")
    if env:
        value = environ.get(env, "").strip()
        if not value:
            raise SecretError(target, f"{what}_env", f"environment variable {env} is unset or empty")
        return Secret(value, f"environment variable {env}")
    raise SecretError(target, f"{what}_file", "no file and no environment variable given")
