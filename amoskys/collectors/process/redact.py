"""Command-line redaction: secret values in argv are masked before an event leaves the collector.

Each configured pattern is a regular expression for the *end* of an option name (case-insensitive):
with ``password`` it masks the value in ``--password=x``, ``--db-password=x``, ``PASSWORD=x``,
``password:x``, ``--password x`` (the next argument) and the same forms inside one argument (a
``sh -c '...'`` script). Credentials in URLs (``https://user:secret@host``) are always masked.
``--password-file=/path`` is left alone: the option name must end with the pattern.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MASK = "********"


class Redactor:
    """Masks secret values in an argv; ``redact()`` says whether anything was masked."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        if not self.patterns:
            self._inline = self._spaced = self._flag = None
        else:
            names = "|".join(f"(?:{p})" for p in self.patterns)
            name = rf"[\w.-]*(?:{names})"
            # NAME=value or NAME:value, anywhere in an argument
            self._inline = re.compile(
                rf"(?<![\w.-])(-{{0,2}}{name}\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;\"']+)", re.IGNORECASE
            )
            # --NAME value, inside one argument (a shell script)
            self._spaced = re.compile(
                rf"(?<![\w.-])(-{{1,2}}{name}\s+)(?!-)(\"[^\"]*\"|'[^']*'|[^\s&;\"']+)", re.IGNORECASE
            )
            # --NAME as a whole argument: the next argument is its value
            self._flag = re.compile(rf"-{{1,2}}{name}", re.IGNORECASE)
        self._url = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^/\s@]+)(@)", re.IGNORECASE)

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
            elif self._flag is not None and self._flag.fullmatch(arg):
                mask_next = True
            out.append(new)
        return out, changed

    def _redact_one(self, arg: str) -> str:
        if self._inline is not None and self._spaced is not None:
            arg = self._inline.sub(rf"\g<1>{MASK}", arg)
            arg = self._spaced.sub(rf"\g<1>{MASK}", arg)
        if "://" in arg:
            arg = self._url.sub(rf"\g<1>{MASK}\g<3>", arg)
        return arg
