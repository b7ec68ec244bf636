"""The agent profile's config (amoskys.agent): its defaults, --identity and --bus over [forwarders.bus],
the name its bundle gives it, `check-config --agent`, and the shipped agent.toml."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from amoskys import agent, sample_config
from amoskys.app import appliance_credentials
from amoskys.cli import main
from amoskys.config import ApplianceConfig, Config, from_mapping, merge_tables
from amoskys.errors import ConfigError, PkiError
from amoskys.paths import Layout, resolve_data_dir
from amoskys.pki.enrolment import enroll_agent

ROOT = Path(__file__).resolve().parents[1]


def uncommented_keys(text: str) -> list[str]:
    """The key lines whose previous line is not a comment (as tests/test_sample_config.py checks)."""
    lines = text.splitlines()
    return [
        line
        for i, line in enumerate(lines)
        if line.strip() and not line.startswith(("#", "[")) and (i == 0 or not lines[i - 1].startswith("#"))
    ]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real enrolment bundle for `branch-7`, issued by a real appliance CA."""
    tmp = tmp_path_factory.mktemp("pki")
    creds = appliance_credentials(Config(appliance=ApplianceConfig(name="site")), Layout(tmp / "appliance"))
    out = tmp / "bundle"
    enroll_agent(
        creds,
        name="branch-7",
        role="agent",
        trust_domain="amoskys.local",
        bus_address="127.0.0.1:5",
        out_dir=out,
    )
    return out


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_the_agent_defaults_fit_an_endpoint_and_its_name_is_the_bundles(bundle: Path) -> None:
    loaded = agent.load(None, {}, identity=str(bundle))
    config = loaded.config
    assert loaded.identity == bundle
    assert config.appliance.name == "branch-7"
    assert config.web.listen == "127.0.0.1:9109"
    assert (config.store.hard_cap_mb, config.store.delete_acked_after_seconds) == (512, 3600)
    assert config.forwarders.bus.enabled and config.forwarders.bus.identity == str(bundle)
    assert config.forwarders.bus.address == ""  # the bundle's, chosen by the forwarder
    enabled = {
        n: config.collectors.section_named(n).enabled for n in ("heartbeat", "host", "process", "snmp")
    }
    assert enabled == {"heartbeat": True, "host": True, "process": True, "snmp": False}
    # flow and discovery stay on, but without an interface they do not start (NotConfigured)
    assert config.collectors.section_named("flow").interface == ""  # type: ignore[attr-defined]


def test_bus_and_identity_flags_override_the_forwarder_section(bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    path = write(tmp_path, f'[forwarders.bus]\nidentity = "{other}"\naddress = "10.0.0.1:50051"\n')
    config = agent.load(path, {}, identity=str(bundle), bus="appliance.example:6000").config
    assert (config.forwarders.bus.identity, config.forwarders.bus.address) == (
        str(bundle),
        "appliance.example:6000",
    )
    # without the flags, the file's values stand
    with pytest.raises(PkiError, match="not an identity bundle"):
        agent.load(path, {})


@pytest.mark.parametrize("bus", ["no-port", "0.0.0.0:50051", "host:0"])
def test_a_bus_flag_that_names_no_dialable_address_is_refused(bundle: Path, bus: str) -> None:
    with pytest.raises(ConfigError, match="--bus") as err:
        agent.load(None, {}, identity=str(bundle), bus=bus)
    assert err.value.path == "--bus"


def test_the_file_is_layered_over_the_agent_defaults(bundle: Path, tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nhard_cap_mb = 600\n[web]\nlisten = "127.0.0.1:0"\n')
    config = agent.load(path, {}, identity=str(bundle)).config
    assert (config.store.hard_cap_mb, config.store.high_water_mb) == (600, 384)
    assert config.web.listen == "127.0.0.1:0"


def test_another_appliance_name_is_a_config_error_naming_both(bundle: Path, tmp_path: Path) -> None:
    path = write(tmp_path, '[appliance]\nname = "laptop-3"\n')
    with pytest.raises(ConfigError) as err:
        agent.load(path, {}, identity=str(bundle))
    assert "'laptop-3'" in str(err.value) and "'branch-7'" in str(err.value)
    assert err.value.path == "appliance.name"
    # the same name is fine
    same = write(tmp_path, '[appliance]\nname = "branch-7"\n')
    assert agent.load(same, {}, identity=str(bundle)).config.appliance.name == "branch-7"


def test_an_agent_without_an_identity_is_told_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--identity DIR") as err:
        agent.load(None, {})
    assert err.value.path == "forwarders.bus.identity"
    off = write(tmp_path, "[forwarders.bus]\nenabled = false\n")  # forwarding off: still named by a bundle
    with pytest.raises(ConfigError, match="needs an identity bundle"):
        agent.load(off, {})


def test_web_tls_is_refused_in_an_agent(bundle: Path, tmp_path: Path) -> None:
    path = write(tmp_path, '[web]\ntls = "on"\n')
    with pytest.raises(ConfigError, match=r"web\.tls"):
        agent.load(path, {}, identity=str(bundle))


def test_check_config_agent_checks_the_name_against_the_bundle(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, f'[forwarders.bus]\nidentity = "{bundle}"\n')
    assert main(["check-config", "--agent", str(good)]) == 0
    assert "ok (agent branch-7)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[appliance]\nname = "other"\n[forwarders.bus]\nidentity = "{bundle}"\n')
    assert main(["check-config", "--agent", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'other'" in err and "'branch-7'" in err
    # the shipped sample names no bundle yet: --identity completes it at start
    assert main(["check-config", "--agent", str(ROOT / "agent.toml")]) == 0
    assert "without an identity yet" in capsys.readouterr().out


def test_the_shipped_agent_toml_is_the_agent_sample_with_every_key_commented() -> None:
    text = sample_config.assemble_agent()
    assert (ROOT / "agent.toml").read_text(encoding="utf-8") == text, (
        "agent.toml at the repository root differs: run `amoskys config sample --agent > agent.toml`"
    )
    assert uncommented_keys(text) == []
    # as written, it is the agent's defaults (with no identity yet)
    data = tomllib.loads(text)
    assert "bus" not in data  # an agent serves no bus
    unnamed = {"forwarders": {"bus": {"enabled": False}}}
    expected = agent.load(None, {}, require_identity=False).config
    assert from_mapping(merge_tables(data, unnamed)) == expected


def test_config_sample_agent_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "sample", "--agent"]) == 0
    assert capsys.readouterr().out == sample_config.assemble_agent()


def test_status_text_leaves_out_what_does_not_apply_to_an_agent() -> None:
    from amoskys.cli.status import format_status

    reply = {
        "appliance": {"name": "branch-7", "mode": "agent", "bus_max_connections": None},
        "collectors": [],
    }
    text = format_status(reply, now_ns=0)
    assert "mode:  agent" in text and "bus max connections" not in text and "None" not in text


def test_an_agents_default_data_dir_is_its_own(tmp_path: Path) -> None:
    from amoskys.cli import build_parser
    from amoskys.cli.common import data_dir

    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    found, reason = resolve_data_dir(None, "", env, mode="agent")
    if os.geteuid() == 0:
        assert (found, reason) == (Path("/var/lib/amoskys-agent"), "root default")
    else:
        assert found == tmp_path / "state" / "amoskys-agent"
    assert resolve_data_dir(None, "", {"STATE_DIRECTORY": "/srv/s"}, mode="agent")[0] == Path(
        "/srv/s/amoskys-agent"
    )
    # the commands that talk to a running agent take --agent for its default, --data-dir for any other
    for argv in (["status", "--agent"], ["collectors", "restart", "host", "--agent"], ["agent"]):
        args = build_parser().parse_args(argv)
        assert data_dir(args, Config())[0].name == "amoskys-agent", argv
    assert data_dir(build_parser().parse_args(["status"]), Config())[0].name == "amoskys"
    args = build_parser().parse_args(["status", "--agent", "--data-dir", str(tmp_path / "x")])
    assert data_dir(args, Config()) == (tmp_path / "x", "--data-dir")
