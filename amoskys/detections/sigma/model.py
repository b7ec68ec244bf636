"""What loading Sigma rule files yields: rules we evaluate, rules we cannot (with the reason), and files
that are not valid YAML or Sigma. Plain data; importing this module does not import pySigma."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Prefix of the id given to a rule that has no Sigma `id`: "noid:<file path>#<document index>".
NOID_PREFIX = "noid:"

LEVELS = ("informational", "low", "medium", "high", "critical")


def rule_id(sigma_id: object, path: Path, document: int) -> str:
    """The Sigma `id` verbatim; for a rule without one, a name made of its file and document index."""
    if isinstance(sigma_id, str) and sigma_id:
        return sigma_id
    return f"{NOID_PREFIX}{path}#{document}"


@dataclass(frozen=True, slots=True)
class Rule:
    """A loaded rule, as alerts and `rules check` show it."""

    id: str
    title: str
    level: str
    tags: tuple[str, ...]
    category: str
    description: str
    path: Path
    status: str
    fields_used: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A valid Sigma rule the engine cannot evaluate."""

    path: Path
    id: str
    title: str
    reason: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """A file (or a document in it) that is not valid YAML or not a valid Sigma rule."""

    path: Path
    reason: str
