"""Which rules an event can match, by the basename of its Image: most process rules name the programs
they are about (`Image|endswith: '/curl'`), so an exec of `ls` tries none of them.

A rule is filed under the basenames its condition requires (lowercased; a rule can only match when
Image's basename is one of them); a rule that requires none is tried on every event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from sigma.types import SigmaExpansion, SigmaString

from amoskys.detections.sigma.compile import UnsupportedRule, string_test
from amoskys.detections.sigma.conditions import Leaf, Node, Not, Or

IMAGE = "Image"

T = TypeVar("T")


def basename(path: str) -> str:
    return path.rpartition("/")[2]


def required_basenames(node: Node) -> frozenset[str] | None:
    """Lowercased basenames of which Image must have one for `node` to be true; None: no such set."""
    if isinstance(node, Leaf):
        return _leaf_basenames(node) if node.field == IMAGE and not node.keyword else None
    if isinstance(node, Not):
        return None
    sets = [required_basenames(c) for c in node.children]
    if isinstance(node, Or):
        if any(s is None for s in sets):
            return None
        return frozenset().union(*(s for s in sets if s is not None))
    known = [s for s in sets if s is not None]
    if not known:
        return None
    out = known[0]
    for s in known[1:]:
        out &= s
    return out


def _leaf_basenames(leaf: Leaf) -> frozenset[str] | None:
    names: set[str] = set()
    pending = list(leaf.values)
    while pending:
        value = pending.pop()
        if isinstance(value, SigmaExpansion):
            pending.extend(value.values)
            continue
        if not isinstance(value, SigmaString):
            return None
        try:
            test = string_test(value)
        except UnsupportedRule:
            return None
        literal = test.literal.lower()
        if test.kind == "eq":
            name = basename(literal)
        elif test.kind == "suf" and "/" in literal:
            name = basename(literal)
        else:
            return None
        if not name:
            return None
        names.add(name)
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class BasenameIndex(Generic[T]):
    """Items filed by required basename, plus those tried on every event (in load order)."""

    by_basename: Mapping[str, tuple[T, ...]]
    always: tuple[T, ...]

    @classmethod
    def build(cls, items: Iterable[tuple[T, frozenset[str] | None]]) -> BasenameIndex[T]:
        by_name: dict[str, list[T]] = {}
        always: list[T] = []
        for item, names in items:
            if names is None:
                always.append(item)
            else:
                for name in sorted(names):
                    by_name.setdefault(name, []).append(item)
        return cls({k: tuple(v) for k, v in by_name.items()}, tuple(always))

    def candidates(self, image_lower: str | None) -> tuple[T, ...]:
        if image_lower is None:
            return self.always
        filed = self.by_basename.get(basename(image_lower))
        return self.always + filed if filed else self.always
