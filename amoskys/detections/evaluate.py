"""Evaluating events against the rules: process events feed the process table, each exec becomes a
Sigma `process_creation` field dict (with its parent from the table), each flow a
`network_connection` one; what matches an enabled rule and no suppression is a Match.

`Evaluator.evaluate` runs in the runtime's one evaluation thread, never on the event loop (it may
decode catch-up envelopes, and a batch of a thousand execs is a few ms of matching). The loop swaps
its `rules`, `disabled` and `suppressions` for new immutable values; the thread only reads them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import DecodeError

from amoskys.detections.process_table import ProcessTables, Program
from amoskys.detections.sigma.fields import (
    NETWORK_CONNECTION,
    PROCESS_CREATION,
    network_connection_fields,
    process_creation_fields,
)
from amoskys.detections.sigma.model import Rule
from amoskys.proto import events_pb2
from amoskys.store.alerts import Suppression

_EXEC = events_pb2.ProcessEvent.EXEC
_EXIT = events_pb2.ProcessEvent.EXIT
_SNAPSHOT = events_pb2.ProcessEvent.SNAPSHOT


class Rules(Protocol):
    """What the evaluator needs of a loaded rule set (amoskys.detections.sigma.engine.RuleSet)."""

    rules: tuple[Rule, ...]

    def match(self, category: str, fields: Mapping[str, object]) -> list[Rule]: ...


@dataclass(frozen=True, slots=True)
class Match:
    """One event matching one rule."""

    rule: Rule
    host: str  # the event's source
    event_id: str
    ts_ns: int
    category: str
    fields: Mapping[str, object]
    # built-in detectors (amoskys.detections.builtin): their own one-line summary, and whether
    # `event_id` names a stored event of `host` (False: it only tells this match from others)
    summary: str = ""
    evidence: bool = True


def field_text(value: object) -> str:
    """A Sigma field value as text (booleans as Sigma writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Suppressions:
    """The active suppressions, by rule id (an immutable snapshot the loop replaces)."""

    def __init__(self, items: Sequence[Suppression] = ()) -> None:
        self.items = tuple(items)
        self._by_rule: dict[str, list[Suppression]] = {}
        for s in self.items:
            self._by_rule.setdefault(s.rule_id, []).append(s)

    def find(self, rule_id: str, host: str, fields: Mapping[str, object], now_ns: int) -> Suppression | None:
        for s in self._by_rule.get(rule_id, ()):
            if s.host and s.host != host:
                continue
            if not s.active(now_ns):
                continue
            value = fields.get(s.field)
            if value is not None and field_text(value) == s.value:
                return s
        return None


@dataclass(slots=True)
class Outcome:
    """What one batch gave: its matches, the suppressions that held some back (id → (count, last ts)),
    and how many events were evaluated against the rules."""

    matches: list[Match] = field(default_factory=list)
    suppressed: dict[str, tuple[int, int]] = field(default_factory=dict)
    evaluated: int = 0
    undecodable: int = 0


class Evaluator:
    def __init__(self, tables: ProcessTables | None = None) -> None:
        self.tables = tables if tables is not None else ProcessTables()
        self.rules: Rules | None = None
        self.disabled: frozenset[str] = frozenset()
        self.suppressions = Suppressions()

    def evaluate(self, items: Sequence[events_pb2.Envelope | bytes]) -> Outcome:
        """Evaluate envelopes (parsed, or serialized: decoded here) in order. Blocking CPU work."""
        out = Outcome()
        rules, disabled, suppressions = self.rules, self.disabled, self.suppressions
        now = time.time_ns()
        for item in items:
            if isinstance(item, bytes):
                try:
                    envelope = events_pb2.Envelope.FromString(item)
                except DecodeError:
                    out.undecodable += 1
                    continue
            else:
                envelope = item
            kind = envelope.WhichOneof("body")
            if kind == "process":
                category, fields = PROCESS_CREATION, self._process(envelope)
            elif kind == "flow":
                f = envelope.flow
                category = NETWORK_CONNECTION
                fields = network_connection_fields(
                    src_addr=f.src_addr,
                    src_port=f.src_port,
                    dst_addr=f.dst_addr,
                    dst_port=f.dst_port,
                    protocol=f.protocol,
                )
            else:
                continue
            if fields is None or rules is None:
                continue
            out.evaluated += 1
            for rule in rules.match(category, fields):
                if rule.id in disabled:
                    continue
                host = envelope.source
                held = suppressions.find(rule.id, host, fields, now)
                if held is not None:
                    n, last = out.suppressed.get(held.id, (0, 0))
                    out.suppressed[held.id] = (n + 1, max(last, envelope.ts_ns))
                    continue
                out.matches.append(Match(rule, host, envelope.event_id, envelope.ts_ns, category, fields))
        return out

    def _process(self, envelope: events_pb2.Envelope) -> dict[str, object] | None:
        """Feed the table; the fields of an exec (None for other process events)."""
        p = envelope.process
        source = envelope.source
        if p.kind == _EXIT:
            self.tables.exit(source, p.pid)
            return None
        if p.kind == _SNAPSHOT:
            self.tables.run(source, p.pid, Program(p.exe, tuple(p.argv), p.start_time_ns))
            return None
        if p.kind != _EXEC:
            return None
        parent = self.tables.get(source, p.ppid) if p.ppid else None
        argv = tuple(p.argv)
        self.tables.run(source, p.pid, Program(p.exe, argv, p.start_time_ns))
        return process_creation_fields(
            exe=p.exe,
            argv=argv,
            user=p.user,
            pid=p.pid,
            ppid=p.ppid,
            cwd=p.cwd,
            parent_exe=parent.exe if parent is not None else None,
            parent_argv=parent.argv if parent is not None else None,
        )
