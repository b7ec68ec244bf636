"""Subject names and message ids of the fleet stream (amoskys/nats/subjects.py)."""

from __future__ import annotations

import pytest

from amoskys.nats import subjects


@pytest.mark.parametrize("value", ["", "a b", "a*", ">", "tab\there", "new\nline", "x\x00"])
def test_check_token_refuses_what_cannot_be_a_subject_token_naming_the_key(value: str) -> None:
    with pytest.raises(ValueError, match=r"^forwarders\.nats\.site: "):
        subjects.check_token("forwarders.nats.site", value)


@pytest.mark.parametrize("value", ["hq", "eu-west_1", "box.example.org", "nats:box", "ü"])
def test_check_token_takes_names(value: str) -> None:
    subjects.check_token("site", value)


def test_event_subject_escapes_dots_in_every_token() -> None:
    assert (
        subjects.event_subject("eu.west", "box.lan", "agent.a", "flow")
        == "amoskys.eu_west.box_lan.agent_a.flow"
    )


def test_event_subject_refuses_a_wildcard_source() -> None:
    with pytest.raises(ValueError):
        subjects.event_subject("site", "box", "evil.>", "flow")


def test_parse_subject_returns_the_escaped_tokens() -> None:
    subject = subjects.event_subject("s.1", "box", "agent-1", "process")
    assert subjects.parse_subject(subject) == ("s_1", "box", "agent-1", "process")


@pytest.mark.parametrize("subject", ["amoskys.a.b.c", "other.a.b.c.d", "amoskys.a..c.d", "amoskys.a.b.c.d.e"])
def test_parse_subject_refuses_what_is_not_an_event_subject(subject: str) -> None:
    with pytest.raises(ValueError):
        subjects.parse_subject(subject)


def test_msg_id_is_source_and_event_id() -> None:
    assert subjects.msg_id("box1", "0190-abc") == "box1:0190-abc"


def test_box_filter_matches_only_that_box() -> None:
    assert subjects.box_filter("s.1", "b.2") == "amoskys.s_1.b_2.>"
    assert subjects.site_filter("s") == "amoskys.s.>"
