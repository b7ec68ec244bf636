"""Command-line redaction: secret values in argv are masked before an event leaves the collector.

Each configured pattern is a regular expression for the *end* of an option name (case-insensitive):
with ``password`` it masks the value in ``--password=x``, ``--db-password=x``, ``PASSWORD=x``,
``password:x``, ``--password x`` (the next argument) and the same forms inside one argument (a
``sh -c '...'`` script). Credentials in URLs (``https://user:secret@host``) are always masked.
``--password-file=/path`` is left alone: the option name must end with the pattern. An argument that
is an option (``--password=correct horse``) has the rest of the argument as its value, spaces and all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MASK = "********"


#: A value: quoted, or up to white space, "&", ";" or a quote.
_VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|[^\s&;\"']+")
#: "NAME=" or "NAME:" anywhere in an argument (group 1 is the option name); the value follows.
_ASSIGN = re.compile(r"(?<![\w.-])-{0,2}([\w.-]+)\s*[=:]\s*")
#: "--NAME " inside one argument (a shell script); the value follows unless it is an option.
_SPACED = re.compile(r"(?<![\w.-])-{1,2}([\w.-]+)\s+(?!-)")
#: --NAME as a whole argument: the next argument is its value.
_FLAG = re.compile(r"-{1,2}([\w.-]+)")
_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^/\s@]+)(@)", re.IGNORECASE)


class Redactor:
    """Masks secret values in an argv; ``redact()`` says whether anything was masked.

    Candidate ``name=value`` pairs are found by one linear scan; only their (short) names are then
    tested against the patterns, so long arguments cost no backtracking.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        names = "|".join(f"(?:{p})" for p in self.patterns)
        self._secret_name = re.compile(rf"(?:{names})\Z", re.IGNORECASE) if self.patterns else None

    def _is_secret(self, name: str) -> bool:
        return self._secret_name is not None and self._secret_name.search(name) is not None

    def _mask_values(self, names: re.Pattern[str], arg: str) -> str:
        """Mask the value after every `names` match whose option name is secret."""
        out: list[str] = []
        done = 0
        for m in names.finditer(arg):
            if m.start() < done or not self._is_secret(m.group(1)):
                continue
            if m.start() == 0 and arg.startswith("-") and names is _ASSIGN and m.end() < len(arg):
                # `--password=a b c` as one argument: an option's value is the rest of it, spaces too
                out += [arg[done : m.end()], MASK]
                done = len(arg)
                break
            value = _VALUE.match(arg, m.end())
            if value is None:
                continue
            out.append(arg[done : m.end()])
            out.append(MASK)
            done = value.end()
        if not out:
            return arg
        out.append(arg[done:])
        return "".join(out)

    def redact(self, argv: Sequence[str]) -> tuple[list[str], bool]:
        """(the redacted argv, True when any value was masked)."""
        out: list[str] = []
        changed = False
        mask_next = False
        for arg in argv:
            if mask_next:
                mask_next = False
                if not arg.startswith("-"):
                    out.append(MASK)
                    changed = True
                    continue
            new = self._redact_one(arg)
            if new != arg:
                changed = True
            elif arg.startswith("-"):
                flag = _FLAG.fullmatch(arg)
                mask_next = flag is not None and self._is_secret(flag.group(1))
            out.append(new)
        return out, changed

    def _redact_one(self, arg: str) -> str:
        # cheap tests first: most arguments hold neither "=", ":" nor an option with a value
        if self._secret_name is not None:
            if "=" in arg or ":" in arg:
                arg = self._mask_values(_ASSIGN, arg)
            if "-" in arg and " " in arg:
                arg = self._mask_values(_SPACED, arg)
        if "://" in arg:
            arg = _URL.sub(rf"\g<1>{MASK}\g<3>", arg)
        return arg
