"""Who may say what on the bus: no remote event speaks as the appliance, agents speak only for themselves
and never for the audit log, relays forward for others and are recorded as the events' origin."""

from __future__ import annotations

import time
import uuid

import pytest

from amoskys.bus.validate import REASONS, check
from amoskys.events import EnvelopeStamper, uuid7
from amoskys.proto import bus_pb2, events_pb2

from bus_harness import BusEnv
from support import eventually

APPLIANCE = "appliance"  # the harness's appliance name

BODIES: dict[str, dict[str, object]] = {
    "audit": {"audit": events_pb2.AuditEvent(actor="mallory", action="login", success=True)},
    "alert": {"alert": events_pb2.Alert(rule="x", summary="y")},
    "loss": {"loss": events_pb2.LossReport(what="events", where="x", count=1)},
    "heartbeat": {"heartbeat": events_pb2.Heartbeat(version="1")},
    "flow": {"flow": events_pb2.FlowRecord(src_addr="192.0.2.1", dst_addr="192.0.2.2")},
}


class _Maker:
    def __init__(self) -> None:
        self.boot, self.seq = str(uuid.uuid4()), 0

    def envelope(self, source: str, kind: str) -> events_pb2.Envelope:
        self.seq += 1
        return events_pb2.Envelope(
            event_id=uuid7(),
            source=source,
            boot_id=self.boot,
            source_seq=self.seq,
            ts_ns=time.time_ns(),
            **BODIES[kind],  # type: ignore[arg-type]
        )

    def raw(self, source: str, kind: str) -> bytes:
        return self.envelope(source, kind).SerializeToString()


# ---------------------------------------------------------------------- the rules, one event at a time
@pytest.mark.parametrize("relay", [False, True])
@pytest.mark.parametrize("spelling", [APPLIANCE, "Appliance", "APPLIANCE"])
def test_no_remote_event_may_use_the_appliances_name_in_any_case(relay: bool, spelling: str) -> None:
    for kind in BODIES:
        env = _Maker().envelope(spelling, kind)
        sender = spelling if not relay else "relay-1"
        assert check(env, sender=sender, relay=relay, reserved_source=APPLIANCE) == "reserved_source", kind


def test_the_appliances_own_collectors_speak_as_the_appliance() -> None:
    for kind in BODIES:
        assert check(_Maker().envelope(APPLIANCE, kind), sender=None, reserved_source=APPLIANCE) is None


def test_an_agent_never_sends_audit_and_speaks_only_for_itself() -> None:
    m = _Maker()
    assert (
        check(m.envelope("agent-1", "audit"), sender="agent-1", reserved_source=APPLIANCE)
        == "kind_not_allowed"
    )
    for kind in ("alert", "loss", "heartbeat", "flow"):
        assert check(m.envelope("agent-1", kind), sender="agent-1", reserved_source=APPLIANCE) is None, kind
        got = check(m.envelope("agent-2", kind), sender="agent-1", reserved_source=APPLIANCE)
        assert got == "source_not_sender", kind


def test_a_relay_forwards_every_kind_for_other_sources() -> None:
    m = _Maker()
    for kind in BODIES:
        for source in ("downstream-1", "relay-1"):
            assert (
                check(m.envelope(source, kind), sender="relay-1", relay=True, reserved_source=APPLIANCE)
                is None
            )


@pytest.mark.parametrize(
    "source",
    [
        "appliance ",
        " appliance",
        "\u0430ppliance",  # a Cyrillic 'а': looks like the appliance on a page
        "appli\u200bance",  # a zero-width space
        "agent-1\n",
        "-agent",
        "x" * 65,
    ],
)
def test_a_remote_source_must_be_an_identity_name_so_nothing_looks_like_another(source: str) -> None:
    env = _Maker().envelope(source, "alert")
    assert check(env, sender="relay-1", relay=True, reserved_source=APPLIANCE) == "bad_source"


def test_every_new_reason_is_a_known_metric_label() -> None:
    assert {"reserved_source", "kind_not_allowed", "bad_source", "source_not_sender"} <= set(REASONS)


# ---------------------------------------------------------------------- over real mTLS
async def test_forged_events_are_rejected_one_by_one_and_their_neighbours_stored(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    m = _Maker()
    batch = [
        m.raw("agent-1", "audit"),
        m.raw("agent-1", "heartbeat"),
        m.raw(APPLIANCE, "alert"),
        m.raw("Appliance", "loss"),
        m.raw("agent-2", "alert"),
        m.raw("agent-1", "loss"),
        m.raw("agent-1", "alert"),
    ]
    ack = await bus_env.client(agent).publish_raw(batch)
    assert ack.status == bus_pb2.OK
    assert [(r.index, r.reason) for r in ack.rejected] == [
        (0, "kind_not_allowed"),
        (2, "reserved_source"),
        (3, "reserved_source"),
        (4, "source_not_sender"),
    ]
    assert ack.accepted == 3
    stored = await bus_env.store.events(limit=100)
    assert sorted((e.source, e.kind, e.origin) for e in stored) == [
        ("agent-1", "alert", "agent-1"),
        ("agent-1", "heartbeat", "agent-1"),
        ("agent-1", "loss", "agent-1"),
    ]
    rejected = {
        reason: bus_env.counter("amoskys_bus_events_total", outcome="rejected", reason=reason)
        for reason in ("kind_not_allowed", "reserved_source", "source_not_sender")
    }
    assert rejected == {"kind_not_allowed": 1, "reserved_source": 2, "source_not_sender": 1}


async def test_relayed_events_are_stored_with_the_relay_as_their_origin(bus_env: BusEnv) -> None:
    relay = await bus_env.enroll("relay-1", role="relay")
    m = _Maker()
    batch = [m.raw("downstream-1", "audit"), m.raw(APPLIANCE, "audit"), m.raw("relay-1", "audit")]
    ack = await bus_env.client(relay).publish_raw(batch)
    assert [(r.index, r.reason) for r in ack.rejected] == [(1, "reserved_source")]
    stored = await bus_env.store.events(kind="audit", limit=100)
    assert sorted((e.source, e.origin) for e in stored) == [
        ("downstream-1", "relay-1"),
        ("relay-1", "relay-1"),
    ]
    assert all(e.remote for e in stored)


async def test_the_appliances_own_events_have_no_origin(bus_env: BusEnv) -> None:
    stamper = EnvelopeStamper(APPLIANCE)
    await bus_env.bus.publish([stamper.stamp(events_pb2.Envelope(**BODIES["audit"]))])  # type: ignore[arg-type]

    rows = await eventually(  # local: publish does not wait for the commit
        lambda: bus_env.store.events(kind="audit", limit=10), what="the local audit event committed"
    )
    assert [(e.source, e.origin, e.remote) for e in rows] == [(APPLIANCE, "", False)]


async def test_an_agent_may_not_pose_as_a_relay_by_claiming_a_relays_name(bus_env: BusEnv) -> None:
    agent = await bus_env.enroll("agent-1")
    await bus_env.enroll("relay-1", role="relay")
    m = _Maker()
    ack = await bus_env.client(agent).publish_raw([m.raw("relay-1", "audit"), m.raw("downstream-1", "alert")])
    assert [r.reason for r in ack.rejected] == ["source_not_sender", "source_not_sender"]
