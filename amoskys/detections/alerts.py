"""From matches to Alert events: one alert per rule and host while its matches keep coming within
`[detections] alert_window_seconds` of each other, at most one follow-up event per window.

The first match of a rule on a host opens an alert: an Alert event (count 1) whose event_id is its
`alert_id`. A repeat within the window of the alert's last match updates its row at once (an
`AlertSeen` op: count, last seen, evidence) and waits for the alert's next follow-up: an Alert event
with the running count and the evidence of the repeats, sent no sooner than one window after the
alert's previous event. A match a window or more after the last one opens a new alert, and so does
one after the alert was resolved or called a false positive.

Event ids are made from what they describe (the rule, the host and the matching event; the alert and
its count), shaped as UUIDv7 with the match time: evaluating the same events twice (a restart between
evaluating and saving the position) makes the same ids, which the store stores once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from amoskys.detections.evaluate import Match, field_text
from amoskys.detections.sigma.fields import PROCESS_CREATION
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2
from amoskys.store import alerts as rows
from amoskys.store.alerts import AlertSeen, OpenAlert

_NS = 1_000_000_000
#: Longest summary, and longest attribute value, kept on an Alert (characters).
SUMMARY_MAX, ATTRIBUTE_MAX = 300, 1000
#: An alert idle this long past its window (by the wall clock) is forgotten whatever the newest match.
FORGET_AFTER_NS = 3600 * _NS
_LEVEL_NUMBERS = {name: i for i, name in enumerate(rows.LEVELS) if name}


def derived_id(ts_ns: int, *parts: str) -> str:
    """A UUIDv7-shaped id: the 48-bit Unix ms of `ts_ns`, then 74 bits of SHA-256 over `parts`."""
    digest = int.from_bytes(hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).digest()[:10])
    ms = max(0, ts_ns // 1_000_000) & ((1 << 48) - 1)
    rand_a = digest >> 68 & 0xFFF
    rand_b = digest & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class _Open:
    alert_id: str
    rule_id: str
    host: str
    title: str
    level: str
    tags: tuple[str, ...]
    count: int
    first_seen_ns: int
    last_seen_ns: int
    last_event_at: float  # monotonic time of its last Alert event (opening or follow-up)
    pending: int = 0  # repeats since its last Alert event
    evidence: list[str] = field(default_factory=list)  # event ids of those repeats (at most MAX_EVIDENCE)
    known: set[str] = field(
        default_factory=set
    )  # evidence ids already counted (a re-evaluation adds nothing)


class AlertBook:
    """The open alerts of this appliance's rules, in memory (loaded from the `alerts` rows at start)."""

    def __init__(
        self, stamper: EnvelopeStamper, *, window_seconds: float, monotonic: Callable[[], float]
    ) -> None:
        self._stamper = stamper
        self.window_s = window_seconds
        self._window_ns = int(window_seconds * _NS)
        self._mono = monotonic
        self._open: dict[tuple[str, str], _Open] = {}
        self._by_id: dict[str, tuple[str, str]] = {}
        self._watermark = 0  # the newest match time seen (a catch-up of old events keeps it old)

    def __len__(self) -> int:
        return len(self._open)

    def load(
        self, alerts: Iterable[OpenAlert], titles: Mapping[str, tuple[str, str, tuple[str, ...]]]
    ) -> None:
        """Take up the open alerts of the `alerts` table (those seen within a window); `titles` gives each
        loaded rule's (title, level, tags). Their next follow-up may go one window from now."""
        now = self._mono()
        for a in alerts:
            title, level, tags = titles.get(a.rule_id, ("", "", ()))
            entry = _Open(
                a.alert_id,
                a.rule_id,
                a.host,
                title,
                level,
                tags,
                a.count,
                a.first_seen_ns,
                a.last_seen_ns,
                now,
            )
            entry.known.update(a.evidence)
            self._put(entry)

    def _put(self, entry: _Open) -> None:
        key = (entry.host, entry.rule_id)
        old = self._open.get(key)
        if old is not None:
            self._by_id.pop(old.alert_id, None)
        self._open[key] = entry
        self._by_id[entry.alert_id] = key

    def _drop(self, entry: _Open) -> None:
        self._open.pop((entry.host, entry.rule_id), None)
        self._by_id.pop(entry.alert_id, None)

    def add(self, matches: Iterable[Match]) -> tuple[list[events_pb2.Envelope], list[AlertSeen]]:
        """Fold matches (in event order) into alerts: the Alert events to publish (openings, and the
        follow-ups of alerts a match outlived), and the row updates of repeats."""
        events: list[events_pb2.Envelope] = []
        seen: dict[str, _Open] = {}
        for m in matches:
            self._watermark = max(self._watermark, m.ts_ns)
            key = (m.host, m.rule.id)
            entry = self._open.get(key)
            if entry is not None and m.ts_ns >= entry.last_seen_ns + self._window_ns:
                events += self._follow_up(entry)  # its last repeats, before it is forgotten
                self._drop(entry)
                seen.pop(entry.alert_id, None)
                entry = None
            if entry is None:
                envelope = self._opening(m)
                self._put(
                    _Open(
                        envelope.alert.alert_id,
                        m.rule.id,
                        m.host,
                        m.rule.title,
                        m.rule.level,
                        m.rule.tags,
                        1,
                        m.ts_ns,
                        m.ts_ns,
                        self._mono(),
                    )
                )
                self._open[key].known.add(m.event_id)
                events.append(envelope)
                continue
            if m.event_id in entry.known:  # evaluated again (after a restart): counted already
                continue
            entry.count += 1
            entry.pending += 1
            entry.first_seen_ns = min(entry.first_seen_ns, m.ts_ns)
            entry.last_seen_ns = max(entry.last_seen_ns, m.ts_ns)
            if len(entry.known) < 4 * rows.MAX_EVIDENCE:
                entry.known.add(m.event_id)
            if m.evidence and len(entry.evidence) < rows.MAX_EVIDENCE:
                entry.evidence.append(m.event_id)
            seen[entry.alert_id] = entry
        ops = [
            AlertSeen(
                e.alert_id, self._stamper.source, e.count, e.first_seen_ns, e.last_seen_ns, tuple(e.evidence)
            )
            for e in seen.values()
        ]
        return events, ops

    def next_due(self) -> float | None:
        """The monotonic time the next follow-up is due (None: none is pending)."""
        due = [e.last_event_at + self.window_s for e in self._open.values() if e.pending]
        return min(due) if due else None

    def due(self, now_wall_ns: int) -> list[events_pb2.Envelope]:
        """Follow-ups whose window has passed; alerts idle for a window, by the wall clock and by the newest
        match seen (a catch-up of old events keeps its alerts), are forgotten (a later match opens anew)."""
        now = self._mono()
        events: list[events_pb2.Envelope] = []
        for entry in list(self._open.values()):
            if entry.pending and now >= entry.last_event_at + self.window_s:
                events += self._follow_up(entry)
            idle_since = entry.last_seen_ns + self._window_ns
            if entry.pending or now_wall_ns < idle_since:
                continue
            if self._watermark >= idle_since or now_wall_ns >= idle_since + FORGET_AFTER_NS:
                self._drop(entry)
        return events

    def close(self, alert_id: str) -> list[events_pb2.Envelope]:
        """The alert was resolved (or called a false positive): its pending repeats go out now, and the
        next match of its rule on its host opens a new alert."""
        key = self._by_id.get(alert_id)
        entry = self._open.get(key) if key is not None else None
        if entry is None:
            return []
        events = self._follow_up(entry)
        self._drop(entry)
        return events

    def flush(self) -> list[events_pb2.Envelope]:
        """Every pending follow-up now (at shutdown)."""
        events: list[events_pb2.Envelope] = []
        for entry in self._open.values():
            events += self._follow_up(entry)
        return events

    # ------------------------------------------------------------------ the events

    def _opening(self, m: Match) -> events_pb2.Envelope:
        rule = m.rule
        envelope = events_pb2.Envelope(ts_ns=m.ts_ns)
        a = envelope.alert
        a.rule = rule.id
        a.rule_id = rule.id
        a.title = rule.title
        a.level = _LEVEL_NUMBERS.get(rule.level, 0)  # type: ignore[assignment]  # an Alert.Level number
        a.severity = rows.SEVERITY_OF_LEVEL.get(rule.level, 0)  # type: ignore[assignment]
        a.tags.extend(rule.tags)
        a.count = 1
        a.host = m.host
        a.summary = m.summary[:SUMMARY_MAX] or summary(rule.title, m.category, m.fields)
        if m.evidence:
            a.related_event_ids.append(m.event_id)
        a.attributes["category"] = m.category
        for name, value in m.fields.items():
            a.attributes[name] = field_text(value)[:ATTRIBUTE_MAX]
        self._stamper.stamp(envelope, ts_ns=m.ts_ns)
        envelope.event_id = a.alert_id = derived_id(m.ts_ns, rule.id, m.host, m.event_id)
        return envelope

    def _follow_up(self, entry: _Open) -> list[events_pb2.Envelope]:
        if not entry.pending:
            return []
        envelope = events_pb2.Envelope(ts_ns=entry.last_seen_ns)
        a = envelope.alert
        a.rule = a.rule_id = entry.rule_id
        a.title = entry.title
        a.level = _LEVEL_NUMBERS.get(entry.level, 0)  # type: ignore[assignment]
        a.severity = rows.SEVERITY_OF_LEVEL.get(entry.level, 0)  # type: ignore[assignment]
        a.tags.extend(entry.tags)
        a.count = entry.count
        a.host = entry.host
        a.alert_id = entry.alert_id
        a.summary = f"{entry.title}: {entry.pending} more (count {entry.count})"[:SUMMARY_MAX]
        a.related_event_ids.extend(entry.evidence)
        self._stamper.stamp(envelope, ts_ns=entry.last_seen_ns)
        envelope.event_id = derived_id(entry.last_seen_ns, entry.alert_id, str(entry.count))
        entry.pending = 0
        entry.evidence = []
        entry.last_event_at = self._mono()
        return [envelope]


def summary(title: str, category: str, fields: Mapping[str, object]) -> str:
    """One line: the rule's title and what matched (the command line, or the connection)."""
    if category == PROCESS_CREATION:
        what = fields.get("CommandLine") or fields.get("Image") or ""
        text = f"{title}: {what}"
    else:
        text = (
            f"{title}: {fields.get('SourceIp', '?')}:{fields.get('SourcePort', '?')} -> "
            f"{fields.get('DestinationIp', '?')}:{fields.get('DestinationPort', '?')}/{fields.get('Protocol', '?')}"
        )
    return text[:SUMMARY_MAX]
