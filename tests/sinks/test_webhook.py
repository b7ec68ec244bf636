"""The webhook sink against a real HTTP server on loopback that checks the signature the way the
README tells receivers to: HMAC-SHA256 over "<t>." + body, and a timestamp within 5 minutes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest

from amoskys.config import ForwardersConfig, SinksConfig, WebhookSinkConfig
from amoskys.errors import ConfigError
from amoskys.metrics import Metrics
from amoskys.sinks.build import build_sinks
from amoskys.sinks.webhook import signature, verify
from amoskys.wiring import build_forwarders

from .harness import AlertStore, Received, WebhookReceiver, alert, alert_store, running_sinks
from support import eventually

SECRET = b"s3cret-shared-with-the-receiver"
REPLAY_WINDOW_S = 300


def receiver_checks(request: Received, secret: bytes = SECRET) -> None:
    """What a receiver does with a request, as the README's recipe says."""
    header = request.headers["x-amoskys-signature"]
    fields = dict(part.split("=", 1) for part in header.split(","))
    t = int(fields["t"])
    assert abs(time.time() - t) <= REPLAY_WINDOW_S, "timestamp outside the replay window"
    expected = hmac.new(secret, f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"]), "signature does not match the body"


def delivered(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """The alerts of every request the receiver accepted, in order."""
    return [a for r in receiver.accepted() for a in json.loads(r.body)["alerts"]]


def delivered_ids(receiver: WebhookReceiver) -> list[str]:
    return [a["event_id"] for a in delivered(receiver)]


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook.secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def webhook(name: str, url: str, secret_file: Path | None, **keys: object) -> SinksConfig:
    return SinksConfig(
        webhook=(
            WebhookSinkConfig(
                name=name,
                url=url,
                secret_file=str(secret_file) if secret_file else "",
                **keys,  # type: ignore[arg-type]
            ),
        )
    )


async def test_alerts_are_posted_signed_and_filtered_by_level(tmp_path: Path, secret_file: Path) -> None:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        async with alert_store(tmp_path / "db.sqlite") as alerts:
            config = webhook(
                "ops", receiver.url, secret_file, min_level="medium", headers={"Authorization": "Bearer tok"}
            )
            async with running_sinks(alerts, config) as forwarders:
                wanted = await alerts.publish(alert(0, level="high"), alert(2, level="critical"))
                low = await alerts.publish(alert(1, level="low"))
                more = await alerts.publish(alert(3, level="medium", summary='ümlaut "quoted" ]'))
                await eventually(lambda: len(delivered_ids(receiver)) == 3, what="3 alerts posted")
                cursor = await eventually(lambda: alerts.store.sink_cursor("ops"), what="the cursor saved")
                await eventually(lambda: forwarders.status()[0]["lag_events"] == 0, what="the sink caught up")
        for request in receiver.requests:
            receiver_checks(request)
            assert request.headers["content-type"] == "application/json"
            assert request.headers["authorization"] == "Bearer tok"
            assert request.path == "/hook/secret-path"
        assert delivered_ids(receiver) == wanted + more  # oldest first; the low one left out
        assert low[0] not in delivered_ids(receiver)
        doc = next(
            a for r in receiver.requests for a in json.loads(r.body)["alerts"] if a["event_id"] == more[0]
        )
        assert doc["level"] == "medium"
        assert doc["source"] == "box-1"
        assert doc["alert"]["summary"] == 'ümlaut "quoted" ]'
        assert doc["alert"]["rule_id"] == "amoskys.exec_from_tmp"
        assert doc["alert"]["tags"] == ["attack.execution", "attack.t1059"]
        assert doc["alert"]["level"] == "LEVEL_MEDIUM"
        assert cursor is not None
        assert alerts.sample("amoskys_sink_alerts_total", sink="ops", outcome="delivered") == 3
        assert alerts.sample("amoskys_sink_alerts_total", sink="ops", outcome="filtered") == 1
        assert alerts.sample("amoskys_sink_webhook_responses_total", sink="ops", status_class="2xx") == len(
            receiver.requests
        )
        assert alerts.sample("amoskys_forwarder_lag_events", sink="ops") == 0
    finally:
        receiver.stop()


async def test_a_receiver_down_for_a_while_gets_every_alert_once_after(
    tmp_path: Path, secret_file: Path
) -> None:
    receiver = WebhookReceiver(answer=lambda n: 503 if n < 3 else 200)
    receiver.start()
    receiver.stop()  # its port is known, nothing listens on it
    try:
        async with alert_store(tmp_path / "db.sqlite") as alerts:
            async with running_sinks(alerts, webhook("ops", receiver.url, secret_file)):
                ids = []
                for i in range(5):
                    ids += await alerts.publish(alert(i))
                await eventually(
                    lambda: (
                        alerts.sample(
                            "amoskys_sink_webhook_responses_total", sink="ops", status_class="error"
                        )
                        >= 2
                    ),
                    what="the sink retrying while nothing listens",
                )
                assert alerts.sample("amoskys_forwarder_lag_events", sink="ops") >= 5
                ids += await alerts.publish(*(alert(i) for i in range(5, 40)))
                receiver.start()  # back on the same port: it answers 503 three times, then takes them
                await eventually(lambda: len(delivered_ids(receiver)) >= 40, within=30, what="every alert")
                ids += await alerts.publish(alert(40))
                await eventually(lambda: len(delivered_ids(receiver)) >= 41, what="a new alert after")
        assert sorted(delivered_ids(receiver)) == sorted(ids)  # each exactly once
        assert delivered_ids(receiver) == ids  # and in store order
        assert [r.status for r in receiver.requests[:3]] == [503, 503, 503]
        for request in receiver.requests:
            receiver_checks(request)
        assert alerts.sample("amoskys_sink_webhook_responses_total", sink="ops", status_class="5xx") == 3
        assert alerts.sample("amoskys_forwarder_retries_total", sink="ops") >= 5
    finally:
        receiver.stop()


async def test_the_cursor_is_durable_a_restarted_sink_sends_only_what_is_new(
    tmp_path: Path, secret_file: Path
) -> None:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        async with alert_store(tmp_path / "db.sqlite") as alerts:
            config = webhook("ops", receiver.url, secret_file)
            async with running_sinks(alerts, config):
                first = await alerts.publish(*(alert(i) for i in range(5)))
                await eventually(lambda: len(delivered_ids(receiver)) == 5, what="the first five")
                await eventually(lambda: _cursor_at(alerts, "ops", 5), what="the cursor committed past them")
            second = await alerts.publish(*(alert(i) for i in range(5, 8)))  # while the sink is down
            async with running_sinks(alerts, config):
                await eventually(lambda: len(delivered_ids(receiver)) == 8, what="only the three new")
        assert delivered_ids(receiver) == first + second
    finally:
        receiver.stop()


async def _cursor_at(alerts: AlertStore, name: str, seq: int) -> bool:
    cursor = await alerts.store.sink_cursor(name)
    return cursor is not None and cursor.store_seq >= seq


async def test_a_batch_refused_for_good_is_counted_and_the_next_ones_go_on(
    tmp_path: Path, secret_file: Path
) -> None:
    receiver = WebhookReceiver(answer=lambda n: 422 if n == 0 else 200)
    receiver.start()
    try:
        async with alert_store(tmp_path / "db.sqlite") as alerts:
            async with running_sinks(alerts, webhook("ops", receiver.url, secret_file)):
                refused = await alerts.publish(alert(0))
                await eventually(lambda: len(receiver.requests) == 1, what="the refused request")
                later = await alerts.publish(alert(1))
                await eventually(lambda: len(delivered_ids(receiver)) == 1, what="the next alert")
        assert delivered_ids(receiver) == later
        assert json.loads(receiver.requests[0].body)["alerts"][0]["event_id"] == refused[0]
        assert alerts.sample("amoskys_sink_alerts_total", sink="ops", outcome="rejected") == 1
        assert alerts.sample("amoskys_forwarder_rejected_total", sink="ops") == 1
        assert alerts.sample("amoskys_sink_webhook_responses_total", sink="ops", status_class="4xx") == 1
    finally:
        receiver.stop()


async def test_rules_filter_by_rule_id_pattern_and_wiring_builds_the_sinks(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        async with alert_store(tmp_path / "db.sqlite") as alerts:
            config = webhook("ops", receiver.url, None, rules=("sigma.*", "amoskys.port_scan"))
            forwarders = await build_forwarders(
                ForwardersConfig(), alerts.store, alerts.metrics, sinks=config
            )
            assert [f.name for f in forwarders.forwarders] == ["ops"]
            assert forwarders.status()[0]["url"] == f"http://127.0.0.1:{receiver.port}"  # no secret path
            task = asyncio.create_task(forwarders.run())
            try:
                wanted = await alerts.publish(alert(0, rule_id="amoskys.port_scan"))
                await alerts.publish(alert(1, rule_id="amoskys.exec_from_tmp"))
                wanted += await alerts.publish(alert(2, rule_id="sigma.abc"))
                await eventually(lambda: len(delivered_ids(receiver)) == 2, what="two matching alerts")
                await eventually(
                    lambda: alerts.sample("amoskys_forwarder_lag_events", sink="ops") == 0, what="caught up"
                )
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert delivered_ids(receiver) == wanted
        assert "x-amoskys-signature" not in receiver.requests[0].headers  # no secret_file: unsigned
    finally:
        receiver.stop()


async def test_an_unreadable_secret_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = webhook("ops", "https://example.net/x", tmp_path / "missing.secret")
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        with pytest.raises(
            ConfigError, match=r"sinks\.webhook\[0\]\.secret_file: cannot read .*missing\.secret"
        ):
            await build_sinks(config, alerts.store, Metrics())


def test_verify_accepts_the_signature_and_refuses_a_changed_body_an_old_time_or_another_secret() -> None:
    body = b'{"alerts":[]}'
    header = signature(SECRET, 1_800_000_000, body)
    assert verify(SECRET, header, body, now=1_800_000_100)
    assert not verify(SECRET, header, body + b" ", now=1_800_000_100)
    assert not verify(SECRET, header, body, now=1_800_000_000 + REPLAY_WINDOW_S + 1)
    assert not verify(b"other", header, body, now=1_800_000_100)
    assert not verify(SECRET, "v1=00", body, now=1_800_000_100)
