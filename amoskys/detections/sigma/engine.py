"""The Sigma engine's public API: `load_rules(paths)` → `RuleSet`, and `RuleSet.match(category, fields)`.

Importing this module imports pySigma (a few tenths of a second): do it off the event loop, before
ready, and only when rules are configured. `load_rules` and `fingerprint` are blocking (file I/O);
`RuleSet.match` is pure CPU and cheap (an index by the Image basename picks the candidate rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sigma.exceptions import SigmaError

from amoskys.detections.sigma import pipeline as amoskys_pipeline
from amoskys.detections.sigma.compile import EventView, Matcher, UnsupportedRule, any_of
from amoskys.detections.sigma.conditions import Node, Or, compile_node, fields_used, normalize
from amoskys.detections.sigma.fields import PROVIDED
from amoskys.detections.sigma.index import IMAGE, BasenameIndex, required_basenames
from amoskys.detections.sigma.loader import (
    Fingerprint,
    Outcome,
    Parsed,
    fingerprint,
    load_file,
    load_text,
    rule_files,
)
from amoskys.detections.sigma.model import Invalid, Rule, Unsupported

__all__ = [
    "CATEGORIES",
    "Fingerprint",
    "Invalid",
    "Rule",
    "RuleSet",
    "Unsupported",
    "fingerprint",
    "load_rules",
    "rules_from_text",
]

#: The log source categories rules are evaluated for (product linux, or no product).
CATEGORIES = tuple(PROVIDED)


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    matcher: Matcher


class RuleSet:
    """Rules loaded from a set of paths, compiled and indexed; what could not be loaded, and why."""

    def __init__(
        self,
        compiled: Sequence[tuple[Rule, Matcher, frozenset[str] | None]],
        unsupported: Sequence[Unsupported],
        invalid: Sequence[Invalid],
        fingerprint: Fingerprint,
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rule for rule, _, _ in compiled)
        self.unsupported: tuple[Unsupported, ...] = tuple(unsupported)
        self.invalid: tuple[Invalid, ...] = tuple(invalid)
        self.fingerprint: Fingerprint = fingerprint
        self._index: dict[str, BasenameIndex[_Compiled]] = {
            category: BasenameIndex.build(
                (_Compiled(rule, matcher), names)
                for rule, matcher, names in compiled
                if rule.category == category
            )
            for category in CATEGORIES
        }

    def match(self, category: str, fields: Mapping[str, object]) -> list[Rule]:
        """The rules an event matches (each at most once); `fields` is a Sigma field dict (see
        `fields.process_creation_fields`); an unknown category matches nothing."""
        index = self._index.get(category)
        if index is None:
            return []
        event = EventView(fields)
        return [c.rule for c in index.candidates(event.low.get(IMAGE)) if c.matcher(event)]

    def candidates(self, category: str, fields: Mapping[str, object]) -> int:
        """How many rules `match` would try for this event (for tests and the benchmark)."""
        index = self._index.get(category)
        if index is None:
            return 0
        return len(index.candidates(EventView(fields).low.get(IMAGE)))


def load_rules(paths: Sequence[Path | str]) -> RuleSet:
    """Load, check and compile every rule the paths name (files, or directories of *.yml/*.yaml).
    Blocking. Never raises for a bad rule: it lands in `unsupported` or `invalid` with the reason."""
    stamp = fingerprint(paths)
    files, invalid = rule_files(paths)
    pipe = amoskys_pipeline.build()
    outcomes = [outcome for path in files for outcome in load_file(path, pipe)]
    return _build(outcomes, invalid, stamp)


def rules_from_text(text: str, path: Path = Path("<text>")) -> RuleSet:
    """A RuleSet from YAML text (one or more rules), as if read from `path`."""
    return _build(list(load_text(text, path)), [], ())


def _build(outcomes: Sequence[Outcome], invalid: list[Invalid], stamp: Fingerprint) -> RuleSet:
    compiled: list[tuple[Rule, Matcher, frozenset[str] | None]] = []
    unsupported: list[Unsupported] = []
    for outcome in outcomes:
        if isinstance(outcome, Parsed):
            result = _compile(outcome)
            if isinstance(result, Unsupported):
                unsupported.append(result)
            elif isinstance(result, Invalid):
                invalid.append(result)
            else:
                compiled.append(result)
        elif isinstance(outcome, Unsupported):
            unsupported.append(outcome)
        else:
            invalid.append(outcome)
    return RuleSet(compiled, unsupported, invalid, stamp)


def _compile(parsed: Parsed) -> tuple[Rule, Matcher, frozenset[str] | None] | Unsupported | Invalid:
    rule = parsed.rule
    title = rule.title or ""
    try:
        trees = [condition.parse() for condition in rule.detection.parsed_condition]
        nodes: list[Node] = [normalize(tree) for tree in trees]
        node = nodes[0] if len(nodes) == 1 else Or(nodes)
        matcher = any_of([compile_node(n) for n in nodes])
    except UnsupportedRule as err:
        return Unsupported(parsed.path, parsed.id, title, err.reason)
    except SigmaError as err:
        message = " ".join(str(err.args[0] if err.args else err).split())
        return Invalid(parsed.path, f"not a valid Sigma rule: {message}")
    provided = PROVIDED[parsed.category]
    used = fields_used(node)
    unknown = sorted(used - provided)
    if unknown:  # a keyword leaf reads CommandLine: the pipeline checked it, this is the last guard
        return Unsupported(parsed.path, parsed.id, title, f"field {unknown[0]!r} is not provided")
    meta = Rule(
        id=parsed.id,
        title=title,
        level=rule.level.name.lower() if rule.level is not None else "",
        tags=tuple(str(tag) for tag in rule.tags),
        category=parsed.category,
        description=rule.description or "",
        path=parsed.path,
        status=rule.status.name.lower() if rule.status is not None else "",
        fields_used=tuple(sorted(used)),
    )
    return meta, matcher, required_basenames(node)
