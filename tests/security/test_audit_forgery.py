"""Attack: enrolled agents and relays try to forge the appliance's audit log (Hardening I, item 7).

Against a real `amoskys run`: an agent publishes AuditEvents and events in the appliance's name, a relay
speaks as the appliance, and an operator enrols (or names) an identity after the appliance. Each forged
event must be rejected on its own with a reason (its neighbours accepted), the Audit page and API must
show only the appliance's own audit by default, remote audit only under the "remote" filter and with
its source and relay origin, and the name clash must be refused at enrolment and at start.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.events import uuid7
from amoskys.proto import bus_pb2
from amoskys.proto import events_pb2 as ev

from support import RunningAppliance, amoskys, http_get, wait_for

pytestmark = [pytest.mark.e2e]

NAME = "edge-sec"


def _config(tmp_path: Path, name: str = NAME) -> Path:
    path = tmp_path / "amoskys.toml"
    path.write_text(f'[appliance]\nname = "{name}"\nlog_format = "json"\n')
    return path


def _init(data: Path, config: Path) -> None:
    if not (data / "pki" / "ca.crt").exists():
        amoskys("certs", "init", "--data-dir", str(data), "--config", str(config))


def _enroll(data: Path, config: Path, name: str, role: str, out: Path) -> PublisherIdentity:
    _init(data, config)
    amoskys(
        "agents",
        "enroll",
        name,
        "--role",
        role,
        "--out",
        str(out),
        "--data-dir",
        str(data),
        "--config",
        str(config),
        "--bus-address",
        "localhost:50051",  # the bus port is chosen at start; tests dial app.bus_port
    )
    return PublisherIdentity.from_bundle(out)


class _Events:
    """Hand-made envelopes of one claimed source (a publisher may claim any source it likes)."""

    def __init__(self) -> None:
        self.boot = str(uuid.uuid4())
        self.seq = 0

    def make(self, source: str, **body: object) -> bytes:
        self.seq += 1
        env = ev.Envelope(
            event_id=uuid7(),
            source=source,
            boot_id=self.boot,
            source_seq=self.seq,
            ts_ns=time.time_ns(),
            **body,
        )
        return env.SerializeToString()


def _forged_login(detail: str) -> dict[str, object]:
    return {
        "audit": ev.AuditEvent(
            actor="mallory", action="login", success=True, remote_addr="203.0.113.9", detail=detail
        )
    }


async def _publish(identity: PublisherIdentity, port: int, raws: list[bytes]) -> bus_pb2.PublishAck:
    async with BusClient(identity, f"127.0.0.1:{port}", call_timeout_seconds=20) as client:
        return await client.publish_raw(raws)


def _reasons(ack: bus_pb2.PublishAck) -> dict[int, str]:
    return {r.index: r.reason for r in ack.rejected}


def _metric(app: RunningAppliance, name: str, **labels: str) -> float:
    status, body = http_get(app.web_url + "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class _Admin:
    """A logged-in dashboard session (the session cookie, sent by hand)."""

    def __init__(self, app: RunningAppliance) -> None:
        self.base = app.web_url
        password = (app.data_dir / "admin-password").read_text().strip()
        req = urllib.request.Request(
            self.base + "/api/v1/login",
            data=json.dumps({"name": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        self.headers = {"Cookie": cookie}

    def get(self, path: str) -> tuple[int, str]:
        status, body = http_get(self.base + path, headers=self.headers, timeout=10)
        return status, body.decode(errors="replace")

    def json(self, path: str) -> dict:  # type: ignore[type-arg]
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


def _start(
    appliance_factory, tmp_path: Path
) -> tuple[RunningAppliance, Path, PublisherIdentity, PublisherIdentity]:  # type: ignore[no-untyped-def]
    data, config = tmp_path / "data", _config(tmp_path)
    agent = _enroll(data, config, "agent-a", "agent", tmp_path / "agent-a")
    relay = _enroll(data, config, "relay-r", "relay", tmp_path / "relay-r")
    app = appliance_factory("--config", str(config), data_dir=data)
    app.wait_ready(timeout=30)
    return app, config, agent, relay


def test_the_bus_rejects_each_forged_event_and_keeps_its_neighbours(
    appliance_factory, tmp_path: Path
) -> None:
    app, _, agent, relay = _start(appliance_factory, tmp_path)
    e = _Events()
    agent_batch = [
        e.make("agent-a", **_forged_login("agent audit")),  # 0: agents never send audit
        e.make("agent-a", heartbeat=ev.Heartbeat(version="1", hostname="a", mode="agent")),  # 1: good
        e.make(NAME, alert=ev.Alert(rule="x", summary="speaks as the appliance")),  # 2
        e.make(NAME.upper(), loss=ev.LossReport(what="events", where="x", count=1)),  # 3: case does not help
        e.make("other-host", alert=ev.Alert(rule="x", summary="speaks as another host")),  # 4
        e.make("agent-a", alert=ev.Alert(rule="x", summary="its own alert")),  # 5: good
    ]
    ack = asyncio.run(_publish(agent, app.bus_port, agent_batch))
    assert ack.status == bus_pb2.OK
    assert _reasons(ack) == {
        0: "kind_not_allowed",
        2: "reserved_source",
        3: "reserved_source",
        4: "source_not_sender",
    }
    assert ack.accepted == 2

    relay_batch = [
        e.make(NAME, **_forged_login("relay speaks as the appliance")),  # 0
        e.make("downstream-1", **_forged_login("relayed")),  # 1: a forwarded agent's event: good
        e.make("edge-SEC", alert=ev.Alert(rule="x", summary="case")),  # 2
        e.make("downstream-1", heartbeat=ev.Heartbeat(version="1", hostname="d", mode="agent")),  # 3: good
    ]
    ack = asyncio.run(_publish(relay, app.bus_port, relay_batch))
    assert ack.status == bus_pb2.OK
    assert _reasons(ack) == {0: "reserved_source", 2: "reserved_source"}
    assert ack.accepted == 2

    assert _metric(app, "amoskys_bus_events_total", outcome="rejected", reason="reserved_source") == 4
    assert _metric(app, "amoskys_bus_events_total", outcome="rejected", reason="kind_not_allowed") == 1
    assert _metric(app, "amoskys_bus_events_total", outcome="rejected", reason="source_not_sender") == 1

    admin = _Admin(app)
    stored = admin.json(f"/api/v1/events?source={NAME}&limit=500")["items"]
    assert all(i["origin"] == "" for i in stored), "nothing remote is stored under the appliance's name"
    relayed = admin.json("/api/v1/events?source=downstream-1")["items"]
    assert sorted(i["kind"] for i in relayed) == ["audit", "heartbeat"]
    assert {i["origin"] for i in relayed} == {"relay-r"}, "a relayed event records the relay it came through"
    own = admin.json("/api/v1/events?source=agent-a")["items"]
    assert sorted(i["kind"] for i in own) == ["alert", "heartbeat"] and {i["origin"] for i in own} == {
        "agent-a"
    }


def test_audit_shows_only_the_appliances_own_audit_unless_asked_for_remote(
    appliance_factory, tmp_path: Path
) -> None:
    app, _, agent, relay = _start(appliance_factory, tmp_path)
    e = _Events()
    asyncio.run(_publish(agent, app.bus_port, [e.make("agent-a", **_forged_login("agent-forged"))]))
    asyncio.run(
        _publish(
            relay,
            app.bus_port,
            [
                e.make(NAME, **_forged_login("relay-as-appliance")),
                e.make("downstream-1", **_forged_login("relayed-login")),
            ],
        )
    )
    admin = _Admin(app)  # a genuine login: the appliance audits it itself

    def local_audit() -> list[dict]:  # type: ignore[type-arg]
        items = admin.json("/api/v1/audit")["items"]
        return items if any(i["body"].get("actor") == "admin" for i in items) else []

    items = wait_for(local_audit, timeout=15, what="the admin's own login in the audit log")
    assert [i for i in items if i["body"].get("actor") == "mallory"] == [], (
        "no forged entry in the default view"
    )
    assert {(i["source"], i["origin"]) for i in items} == {(NAME, "")}

    remote = admin.json("/api/v1/audit?remote=1")["items"]
    assert [(i["source"], i["origin"], i["body"]["detail"]) for i in remote] == [
        ("downstream-1", "relay-r", "relayed-login")
    ]

    status, page = admin.get("/audit")
    assert status == 200
    assert "mallory" not in page and "admin" in page
    assert "Source" in page and NAME in page
    status, page = admin.get("/audit?remote=1")
    assert status == 200
    assert "relayed-login" in page and "downstream-1" in page and "relay-r" in page
    assert "agent-forged" not in page and "relay-as-appliance" not in page


@pytest.mark.parametrize("spelling", [NAME, NAME.upper()])
def test_enrolling_the_appliances_own_name_is_refused(tmp_path: Path, spelling: str) -> None:
    data, config = tmp_path / "data", _config(tmp_path)
    _init(data, config)
    result = amoskys(
        "agents", "enroll", spelling, "--role", "relay", "--out", str(tmp_path / "b"),
        "--data-dir", str(data), "--config", str(config), "--bus-address", "localhost:50051", check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "appliance" in result.stderr and spelling in result.stderr
    assert not (tmp_path / "b").exists(), "nothing is issued"
    assert not list((data / "pki").glob("agents/*")), "nothing is recorded"


def test_an_appliance_named_like_an_enrolled_identity_refuses_to_start(
    appliance_factory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _enroll(data, _config(tmp_path, "other-name"), "Edge-Sec", "relay", tmp_path / "relay")
    app = appliance_factory("--config", str(_config(tmp_path)), data_dir=data)

    def outcome() -> str | None:
        if app.proc.poll() is not None:
            return "exited"
        return "started" if (data / "run.json").exists() else None

    assert wait_for(outcome, timeout=60, what="amoskys to exit or become ready") == "exited", app.log()
    assert app.proc.returncode == 2
    # the log is JSON lines (log_format = "json"); the refusal is the one line that is not
    said = [line for line in app.log().splitlines() if not line.startswith("{")]
    assert len(said) == 1, app.log()
    assert said[0].startswith("amoskys: error:") and "Edge-Sec" in said[0] and NAME in said[0]
    assert not (data / "run.json").exists()
