"""`[sources.nats]`: validated at load with the key path, its defaults, and refused in an agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amoskys import agent
from amoskys.config import HUB_DEFAULT_KINDS, from_mapping, load
from amoskys.errors import ConfigError


def test_the_defaults_take_the_small_kinds_and_name_the_durable_after_the_hub() -> None:
    nats = from_mapping({}).sources.nats
    assert not nats.enabled
    assert nats.stream == "AMOSKYS" and nats.batch == 500
    assert nats.subjects == tuple(f"amoskys.*.*.*.{k}" for k in HUB_DEFAULT_KINDS)
    assert not {"flow", "process", "snmp"} & set(HUB_DEFAULT_KINDS)
    assert nats.durable_name("hub.example") == "amoskys-hub-hub_example"
    named = from_mapping({"sources": {"nats": {"durable": "central"}}}).sources.nats
    assert named.durable_name("hub") == "central"


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({"subjects": ["flows.>"]}, "sources.nats.subjects", "not a subject filter"),
        ({"subjects": ["amoskys.s.b.src"]}, "sources.nats.subjects", "not a subject filter"),
        ({"subjects": ["amoskys.>.b.src.flow"]}, "sources.nats.subjects", "not a subject filter"),
        ({"subjects": []}, "sources.nats.subjects", "at least one"),
        ({"durable": "hub.one"}, "sources.nats.durable", "letters, digits"),
        ({"stream": "A B"}, "sources.nats.stream", "letters, digits"),
        ({"batch": 0}, "sources.nats.batch", ">= 1"),
        ({"tls_cert": "/c.pem"}, "sources.nats.tls_cert", "both tls_cert and tls_key"),
        ({"deny_sources": ["a b"]}, "sources.nats.deny_sources", "not a source or box name"),
        ({"servers": []}, "sources.nats.servers", "NATS URLs"),
        ({"batches": 5}, "sources.nats.batches", "unknown key"),
    ],
)
def test_a_bad_key_is_an_error_naming_its_path(section: dict[str, object], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping({"sources": {"nats": section}})
    assert caught.value.path == path
    assert words in str(caught.value)


def test_max_ack_pending_below_the_batch_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"max_ack_pending.*at least `batch`"):
        from_mapping({"sources": {"nats": {"batch": 600, "max_ack_pending": 500}}})


def test_subject_filters_may_name_sites_boxes_and_the_flow_kind() -> None:
    subjects = ["amoskys.*.*.*.flow", "amoskys.site1.>", "amoskys.s.box-1.*.process"]
    assert from_mapping({"sources": {"nats": {"subjects": subjects}}}).sources.nats.subjects == tuple(
        subjects
    )


def test_an_agent_refuses_to_be_a_hub(tmp_path: Path) -> None:
    bundle = tmp_path / "identity"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps({"name": "endpoint-1"}))
    path = tmp_path / "agent.toml"
    path.write_text("[sources.nats]\nenabled = true\n")
    with pytest.raises(ConfigError) as caught:
        agent.load(path, {}, identity=str(bundle))
    assert caught.value.path == "sources.nats.enabled"
    assert "never a fleet hub" in str(caught.value)
    path.write_text("[sources.nats]\nenabled = false\n")  # present but off: harmless
    assert not agent.load(path, {}, identity=str(bundle)).config.sources.nats.enabled
    assert load(None).sources.nats.enabled is False
