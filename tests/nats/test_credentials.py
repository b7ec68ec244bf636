"""NATS credentials files (`credentials` in [forwarders.nats] and [sources.nats]) against a nats-server in
operator mode: its operator, accounts and users are JWTs made here (jwt_support), so a user's
permissions live in its JWT. A box whose JWT lets it publish only under its own subjects forwards
exactly once (reading its messages back included), the hub consumes with its own credentials, and
credentials the server refuses or a file that is no credentials file leave the forwarder and the hub
saying so, still running."""

from __future__ import annotations

import time
from pathlib import Path

import nats
import nats.errors
import nkeys
import pytest
import structlog
from hub_harness import STREAM, running_hub
from jwt_support import Trust, new_key, user_jwt, write_creds
from nats.js import api
from nats_harness import (
    BOX,
    SITE,
    Server,
    caught_up,
    forwarding,
    msg_ids,
    nats_server,
    outbox,
    read_stream,
    records,
)

from amoskys.metrics import Metrics
from amoskys.nats.connection import NatsConnectError, connect
from amoskys.sources.nats import CONNECT_GRACE_SECONDS

from support import eventually

pytestmark = pytest.mark.timeout(60)

HUB_DURABLE = "amoskys-hub-central"
#: What a box may publish: its events, the stream's state, and reading back its own messages (the
#: permissions of packaging/nats/accounts.conf, here in the user's JWT).
BOX_PUB_ALLOW = [
    f"amoskys.{SITE}.{BOX}.>",
    f"$JS.API.STREAM.INFO.{STREAM}",
    f"$JS.API.CONSUMER.CREATE.{STREAM}.*.amoskys.{SITE}.{BOX}.>",
    f"$JS.API.CONSUMER.INFO.{STREAM}.*",
    f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.*",
]
BOX_PUB_DENY = [
    f"$JS.API.CONSUMER.INFO.{STREAM}.{HUB_DURABLE}",
    f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{HUB_DURABLE}",
]
HUB_PUB_ALLOW = [
    f"$JS.API.CONSUMER.CREATE.{STREAM}.{HUB_DURABLE}",
    f"$JS.API.CONSUMER.CREATE.{STREAM}.{HUB_DURABLE}.>",
    f"$JS.API.CONSUMER.INFO.{STREAM}.{HUB_DURABLE}",
    f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{HUB_DURABLE}",
    f"$JS.ACK.{STREAM}.{HUB_DURABLE}.>",
]
INBOX = ["_INBOX.>"]


async def make_stream(server: Server, admin: Path) -> None:
    nc = await nats.connect(server.url, user_credentials=str(admin))
    try:
        await nc.jetstream().add_stream(
            api.StreamConfig(
                name=STREAM, subjects=["amoskys.>"], storage=api.StorageType.FILE, duplicate_window=120
            )
        )
    finally:
        await nc.close()


def metric(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def test_a_box_and_the_hub_authenticate_with_credentials_files_and_the_jwt_fences_the_box(
    tmp_path: Path,
) -> None:
    trust = Trust.create()
    admin = trust.user_creds(tmp_path / "admin.creds", "admin")
    box = trust.user_creds(
        tmp_path / "box1.creds", BOX, pub_allow=BOX_PUB_ALLOW, pub_deny=BOX_PUB_DENY, sub_allow=INBOX
    )
    hub_creds = trust.user_creds(tmp_path / "hub.creds", "hub", pub_allow=HUB_PUB_ALLOW, sub_allow=INBOX)
    async with nats_server(tmp_path / "nats", config_text=trust.server_config()) as server:
        await make_stream(server, admin)

        # the box forwards everything exactly once (starting with a read-back of its own messages)
        metrics = Metrics()
        async with outbox(tmp_path / "box.db", metrics) as store:
            await store.submit(records("agent-1", 300))
            async with forwarding(store, metrics, server.url, credentials=str(box)) as run:
                await eventually(lambda: caught_up(run, store), within=15, what="every event acked")
                assert metric(metrics, "amoskys_nats_connected") == 1
                assert run.forwarder.status()["state"] in ("idle", "forwarding")
        contents = await read_stream(server.url, user_credentials=str(admin))
        assert set(contents.ids) == msg_ids("agent-1", 300) and not contents.duplicates

        # the same box with a fresh outbox holding the same events (reinstalled): its read-back, an
        # ephemeral consumer on its own subjects, finds every one of them and publishes none again
        again = Metrics()
        async with outbox(tmp_path / "box-again.db", again) as store:
            await store.submit(records("agent-1", 300))
            async with forwarding(store, again, server.url, credentials=str(box)) as run:
                await eventually(lambda: caught_up(run, store), within=15, what="every event found")
        assert metric(again, "amoskys_nats_reconciliations_total") >= 1
        assert metric(again, "amoskys_nats_found_events_total") == 300

        # the JWT's permissions hold: not another box's subjects, not the hub's consumer
        nc = await nats.connect(server.url, user_credentials=str(box))
        try:
            js = nc.jetstream()
            for subject in (
                f"amoskys.{SITE}.box2.agent-1.heartbeat",
                f"amoskys.site2.{BOX}.agent-1.heartbeat",
            ):
                with pytest.raises(nats.errors.TimeoutError):  # refused: no PubAck
                    await js.publish(subject, b"x", timeout=1)
        finally:
            await nc.close()

        # the hub, with its own credentials, consumes all of it and acks it
        async with running_hub(
            tmp_path, server.url, durable=HUB_DURABLE, subjects=("amoskys.>",), credentials=str(hub_creds)
        ) as hub:
            await eventually(
                lambda: hub.counter("amoskys_hub_messages_total", outcome="committed") == 300,
                within=15,
                what="the hub took all 300",
            )
            assert hub.hub.state == "consuming"
            assert {f"{s}:{e}" for s, e in await hub.ids()} == msg_ids("agent-1", 300)
        nc = await nats.connect(server.url, user_credentials=str(admin))
        try:
            js = nc.jetstream()
            info = await js.consumer_info(STREAM, HUB_DURABLE)
            assert info.num_pending == 0 and info.num_ack_pending == 0
            assert (await js.stream_info(STREAM)).state.messages == 300
        finally:
            await nc.close()


async def test_refused_credentials_leave_the_forwarder_retrying_and_disconnected(tmp_path: Path) -> None:
    trust = Trust.create()
    stranger = new_key(nkeys.PREFIX_BYTE_USER)
    refused = {
        "expired": trust.user_creds(
            tmp_path / "expired.creds", BOX, pub_allow=BOX_PUB_ALLOW, expires=int(time.time()) - 60
        ),
        # signed by an account the operator never signed
        "unknown-account": write_creds(
            tmp_path / "unknown.creds",
            user_jwt(new_key(nkeys.PREFIX_BYTE_ACCOUNT), stranger, BOX),
            stranger,
        ),
        # a good JWT with another user's seed: the server's nonce is signed by the wrong key
        "wrong-seed": write_creds(
            tmp_path / "wrong-seed.creds",
            user_jwt(trust.account, stranger, BOX),
            new_key(nkeys.PREFIX_BYTE_USER),
        ),
    }
    async with nats_server(tmp_path / "nats", config_text=trust.server_config()) as server:
        await make_stream(server, trust.user_creds(tmp_path / "admin.creds", "admin"))
        for case, creds in refused.items():
            metrics = Metrics()
            with structlog.testing.capture_logs() as logs:
                async with outbox(tmp_path / f"{case}.db", metrics) as store:
                    await store.submit(records("agent-1", 20))
                    async with forwarding(store, metrics, server.url, credentials=str(creds)) as run:
                        await eventually(
                            lambda: run.forwarder.status()["state"] == "retrying",
                            within=5,
                            what=f"{case}: the forwarder retrying",
                        )
                        status = run.forwarder.status()
                        assert status["reason"].startswith("NATS: not connected"), case
                        await eventually(  # the server's word is in the reason (`amoskys status`)
                            lambda: "Authorization Violation" in run.forwarder.status()["reason"],
                            within=5,
                            what=f"{case}: the refusal in the forwarder's reason",
                        )
                        assert status["lag_events"] == 20 and status["sent"] == 0, case
                        assert metric(metrics, "amoskys_nats_connected") == 0, case
                        assert not run.task.done(), case  # still trying, not crashed
            errors = [e for e in logs if e["event"] == "nats_error"]
            assert len(errors) == 1 and "Authorization Violation" in errors[0]["error"], (case, logs)
        # the hub with refused credentials degrades, and says the server refused it
        async with running_hub(tmp_path, server.url, credentials=str(refused["expired"])) as hub:
            await eventually(
                lambda: "Authorization Violation" in hub.hub.reason,
                within=CONNECT_GRACE_SECONDS + 5,
                what="the hub degraded with the server's refusal",
            )
            assert hub.hub.state == "degraded" and hub.hub.reason.startswith(
                "NATS unreachable: still connecting"
            )
            assert not hub.task.done()
        log_text = server.log_path.read_text()
        assert "authentication error" in log_text


def bad_files(tmp_path: Path, good: str) -> dict[str, Path]:
    seed_at = good.index("-----BEGIN USER NKEY SEED-----")
    texts = {
        "not-creds": "user: box1\npassword: secret\n",
        "no-jwt": good[seed_at:],  # nats-py alone would spin on the loop looking for the JWT
        "bad-seed": good.replace("-----BEGIN USER NKEY SEED-----\nSU", "-----BEGIN USER NKEY SEED-----\nXU"),
        "account-seed": good[:seed_at]
        + f"-----BEGIN USER NKEY SEED-----\n{new_key(nkeys.PREFIX_BYTE_ACCOUNT).seed}\n",
    }
    out = {}
    for name, text in texts.items():
        out[name] = tmp_path / f"{name}.creds"
        out[name].write_text(text)
    out["missing"] = tmp_path / "missing.creds"
    return out


async def test_a_file_that_is_no_credentials_file_is_an_error_naming_it(tmp_path: Path) -> None:
    trust = Trust.create()
    good = trust.user_creds(tmp_path / "good.creds", BOX).read_text()
    files = bad_files(tmp_path, good)
    for case, path in files.items():
        with pytest.raises(NatsConnectError) as caught:
            await connect("nats://127.0.0.1:1", credentials=str(path), name="t")
        assert caught.value.path == str(path) and path.name in str(caught.value), case

    # the forwarder stops saying why (nothing lost: its rows stay in the outbox); the hub degrades
    async with nats_server(tmp_path / "nats", config_text=trust.server_config()) as server:
        metrics = Metrics()
        async with outbox(tmp_path / "box.db", metrics) as store:
            await store.submit(records("agent-1", 5))
            async with forwarding(store, metrics, server.url, credentials=str(files["no-jwt"])) as run:
                await eventually(lambda: run.task.done(), within=5, what="the forwarder stopped")
                status = run.forwarder.status()
                assert status["state"] == "stopped" and "no-jwt.creds" in status["reason"]
                assert status["lag_events"] == 5
                assert run.task.exception() is None
        async with running_hub(tmp_path, server.url, credentials=str(files["bad-seed"])) as hub:
            await eventually(lambda: hub.hub.state == "degraded", within=5, what="the hub degraded")
            assert "bad-seed.creds" in hub.hub.reason and "seed" in hub.hub.reason
            assert hub.counter("amoskys_hub_degraded") == 1 and not hub.task.done()
