"""`amoskys run` with `[forwarders.nats]` through a long NATS outage: the store holds every event, the
lag on /metrics grows while nats-server is down, and drains to 0 once it is back; each event reaches
the stream once, under this appliance's name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats_harness import SITE, Server, read_stream

from support import eventually, http_get

pytestmark = pytest.mark.e2e

BOX = "edge-e2e"


def metric(app, name: str) -> float | None:  # type: ignore[no-untyped-def]
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200, body
    prefix = f'{name}{{sink="nats"}} '
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


async def poll(fn, what: str, within: float = 30.0):  # type: ignore[no-untyped-def]
    """`eventually` for a blocking `fn` (an HTTP read): each try in a thread."""
    return await eventually(lambda: asyncio.to_thread(fn), within=within, what=what)


async def test_nats_down_for_long_the_store_holds_lag_grows_then_drains_to_zero(
    appliance_factory, tmp_path: Path
) -> None:
    server = Server(tmp_path / "nats")  # its port is chosen; nothing listens there yet
    config = tmp_path / "amoskys.toml"
    config.write_text(
        f"""\
[appliance]
name = "{BOX}"
[forwarders.nats]
enabled = true
servers = ["{server.url}"]
site = "{SITE}"
reconnect_wait_seconds = 0.2
ack_timeout_seconds = 2.0
[collectors.heartbeat]
interval_seconds = 1.0
[collectors.host]
interval_seconds = 1.0
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
"""
    )
    app = appliance_factory("--config", str(config))
    try:
        await asyncio.to_thread(app.wait_ready)
        first = await poll(lambda: metric(app, "amoskys_forwarder_lag_events"), "a lag while NATS is down")
        grown = await poll(
            lambda: (
                (metric(app, "amoskys_forwarder_lag_events") or 0) >= first + 6
                and metric(app, "amoskys_forwarder_lag_seconds")
            ),
            "the lag to grow",
        )
        assert grown
        behind = metric(app, "amoskys_forwarder_lag_events")
        assert behind is not None and behind >= first + 6
        await server.start()
        await poll(
            lambda: (
                metric(app, "amoskys_forwarder_lag_events") == 0
                and metric(app, "amoskys_forwarder_lag_seconds") == 0
            ),
            "the lag to drain to 0",
        )
        contents = await read_stream(server.url, subject=f"amoskys.{SITE}.{BOX}.>")
    finally:
        server.kill()
    assert len(contents.ids) >= behind
    assert not contents.duplicates
    assert all(i.startswith(f"{BOX}:") for i in contents.ids)  # the appliance's own events, its source
