"""Wildcards and escapes: a literal written with Sigma's escapes matches exactly itself (any case),
and `*`/`?` behave as in SigmaHQ rules, for arbitrary text."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from amoskys.detections.sigma.engine import RuleSet, rules_from_text

#: printable ASCII (wildcards, backslashes and quotes included) and a few letters beyond it, all of
#: which keep their length when lowercased
text = st.text(st.sampled_from([chr(c) for c in range(32, 127)] + list("éÉßñÑ€\n")), max_size=20)


def escape(literal: str) -> str:
    """A literal as a Sigma value: the wildcards and the escape character escaped."""
    return "".join("\\" + c if c in "*?\\" else c for c in literal)


def rule(key: str, value: str) -> RuleSet:
    doc = {
        "title": "t",
        "logsource": {"product": "linux", "category": "process_creation"},
        "detection": {"sel": {key: value}, "condition": "sel"},
    }
    ruleset = rules_from_text(yaml.safe_dump(doc))
    assert len(ruleset.rules) == 1, (ruleset.unsupported, ruleset.invalid)
    return ruleset


def matches(ruleset: RuleSet, command_line: str) -> bool:
    return bool(ruleset.match("process_creation", {"CommandLine": command_line}))


@settings(max_examples=150, deadline=None)
@given(literal=text, other=text)
def test_an_escaped_literal_matches_itself_in_any_case_and_nothing_else(literal: str, other: str) -> None:
    ruleset = rule("CommandLine", escape(literal))
    assert matches(ruleset, literal)
    assert matches(ruleset, literal.upper()) == (literal.upper().lower() == literal.lower())
    assert matches(ruleset, other) == (other.lower() == literal.lower())


@settings(max_examples=150, deadline=None)
@given(needle=text.filter(bool), before=text, after=text)
def test_contains_finds_an_escaped_literal_anywhere(needle: str, before: str, after: str) -> None:
    ruleset = rule("CommandLine|contains", escape(needle))
    assert matches(ruleset, before + needle + after)
    assert matches(ruleset, before + "x" + after) == (needle.lower() in (before + "x" + after).lower())


@settings(max_examples=100, deadline=None)
@given(prefix=text, middle=text, suffix=text)
def test_star_spans_any_run_and_question_mark_exactly_one_character(
    prefix: str, middle: str, suffix: str
) -> None:
    star = rule("CommandLine", escape(prefix) + "*" + escape(suffix))
    assert matches(star, prefix + middle + suffix) == bool(prefix + middle + suffix)  # empty: a missing field
    one = rule("CommandLine", escape(prefix) + "?" + escape(suffix))
    assert matches(one, prefix + "Z" + suffix)
    assert not matches(one, prefix + "ZZ" + suffix)  # lower() keeps lengths in this alphabet
    assert not matches(one, prefix + suffix)
