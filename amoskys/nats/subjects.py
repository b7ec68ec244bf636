"""Subject names of the fleet stream: ``amoskys.<site>.<box>.<source>.<kind>``, and message ids.

A token is one dot-free part of a subject. Names that hold ``*``, ``>`` or whitespace (or are empty)
are refused where they are configured or enrolled (`check_token`): a wildcard in a box name would let
its subject filter match other boxes. A dot is legal in a name (``host.example``) but would split the
token, so it is escaped to ``_`` (`escape`).
"""

from __future__ import annotations

#: The first token of every subject the fleet uses.
ROOT = "amoskys"
#: The header JetStream deduplicates on.
MSG_ID_HEADER = "Nats-Msg-Id"

_FORBIDDEN = frozenset("*>")


def check_token(key: str, value: str) -> None:
    """Raise ValueError naming `key` when `value` cannot be a subject token (empty, `*`, `>`,
    whitespace, or a control character)."""
    if not value:
        raise ValueError(f"{key}: must not be empty (it names a NATS subject token)")
    for ch in value:
        if ch in _FORBIDDEN or ch.isspace() or not ch.isprintable():
            raise ValueError(
                f"{key}: {value!r} holds {ch!r}; a NATS subject token may not contain '*', '>', "
                "whitespace or control characters"
            )


def escape(token: str) -> str:
    """`token` as one subject token: checked, with every `.` replaced by `_`."""
    check_token("subject token", token)
    return token.replace(".", "_")


def event_subject(site: str, box: str, source: str, kind: str) -> str:
    """The subject an event is published to."""
    return f"{ROOT}.{escape(site)}.{escape(box)}.{escape(source)}.{escape(kind)}"


def box_filter(site: str, box: str) -> str:
    """The subject filter matching every event of one box."""
    return f"{ROOT}.{escape(site)}.{escape(box)}.>"


def site_filter(site: str) -> str:
    """The subject filter matching every event of one site."""
    return f"{ROOT}.{escape(site)}.>"


def parse_subject(subject: str) -> tuple[str, str, str, str]:
    """(site, box, source, kind) of an event subject, in their escaped forms. Raises ValueError for a
    subject that is not ``amoskys.<site>.<box>.<source>.<kind>``."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != ROOT or not all(parts[1:]):
        raise ValueError(f"not an event subject: {subject!r}")
    return parts[1], parts[2], parts[3], parts[4]


def msg_id(source: str, event_id: str) -> str:
    """The Nats-Msg-Id of an event: unique per (source, event_id), as the store's key is."""
    return f"{source}:{event_id}"
