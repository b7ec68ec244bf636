"""Sigma values as Python matchers: one field's list of values (after pySigma applied the modifiers)
turned into a single function of the event.

Semantics, as SigmaHQ rules expect them:
- strings match case-insensitively, except `cased` values and regular expressions (`re`, case-sensitive
  unless `i`); `*` is any run of characters, `?` any one character (pySigma parsed them and the `\\`
  escapes); equality, `startswith`, `endswith` and `contains` literals of one field are grouped (a set,
  two tuples for str.startswith/endswith, one loop of `in`), other wildcard patterns become one regex;
- regular expressions search anywhere in the value (anchor them with ^ and $);
- numbers compare numerically (`lt`, `lte`, `gt`, `gte`); a value that is not a number never matches;
- `null` matches a missing (or empty) field, `exists` tests presence, `cidr` tests address membership,
  `fieldref` compares with another field of the same event;
- any condition on a field missing from the event is false.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)


class UnsupportedRule(Exception):
    """A rule uses something the engine cannot evaluate; `reason` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventView:
    """One event's fields as text, and lowercased for case-insensitive matching (built once per event)."""

    __slots__ = ("low", "text")

    def __init__(self, fields: Mapping[str, object]) -> None:
        text: dict[str, str] = {}
        for key, value in fields.items():
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                text[key] = value  # type: ignore[assignment]
            elif kind is bool:
                text[key] = "true" if value else "false"
            else:
                text[key] = str(value)
        self.text = text
        self.low = {key: value.lower() for key, value in text.items()}


Matcher = Callable[[EventView], bool]
Kind = Literal["eq", "pre", "suf", "con", "any", "glob"]

_RE_FLAGS: Final = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}
_COMPARE: Final[Mapping[CompareOperators, Callable[[float, float], bool]]] = {
    CompareOperators.LT: operator.lt,
    CompareOperators.LTE: operator.le,
    CompareOperators.GT: operator.gt,
    CompareOperators.GTE: operator.ge,
    CompareOperators.NEQ: operator.ne,
}


@dataclass(frozen=True, slots=True)
class StringTest:
    """A Sigma string value reduced to one test: equality, prefix, suffix, substring, any value, or
    a wildcard pattern (`glob`: the pattern as a regex source, matched in full)."""

    kind: Kind
    literal: str
    cased: bool


def string_test(value: SigmaString, *, keyword: bool = False) -> StringTest:
    """The test of one Sigma string; keywords (no field) are searched anywhere in the value."""
    parts = list(value.s)
    if any(isinstance(part, Placeholder) for part in parts):
        raise UnsupportedRule("placeholders are not supported")
    cased = isinstance(value, SigmaCasedString)
    if keyword:
        if not parts or parts[0] is not SpecialChars.WILDCARD_MULTI:
            parts.insert(0, SpecialChars.WILDCARD_MULTI)
        if parts[-1] is not SpecialChars.WILDCARD_MULTI:
            parts.append(SpecialChars.WILDCARD_MULTI)
    fold: Callable[[str], str] = (lambda s: s) if cased else str.lower
    star = SpecialChars.WILDCARD_MULTI
    inner = parts[1:-1] if len(parts) >= 2 else []
    if not parts:
        return StringTest("eq", "", cased)
    if all(isinstance(part, str) for part in parts):
        return StringTest("eq", fold("".join(parts)), cased)  # type: ignore[arg-type]
    if all(part is star for part in parts):
        return StringTest("any", "", cased)
    if len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
        return StringTest("suf", fold(parts[1]), cased)
    if len(parts) == 2 and parts[1] is star and isinstance(parts[0], str):
        return StringTest("pre", fold(parts[0]), cased)
    if len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(inner[0], str):
        return StringTest("con", fold(inner[0]), cased)
    pattern = []
    for part in parts:
        if part is star:
            pattern.append(".*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            pattern.append(".")
        else:
            pattern.append(re.escape(fold(part)))  # type: ignore[arg-type]
    return StringTest("glob", "".join(pattern), cased)


def _present(value: str | None) -> bool:
    return value is not None and value != ""


def _string_matcher(field: str, tests: Sequence[StringTest], cased: bool) -> Matcher:
    """One function for all the string tests of a field that share case sensitivity (OR-linked)."""
    eq = frozenset(t.literal for t in tests if t.kind == "eq")
    pre = tuple(t.literal for t in tests if t.kind == "pre")
    suf = tuple(t.literal for t in tests if t.kind == "suf")
    con = tuple(t.literal for t in tests if t.kind == "con")
    globs = [t.literal for t in tests if t.kind == "glob"]
    anything = any(t.kind == "any" for t in tests)
    glob = re.compile("|".join(f"(?:{g})" for g in globs), re.DOTALL) if globs else None

    if anything:
        return lambda ev: _present((ev.text if cased else ev.low).get(field))
    # The common shapes get their own closure: no test of an empty group on the hot path.
    if not (eq or pre or con or glob) and suf:

        def ends(ev: EventView) -> bool:
            v = (ev.text if cased else ev.low).get(field)
            return v is not None and v.endswith(suf)

        return ends
    if not (eq or pre or suf or glob) and con:
        if len(con) == 1:
            (needle,) = con

            def contains_one(ev: EventView) -> bool:
                v = (ev.text if cased else ev.low).get(field)
                return v is not None and needle in v

            return contains_one

        def contains(ev: EventView) -> bool:
            v = (ev.text if cased else ev.low).get(field)
            if v is None:
                return False
            for c in con:
                if c in v:
                    return True
            return False

        return contains

    def match(ev: EventView) -> bool:
        v = (ev.text if cased else ev.low).get(field)
        if v is None:
            return False
        if eq and v in eq:
            return True
        if pre and v.startswith(pre):
            return True
        if suf and v.endswith(suf):
            return True
        for c in con:
            if c in v:
                return True
        return glob is not None and glob.fullmatch(v) is not None

    return match


def _regex(field: str, value: SigmaRegularExpression) -> Matcher:
    flags = 0
    for flag in value.flags:
        flags |= _RE_FLAGS[flag]
    try:
        rx = re.compile(str(value.regexp), flags)
    except re.error as err:
        raise UnsupportedRule(f"regular expression {str(value.regexp)!r}: {err}") from err
    search = rx.search

    def m(ev: EventView) -> bool:
        v = ev.text.get(field)
        return v is not None and search(v) is not None

    return m


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _equals_number(field: str, number: float) -> Matcher:
    def m(ev: EventView) -> bool:
        v = ev.text.get(field)
        return v is not None and _number(v) == number

    return m


def _compare(field: str, op: Callable[[float, float], bool], number: float) -> Matcher:
    def m(ev: EventView) -> bool:
        v = ev.text.get(field)
        if v is None:
            return False
        n = _number(v)
        return n is not None and op(n, number)

    return m


def _cidr(field: str, value: SigmaCIDRExpression) -> Matcher:
    network = value.network

    def m(ev: EventView) -> bool:
        v = ev.text.get(field)
        if not v:
            return False
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            return False
        return address.version == network.version and address in network

    return m


def _fieldref(field: str, value: SigmaFieldReference) -> Matcher:
    other = value.field

    def m(ev: EventView) -> bool:
        v = ev.low.get(field)
        w = ev.low.get(other)
        if v is None or w is None:
            return False
        if value.starts_with and value.ends_with:
            return w in v
        if value.starts_with:
            return v.startswith(w)
        if value.ends_with:
            return v.endswith(w)
        return v == w

    return m


def _null(field: str) -> Matcher:
    return lambda ev: not _present(ev.text.get(field))


def _exists(field: str, exists: bool) -> Matcher:
    return lambda ev: _present(ev.text.get(field)) is exists


def _bool(field: str, flag: bool) -> Matcher:
    expected = "true" if flag else "false"
    return lambda ev: ev.low.get(field) == expected


def value_matchers(field: str, values: Sequence[SigmaType], *, keyword: bool = False) -> list[Matcher]:
    """Matchers for values of one field that are OR-linked; string tests are grouped into at most two
    matchers (case-insensitive and cased)."""
    tests: list[StringTest] = []
    matchers: list[Matcher] = []
    pending = list(values)
    while pending:
        value = pending.pop(0)
        if isinstance(value, SigmaExpansion):  # windash, base64offset: alternatives, OR-linked
            pending.extend(value.values)
        elif isinstance(value, SigmaString):
            tests.append(string_test(value, keyword=keyword))
        elif keyword:
            if isinstance(value, SigmaRegularExpression):
                matchers.append(_regex(field, value))
            elif isinstance(value, SigmaNumber) and not isinstance(value, SigmaTimestampPart):
                tests.append(string_test(SigmaString.from_str(str(value.number)), keyword=True))
            else:
                raise UnsupportedRule(f"keyword value of type {type(value).__name__} is not supported")
        else:
            matchers.append(_single(field, value))
    for cased in (False, True):
        group = [t for t in tests if t.cased is cased]
        if group:
            matchers.insert(0, _string_matcher(field, group, cased))
    return matchers


def _single(field: str, value: SigmaType) -> Matcher:
    if isinstance(value, SigmaTimestampPart):
        raise UnsupportedRule(f"timestamp modifiers are not supported (field {field!r})")
    if isinstance(value, SigmaRegularExpression):
        if value.contains_placeholder():
            raise UnsupportedRule("placeholders are not supported")
        return _regex(field, value)
    if isinstance(value, SigmaNumber):
        return _equals_number(field, float(value.number))
    if isinstance(value, SigmaBool):
        return _bool(field, value.boolean)
    if isinstance(value, SigmaNull):
        return _null(field)
    if isinstance(value, SigmaExists):
        return _exists(field, value.exists)
    if isinstance(value, SigmaCompareExpression):
        return _compare(field, _COMPARE[value.op], float(value.number.number))
    if isinstance(value, SigmaCIDRExpression):
        return _cidr(field, value)
    if isinstance(value, SigmaFieldReference):
        return _fieldref(field, value)
    raise UnsupportedRule(f"value of type {type(value).__name__} is not supported (field {field!r})")


def any_of(matchers: Sequence[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        a, b = matchers
        return lambda ev: a(ev) or b(ev)
    ms = tuple(matchers)

    def m(ev: EventView) -> bool:
        for f in ms:
            if f(ev):
                return True
        return False

    return m


def all_of(matchers: Sequence[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        a, b = matchers
        return lambda ev: a(ev) and b(ev)
    ms = tuple(matchers)

    def m(ev: EventView) -> bool:
        for f in ms:
            if not f(ev):
                return False
        return True

    return m


def negate(matcher: Matcher) -> Matcher:
    return lambda ev: not matcher(ev)
