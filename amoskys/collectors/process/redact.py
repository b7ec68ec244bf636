"""Command-line redaction: secret values in argv are masked before an event leaves the collector.

Every rule replaces a secret by ``********`` and keeps the rest of the command line (the rules, with
examples, are listed in README.md under "Redaction"):

- **Secret names** (``redact_patterns``: regular expressions for the *end* of an option name,
  case-insensitive): the value of ``--password=x``, ``PASSWORD=x``, ``password:x``, ``"password":
  "x"``, ``--password x`` (the next argument, unless it is an option). A name ending in ``-file``,
  ``-path``, ``-stdin``, ``-env`` … names where the secret is, not the secret; a flag such as
  ``--no-password`` or ``--askpass`` takes no value.
- **Tools** (redact_tools.py): short options that are secrets only to some tools (``mysql -pX``,
  ``sshpass -p X``, ``redis-cli -a X``, ``docker login -p X``, ``curl -u user:X``, ``smbclient -U
  user%X``, ``ldapsearch -w X``, ``htpasswd -b f user X`` …), in the tool's context only.
- **Shapes**, whatever the option: HTTP ``Authorization:`` and ``Cookie:`` header values, ``Bearer
  X``, the password (and a token-like user) in ``scheme://user:password@host``, AMOSKYS API tokens
  (43 base64url characters) and tokens with a well-known prefix (``ghp_``, ``glpat-``, ``xoxb-``,
  JWTs …).

An argument holding white space (a ``sh -c`` script) is also split into words and commands, and the
same rules run on each command. The rules run again until nothing changes (masking a tool's name
changes what follows it), so redaction is idempotent. Every regular expression is linear: each scan
starts only where a run of its characters starts (a scan from every character of a run is
quadratic), so a huge argument costs time in proportion to its length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from amoskys.collectors.process.redact_tools import TOOLS, Part, Tool

MASK = "********"

#: A value: quoted, or up to white space, "&", ";" or a quote; a "," ends it only before "name="
#: (``password=x,uid=0`` in mount options).
_VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|[^\s&;\"',]+(?:,(?![\w.-]+=)[^\s&;\"',]*)*")
#: "NAME=" or "NAME:" anywhere in an argument (group 1 is the option name; a closing quote may follow
#: it, as in JSON); the value follows.
_ASSIGN = re.compile(r"(?<![\w.-])-{0,2}([\w.-]+)[\"']?\s*[=:]\s*")
#: --NAME as a whole word: the next word is its value.
_FLAG = re.compile(r"-{1,2}([\w.-]+)")
#: Names that say where a secret is or how it is handled, not the secret: their value is kept.
_NOT_A_VALUE = re.compile(
    r"(?:file|files|path|dir|fd|stdin|env|var|prompt|cmd|command|helper|program|length|len|policy|flags)\Z",
    re.IGNORECASE,
)
#: Flags that switch something on or off: no value follows (``--no-password``, ``--askpass``,
#: ``--with-token``, ``--anyauth``).
_BOOLEAN = re.compile(
    r"(?:^|[-_.])(?:no|ask|skip|with|without|prompt|show|print|any|allow|disable|enable|require|"
    r"reset|change|generate|random|use)[-_.]|^(?:ask|any|no)(?=pass|auth)",
    re.IGNORECASE,
)
#: "Authorization: [scheme] VALUE" (also Proxy-Authorization, and "=" as in git's http.extraHeader).
_AUTH_HEADER = re.compile(
    r"(?<![\w-])((?:proxy-)?authorization\s*[:=]\s*(?:[A-Za-z][\w.+/~-]*\s+(?=[^\s\"']))?)",
    re.IGNORECASE,
)
#: "Bearer VALUE" outside a header (12 characters at least: "bearer of bad news" stays).
_BEARER = re.compile(r"(?<![\w-])(bearer\s+)([^\s\"'&;]{12,})", re.IGNORECASE)
#: "Cookie: a=b; c=d": each value is masked.
_COOKIE_HEADER = re.compile(r"(?<![\w-])cookie\s*:\s*", re.IGNORECASE)
#: A cookie name starts after a separator (not inside a run: scanning every run for its "=" from each
#: of its characters would be quadratic) and holds no ":" (RFC 6265).
_COOKIE_PAIR = re.compile(r"(?<![^\s;\"'])([^\s=;:\"']+)=(\"[^\"]*\"|[^\s;\"']*)")
_COOKIE_NEXT = re.compile(r";\s*")
#: scheme://userinfo@ — the userinfo runs up to the last "@" before the host. The scheme starts where
#: a run of scheme characters starts (not at every "." or "-" inside one: that would be quadratic).
_URL = re.compile(r"(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://)([^/?#\s\"'@]*(?:@[^/?#\s\"'@]*)*)@", re.IGNORECASE)
#: A user name that is a token (``https://<token>@github.com``): long, with a digit and a letter.
_TOKEN_USER = re.compile(r"(?=[^:]*\d)(?=[^:]*[A-Za-z])[\w.~-]{20,}\Z")
#: Token shapes, as whole words (a one-letter flag may be glued in front: ``-tTOKEN``). The group
#: that matched is kept: a well-known prefix, or the glued flag. The last alternative is the AMOSKYS API token
#: (amoskys.web.passwords.new_token: 32 random bytes in base64url, 43 characters).
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_.-]{15})"  # the shortest shape: a short word fails at once
    r"(?:(gh[pousr]_)[A-Za-z0-9]{36,}"
    r"|(github_pat_)[A-Za-z0-9_]{60,}"
    r"|(glpat-)[A-Za-z0-9_-]{20,}"
    r"|(xox[abposr]-)[A-Za-z0-9-]{10,}"
    r"|(npm_)[A-Za-z0-9]{36}"
    r"|(pypi-)AgE[A-Za-z0-9_-]{50,}"
    r"|([sr]k_live_)[A-Za-z0-9]{20,}"
    r"|(AIza)[A-Za-z0-9_-]{35}"
    r"|(hv[sb]\.)[A-Za-z0-9_-]{20,}"
    r"|()eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|(-[A-Za-z])?(?=[A-Za-z0-9_-]{0,42}[a-z])(?=[A-Za-z0-9_-]{0,42}[A-Z])[A-Za-z0-9_-]{43})"
    r"(?![A-Za-z0-9_-])"
)
#: A shell script's words (quotes kept) and the separators between its commands.
_SCRIPT = re.compile(r"((?:\"[^\"]*\"|'[^']*'|[^\s;&|()<>\"'`])+)|([;&|()\n`]+)")
#: How much of an option name is matched against the patterns (its end).
_NAME_TAIL = 128
#: The most times the rules run over one command line (see Redactor.redact).
_PASSES = 4
#: Names whose secret-or-not decision is remembered (the memory is cleared when full).
_CACHE_ENTRIES = 4096
_QUOTES = ('"', "'")
#: An option word or `set` at a word's start (searched in " " + the script).
_SCRIPT_OPTION = re.compile(r"[\s;&|()<>`\"'](?:-|[sS][eE][tT](?=[\s\"']|\Z))")
#: What separates a script's words (for finding tool names).
_SCRIPT_SEPARATORS = re.compile(r"[\s;&|()<>`\"']+")
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _unquote(word: str) -> tuple[str, str]:
    """(the word without surrounding quotes, the quote)."""
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        return word[1:-1], word[0]
    return word, ""


def _mask_cookie(m: re.Match[str]) -> str:
    """A re.sub callback for _COOKIE_PAIR: mask the value (an empty one stays empty)."""
    value = m.group(2)
    if value in ("", '""'):
        return m.group()
    return f"{m.group(1)}={mask_part(value, 'secret')}"


def mask_part(value: str, part: Part) -> str:
    """`value` with its secret `part` masked (quotes around it are kept)."""
    inner, quote = _unquote(value)
    if not inner:
        return value
    if part == "secret":
        masked = MASK
    elif part == "cookies":
        masked = _COOKIE_PAIR.sub(_mask_cookie, inner) if "=" in inner else inner
    else:
        head, sep, secret = inner.partition(part[-1])
        masked = f"{head}{sep}{MASK}" if sep and secret else inner
    return f"{quote}{masked}{quote}"


class Redactor:
    """Masks secret values in an argv; ``redact()`` says whether anything was masked.

    Candidates (``name=value`` pairs, option words, headers, URLs, token-shaped words) are found by
    linear scans; only their names are then tested against the patterns, and the decision is
    remembered per name, so a long argument costs no backtracking and a common one a few µs.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        names = "|".join(f"(?:{p})" for p in self.patterns)
        self._secret_name = re.compile(rf"(?:{names})\Z", re.IGNORECASE) if self.patterns else None
        # decisions by name: the same few options come again and again
        self._secret_names: dict[str, bool] = {}
        self._secret_flags: dict[str, bool] = {}

    def is_secret(self, name: str) -> bool:
        """Whether an option or variable called `name` holds a secret value (judged by its last
        _NAME_TAIL characters: a pattern may scan to the end of the name from every place it could
        start, which would be quadratic in a huge name)."""
        name = name[-_NAME_TAIL:]
        known = self._secret_names.get(name)
        if known is None:
            known = (
                self._secret_name is not None
                and self._secret_name.search(name) is not None
                and _NOT_A_VALUE.search(name) is None
            )
            if len(self._secret_names) >= _CACHE_ENTRIES:
                self._secret_names.clear()
            self._secret_names[name] = known
        return known

    def _takes_secret(self, word: str) -> bool:
        """Whether an option word (``--password``, ``-token``) takes a secret as the next word."""
        known = self._secret_flags.get(word)
        if known is None:
            flag = _FLAG.fullmatch(word[-_NAME_TAIL:])
            known = (
                flag is not None and self.is_secret(flag.group(1)) and _BOOLEAN.search(flag.group(1)) is None
            )
            if len(self._secret_flags) >= _CACHE_ENTRIES:
                self._secret_flags.clear()
            self._secret_flags[word] = known
        return known

    def redact(self, argv: Sequence[str]) -> tuple[list[str], bool]:
        """(the redacted argv, True when any value was masked).

        Masking a word can change what a later word means (a masked tool name no longer starts that
        tool's options), so the rules run again until nothing changes: once when there was nothing to
        mask, twice as a rule, at most _PASSES times."""
        before = previous = list(argv)
        out = self._once(before)
        passes = 1
        while out != previous and passes < _PASSES:
            previous, out = out, self._once(out)
            passes += 1
        return out, out != before

    def _once(self, argv: list[str]) -> list[str]:
        return [self._redact_text(arg) for arg in self._command(argv)]

    # ------------------------------------------------------------------ one command, word by word
    def _command(self, words: Sequence[str]) -> list[str]:
        """Mask the values that follow an option word (or a tool's sub-command) in one command."""
        out = list(words)
        n = len(words)
        tool: Tool | None = None
        seen: set[str] = set()  # the tool's sub-command words so far (`login`, `secret`)
        mask_last = operand_done = False
        i = 0
        while i < n:
            word = words[i]
            bare = _unquote(word)[0] if word[:1] in _QUOTES else word
            if not bare:
                i += 1
                continue
            dash = bare[0] == "-"
            if not dash and "=" not in bare:
                found = TOOLS.get(bare.rpartition("/")[2] if "/" in bare else bare)
                if found is not None:  # a tool's name (or a path to it) starts its options
                    tool, seen, operand_done = found, set(), False
                    i += 1
                    continue
                if tool is None and len(bare) != 3:  # the common case: an operand
                    i += 1
                    continue
            if tool is not None:
                step = self._tool_option(tool, seen, words, out, i)
                if step:
                    i += step
                    continue
                if dash:
                    if tool.last_if_flag and bare[1:2] != "-" and tool.last_if_flag in bare[1:]:
                        mask_last = True
                elif tool.options_end_at_operand:
                    tool = None
                else:
                    if tool.operand_after in seen and not operand_done and "=" not in bare:
                        out[i], operand_done = mask_part(word, "secret"), True
                    lowered = bare.lower()
                    seen.add(lowered)
                    if tool.last_after and lowered == tool.last_after and i < n - 1:
                        mask_last = True
                    if tool.bare_names and i + 1 < n and "=" not in bare and self.is_secret(bare):
                        out[i + 1] = mask_part(words[i + 1], "secret")
                        i += 2
                        continue
            if dash:
                if i + 1 < n and self._takes_secret(bare) and not words[i + 1].startswith("-"):
                    out[i + 1] = mask_part(words[i + 1], "secret")
                    i += 2
                    continue
            elif len(bare) == 3 and bare.lower() == "set" and i + 2 < n:
                # `aws configure set aws_secret_access_key X`, `npm config set _authToken X`
                name, _ = _unquote(words[i + 1])
                value = words[i + 2]
                if (
                    name
                    and name[0] != "-"
                    and "=" not in name
                    and not value.startswith("-")
                    and self.is_secret(name)
                ):
                    out[i + 2] = mask_part(value, "secret")
                    i += 3
                    continue
            i += 1
        if mask_last and n and not _unquote(words[-1])[0].startswith("-"):
            out[-1] = mask_part(words[-1], "secret")
        return out

    @staticmethod
    def _tool_option(tool: Tool, seen: set[str], words: Sequence[str], out: list[str], i: int) -> int:
        """Mask the value of a tool's secret option at `words[i]`; how many words it spans (0: none)."""
        word = words[i]
        for option in tool.options:
            if option.after and option.after not in seen:
                continue
            for name in option.names:
                if word == name:
                    if option.spaced and i + 1 < len(words):
                        out[i + 1] = mask_part(words[i + 1], option.part)
                        return 2
                    return 1
                if not word.startswith(name):
                    if (
                        option.spaced
                        and len(name) == 2
                        and name[0] == "-"
                        and len(word) > 2
                        and word[0] == "-"
                        and word[-1] == name[1]
                        and i + 1 < len(words)
                        and all(c in _ASCII_LETTERS for c in word[1:-1])
                    ):  # the last of a cluster of short options: `curl -sSu user:pass`
                        out[i + 1] = mask_part(words[i + 1], option.part)
                        return 2
                    continue
                if name.startswith("--"):
                    if word[len(name)] == "=":
                        out[i] = word[: len(name) + 1] + mask_part(word[len(name) + 1 :], option.part)
                        return 1
                elif option.glued:
                    out[i] = name + mask_part(word[len(name) :], option.part)
                    return 1
        return 0

    # ------------------------------------------------------------------ inside one argument
    def _redact_text(self, text: str) -> str:
        """Mask secrets inside one argument (and, when it holds white space, in each of its commands)."""
        if " " in text or "\t" in text or "\n" in text:
            text = self._script(text)
        lowered = text.lower()
        if "authorization" in lowered:
            text = self._auth_headers(text)
        if "cookie" in lowered:
            text = self._cookie_headers(text)
        if "://" in text and "@" in text:
            text = _URL.sub(_mask_userinfo, text)
        if self._secret_name is not None and ("=" in text or ":" in text):
            text = self._mask_assignments(text)
        if len(text) >= 20:
            text = _TOKEN.sub(_mask_token, text)
        if "bearer" in lowered:  # last: a value other rules masked may now be long enough
            text = _BEARER.sub(rf"\g<1>{MASK}", text)
        return text

    def _script(self, text: str) -> str:
        """Run the word rules on each command of a shell script held in one argument."""
        if _SCRIPT_OPTION.search(" " + text) is None and not any(
            (word.rpartition("/")[2] if "/" in word else word) in TOOLS
            for word in set(_SCRIPT_SEPARATORS.split(text))
        ):
            return text  # no option, tool name or `set`: the word rules have nothing to do
        out: list[str] = []
        done = 0
        command: list[re.Match[str]] = []

        def flush() -> None:
            nonlocal done
            if not command:
                return
            new = self._command([m.group(1) for m in command])
            for m, word in zip(command, new, strict=True):
                if word != m.group(1):
                    out.append(text[done : m.start()])
                    out.append(word)
                    done = m.end()
            command.clear()

        for m in _SCRIPT.finditer(text):
            if m.group(1) is not None:
                command.append(m)
            else:
                flush()
        flush()
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    @staticmethod
    def _auth_headers(text: str) -> str:
        """Mask the credentials of every "Authorization: [scheme] VALUE"."""
        out: list[str] = []
        done = 0
        for m in _AUTH_HEADER.finditer(text):
            value = _VALUE.match(text, m.end()) if m.start() >= done else None
            if value is None:
                continue
            out += [text[done : m.end()], mask_part(value.group(), "secret")]
            done = value.end()
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    @staticmethod
    def _cookie_headers(text: str) -> str:
        """Mask every value of "Cookie: a=b; c=d"."""
        out: list[str] = []
        done = scanned = 0
        for m in _COOKIE_HEADER.finditer(text):
            if m.start() < scanned:
                continue
            pos = m.end()
            while (pair := _COOKIE_PAIR.match(text, pos)) is not None:
                masked = _mask_cookie(pair)
                if masked != pair.group():
                    out += [text[done : pair.start()], masked]
                    done = pair.end()
                pos = pair.end()
                sep = _COOKIE_NEXT.match(text, pos)
                if sep is None:
                    break
                pos = sep.end()
            scanned = pos
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def _mask_assignments(self, text: str) -> str:
        """Mask the value after every NAME= / NAME: whose name is secret."""
        out: list[str] = []
        done = 0
        for m in _ASSIGN.finditer(text):
            start, end = m.span()
            if start < done or not self.is_secret(m.group(1)):
                continue
            if start >= 3 and text.startswith("://", start - 3):
                continue  # scheme://user:password@: the URL rule's
            if start == 0 and text[0] == "-" and end < len(text):
                # `--password=a b c` as one argument: an option's value is the rest of it, spaces too
                out += [text[done:end], MASK]
                done = len(text)
                break
            value = _VALUE.match(text, end)
            if value is None:
                continue
            quote = text[end] if text[end] in _QUOTES else ""
            out += [text[done:end], quote, MASK, quote]
            done = value.end()
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)


def _mask_userinfo(m: re.Match[str]) -> str:
    user, colon, password = m.group(2).partition(":")
    if _TOKEN_USER.match(user):
        user = MASK
    return f"{m.group(1)}{user}{colon}{MASK if password else ''}@"


def _mask_token(m: re.Match[str]) -> str:
    kept = next((g for g in m.groups() if g is not None), "")
    return f"{kept}{MASK}"
