"""`[[sinks.*]]` config: errors name the key path, names are unique across sinks, the sample's
commented examples are valid as they stand, and an agent refuses sinks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from amoskys import agent, sample_config
from amoskys.config import Config, from_mapping
from amoskys.errors import ConfigError


def load(text: str) -> Config:
    return from_mapping(tomllib.loads(text), source="amoskys.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[sinks.webhook]]\nname = "a"\nurl = "https://x.example"\n'
            '[[sinks.webhook]]\nname = "b"\nurl = "ftp://x.example"\n',
            r"amoskys.toml: sinks\.webhook\[1\]\.url: expected an http:// or https:// URL with a host",
        ),
        (
            '[[sinks.webhook]]\nname = "ops"\nurl = "https://x.example"\n'
            '[[sinks.ecs_file]]\nname = "ops"\npath = "/tmp/a"\n',
            r"sinks\.ecs_file\[0\]\.name: 'ops' is already the name of sinks\.webhook\[0\]",
        ),
        (
            '[[sinks.syslog]]\nname = "s"\naddress = "192.0.2.1:514"\ntransport = "sctp"\n',
            r"sinks\.syslog\[0\]\.transport: expected one of 'udp', 'tcp', 'tls' \(got 'sctp'\)",
        ),
        (
            '[[sinks.syslog]]\nname = "s"\naddress = "192.0.2.1"\n',
            r"sinks\.syslog\[0\]\.address: expected HOST:PORT",
        ),
        (
            '[[sinks.syslog]]\nname = "s"\naddress = "192.0.2.1:514"\nca_file = "/ca.pem"\n',
            r'sinks\.syslog\[0\]\.transport: ca_file, cert_file and key_file need transport = "tls"',
        ),
        (
            '[[sinks.syslog]]\nname = "s"\naddress = "192.0.2.1:6514"\ntransport = "tls"\ncert_file = "/c"\n',
            r"sinks\.syslog\[0\]\.cert_file: a client certificate needs both cert_file and key_file",
        ),
        (
            '[[sinks.syslog]]\nname = "s"\naddress = "192.0.2.1:514"\nfacility = "local9"\n',
            r"sinks\.syslog\[0\]\.facility: expected one of 'kern',",
        ),
        (
            '[[sinks.ecs_file]]\nname = "nats"\npath = "/tmp/a"\n',
            r"sinks\.ecs_file\[0\]\.name: 'nats' is the name of a forwarder's cursor",
        ),
        (
            '[[sinks.ecs_file]]\nname = "e"\npath = "/tmp/a"\nmin_level = "severe"\n',
            r"sinks\.ecs_file\[0\]\.min_level: expected one of 'informational', 'low', 'medium', 'high', 'critical'",
        ),
        (
            '[[sinks.ecs_file]]\nname = "e"\npath = "/tmp/a"\nmax_bytes = 10\n',
            r"sinks\.ecs_file\[0\]\.max_bytes: Expected `int` >= 4096",
        ),
        (
            '[[sinks.webhook]]\nname = "w"\nurl = "https://x.example"\nheaders = { "X-Amoskys-Signature" = "x" }\n',
            r"sinks\.webhook\[0\]\.headers: 'X-Amoskys-Signature' is set by the sink itself",
        ),
        (
            '[[sinks.webhook]]\nname = "w"\nurl = "https://x.example"\nurl_typo = 1\n',
            r"sinks\.webhook\[0\]\.url_typo: unknown key",
        ),
    ],
)
def test_a_bad_sink_is_a_config_error_naming_its_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(text)


def test_the_samples_commented_examples_are_valid_as_they_stand() -> None:
    text = sample_config.core_section("sinks")
    example = []
    for line in text.splitlines():
        m = re.fullmatch(r"#   (\[\[sinks\.\w+\]\]|\w+ = .*?)(\s+# .*)?", line)
        if m:
            example.append(m.group(1))
    config = load("\n".join(example))
    assert [s.name for s in config.sinks.all()] == ["ops", "siem", "ecs"]
    hook, syslog, ecs = config.sinks.all()
    assert hook.min_level == "medium" and hook.headers == {"Authorization": "Bearer ..."}  # type: ignore[attr-defined]
    assert (syslog.transport, syslog.facility) == ("tls", "local0")  # type: ignore[attr-defined]
    assert (ecs.max_bytes, ecs.keep) == (104857600, 5)  # type: ignore[attr-defined]


def test_an_agent_config_with_sinks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[[sinks.ecs_file]]\nname = "e"\npath = "/tmp/a"\n')
    with pytest.raises(ConfigError, match=r"^sinks: an agent raises no alerts") as err:
        agent.load(path, {}, require_identity=False)
    assert err.value.path == "sinks"
