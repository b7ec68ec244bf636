"""redact.py: secret values in command lines are masked in every common form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amoskys.collectors.process.config import DEFAULT_REDACT_PATTERNS
from amoskys.collectors.process.redact import MASK, Redactor

R = Redactor(DEFAULT_REDACT_PATTERNS)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["app", "--password=hunter2"], ["app", f"--password={MASK}"]),
        (["app", "--password=correct horse battery"], ["app", f"--password={MASK}"]),
        (["app", "--db-password=a b;c", "-v"], ["app", f"--db-password={MASK}", "-v"]),
        (["app", "--password", "hunter2", "-v"], ["app", "--password", MASK, "-v"]),
        (["app", "--db-password=x", "MYSQL_PWD=y"], ["app", f"--db-password={MASK}", f"MYSQL_PWD={MASK}"]),
        (["app", "--Secret=x", "TOKEN=y"], ["app", f"--Secret={MASK}", f"TOKEN={MASK}"]),
        (["app", "api_key:abc", "--api-key", "abc"], ["app", f"api_key:{MASK}", "--api-key", MASK]),
        (["aws", "AWS_SECRET_ACCESS_KEY=abc"], ["aws", f"AWS_SECRET_ACCESS_KEY={MASK}"]),
        (["openssl", "-passin", "pass:hunter2"], ["openssl", "-passin", f"pass:{MASK}"]),
        (["sh", "-c", "curl --token abc -H x"], ["sh", "-c", f"curl --token {MASK} -H x"]),
        (["sh", "-c", "run password='a b' && next"], ["sh", "-c", f"run password={MASK} && next"]),
        (["git", "clone", "https://bob:s3cr3t@host/r"], ["git", "clone", f"https://bob:{MASK}@host/r"]),
        (["curl", "https://h/x?token=abc&y=1"], ["curl", f"https://h/x?token={MASK}&y=1"]),
    ],
)
def test_secrets_are_masked(argv: list[str], expected: list[str]) -> None:
    assert R.redact(argv) == (expected, True)


@pytest.mark.parametrize(
    "argv",
    [
        ["app", "--password-file=/etc/pw", "--verbose"],
        ["app", "--author=me", "--passes=3"],
        ["app", "--password", "--next-flag"],
        ["ls", "-la", "/home/tokenizer"],
        ["app", "--password="],
    ],
)
def test_what_is_not_a_secret_value_is_left_alone(argv: list[str]) -> None:
    assert R.redact(argv) == (argv, False)


def test_patterns_are_configurable_and_can_be_empty() -> None:
    assert Redactor(["pin"]).redact(["app", "--pin=1234", "--password=x"]) == (
        ["app", f"--pin={MASK}", "--password=x"],
        True,
    )
    assert Redactor([]).redact(["app", "--password=x"]) == (["app", "--password=x"], False)
    assert Redactor([]).redact(["git", "https://u:p@h"]) == (["git", f"https://u:{MASK}@h"], True)


def test_an_invalid_pattern_is_a_config_error_naming_it() -> None:
    from amoskys.config import from_mapping
    from amoskys.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"redact_patterns.*'\(unclosed' is not a regular expression"
    ) as info:
        from_mapping({"collectors": {"process": {"redact_patterns": ["(unclosed"]}}})
    assert info.value.path == "collectors.process.redact_patterns"


def test_a_huge_argument_is_redacted_in_linear_time() -> None:
    import time

    arg = "a" * 200_000 + " --password hunter2 " + "b=" * 50_000 + " token=x"
    started = time.process_time()
    redacted, changed = R.redact(["sh", "-c", arg])
    assert time.process_time() - started < 1.0
    assert changed and "hunter2" not in redacted[2] and "token=x" not in redacted[2]


@given(st.lists(st.text(max_size=40), max_size=6))
def test_redaction_never_crashes_and_is_idempotent(argv: list[str]) -> None:
    once, _ = R.redact(argv)
    assert len(once) == len(argv)
    assert R.redact(once)[0] == once
