"""`[forwarders.bus]`: validated once, at load, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from amoskys.config import Config, StoreConfig, from_mapping
from amoskys.errors import ConfigError
from amoskys.metrics import Metrics
from amoskys.store import Store
from amoskys.wiring import build_forwarders


def test_the_bus_forwarder_is_off_by_default_with_the_documented_defaults() -> None:
    bus = Config().forwarders.bus
    assert not bus.enabled and bus.kinds == ()
    assert (bus.batch_events, bus.batch_wait_ms, bus.max_in_flight_batches, bus.call_timeout_seconds) == (
        1000,
        200,
        4,
        10.0,
    )
    assert Config().store.delete_acked_after_seconds == 0


@pytest.mark.parametrize(
    ("section", "key", "says"),
    [
        ({"enabled": True}, "forwarders.bus.identity", "required when the bus forwarder is enabled"),
        ({"kinds": ["flow", "nosuch"]}, "forwarders.bus.kinds", "'nosuch' is not an event kind"),
        ({"address": "0.0.0.0:50051"}, "forwarders.bus.address", "a specific host"),
        ({"batch_events": 0}, "forwarders.bus.batch_events", ">= 1"),
        ({"max_in_flight": 2}, "forwarders.bus.max_in_flight", "unknown key"),
    ],
)
def test_a_bad_forwarder_key_is_refused_naming_it(section: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({"forwarders": {"bus": section}}, source="t.toml")
    assert key in str(info.value) and says in str(info.value)


def test_an_enabled_forwarder_with_its_identity_loads() -> None:
    config = from_mapping(
        {
            "forwarders": {
                "bus": {"enabled": True, "identity": "/etc/amoskys/agent", "kinds": ["alert", "loss"]}
            }
        }
    )
    assert config.forwarders.bus.enabled and config.forwarders.bus.kinds == ("alert", "loss")


async def test_an_unreadable_identity_bundle_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "events.db", StoreConfig(), Metrics())
    try:
        config = from_mapping(
            {"forwarders": {"bus": {"enabled": True, "identity": str(tmp_path / "nosuch")}}}
        )
        with pytest.raises(ConfigError) as info:
            await build_forwarders(config.forwarders, store, Metrics())
        assert info.value.path == "forwarders.bus.identity" and "nosuch" in str(info.value)
    finally:
        await store.close()
