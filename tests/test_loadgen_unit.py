"""`amoskys loadgen`'s content and its way of giving up: current times, valid Community IDs, no audit,
losses only when asked, a loadgen identity required, and one line for every final failure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from amoskys import loadgen
from amoskys.bus.client import AccessDeniedError, MessageTooLargeError, PublisherIdentity, PublishRefusedError
from amoskys.community_id import community_id_of
from amoskys.errors import BusError, PkiError
from amoskys.pki.enrolment import enroll_agent
from amoskys.pki.issuance import ensure_appliance_pki
from amoskys.proto import bus_pb2
from amoskys.proto import events_pb2 as ev

from support import free_port

AGENT_KINDS = {"process", "host", "flow", "snmp", "device", "alert", "heartbeat"}


def _bundle(tmp: Path, role: str = "loadgen") -> Path:
    creds = ensure_appliance_pki(
        tmp / "pki", name="edge", trust_domain="amoskys.local", dns_names=["localhost"], ip_addresses=[]
    )
    out = tmp / f"bundle-{role}"
    enroll_agent(
        creds,
        name=f"lg-{role}",
        role=role,
        trust_domain="amoskys.local",
        bus_address="",
        out_dir=out,  # type: ignore[arg-type]
    )
    return out


def _envelopes(gen: loadgen.SyntheticEvents, batches: int, size: int) -> list[ev.Envelope]:
    out = []
    for _ in range(batches):
        _, raws = gen.make(size)
        out.extend(ev.Envelope.FromString(r) for r in raws)
    return out


def test_events_carry_the_current_time_and_every_agent_kind_but_audit_and_loss() -> None:
    t0 = time.time_ns()
    envs = _envelopes(loadgen.SyntheticEvents("lg-1"), 3, 50)
    t1 = time.time_ns()
    assert {e.WhichOneof("body") for e in envs} == AGENT_KINDS
    assert all(t0 <= e.ts_ns <= t1 and e.source == "lg-1" for e in envs)
    assert [e.source_seq for e in envs] == list(range(1, 151))
    assert len({e.event_id for e in envs}) == 150
    for e in envs:
        kind = e.WhichOneof("body")
        if kind == "flow":
            assert e.flow.last_ts_ns == e.ts_ns and e.flow.first_ts_ns < e.flow.last_ts_ns
        elif kind == "process":
            assert e.process.start_time_ns == e.ts_ns
        elif kind == "device":
            assert e.device.first_seen_ns == e.device.last_seen_ns == e.ts_ns


def test_loss_reports_only_when_asked_for() -> None:
    envs = _envelopes(loadgen.SyntheticEvents("lg-1", losses=True), 2, 40)
    assert {e.WhichOneof("body") for e in envs} == AGENT_KINDS | {"loss"}
    losses = [e.loss for e in envs if e.WhichOneof("body") == "loss"]
    assert all(lo.reason == "synthetic" and lo.window_end_ns > lo.window_start_ns for lo in losses)


def test_flow_records_carry_valid_community_ids() -> None:
    flows = [e.flow for e in _envelopes(loadgen.SyntheticEvents("lg-1"), 30, 10) if e.HasField("flow")]
    assert len({f.src_port for f in flows}) > 1  # several flows, not one
    for f in flows:
        assert f.community_id == community_id_of(f.src_addr, f.dst_addr, f.protocol, f.src_port, f.dst_port)


def test_only_a_loadgen_identity_may_publish(tmp_path: Path) -> None:
    assert loadgen.load_identity(_bundle(tmp_path)).name == "lg-loadgen"
    agent = _bundle(tmp_path, "agent")
    with pytest.raises(PkiError) as err:
        loadgen.load_identity(agent)
    assert str(err.value) == (
        f"loadgen: bundle {agent} ('lg-agent') is enrolled with role 'agent', so its events would be stored "
        "as real; enrol one for loadgen: amoskys agents enroll NAME --role loadgen"
    )


def test_refusals_of_the_bus_are_one_line() -> None:
    denied = loadgen.refusal(AccessDeniedError("b:1", "identity 'lg' is revoked"), "b:1", "lg")
    assert str(denied) == (
        "loadgen: bus b:1 refuses identity 'lg': PERMISSION_DENIED: identity 'lg' is revoked (enrol a "
        "loadgen identity on that appliance to publish there)"
    )
    too_big = PublishRefusedError(
        bus_pb2.PublishAck(status=bus_pb2.INVALID, message="6000 events in one batch;\nthe limit is 5000")
    )
    assert str(loadgen.refusal(too_big, "b:1", "lg")) == (
        "loadgen: bus b:1 refused a batch: INVALID: 6000 events in one batch; the limit is 5000 "
        "(use a smaller --batch)"
    )
    unauthorized = PublishRefusedError(
        bus_pb2.PublishAck(status=bus_pb2.UNAUTHORIZED, message="bad signature")
    )
    assert str(loadgen.refusal(unauthorized, "b:1", "lg")) == (
        "loadgen: bus b:1 refused a batch: UNAUTHORIZED: bad signature"
    )
    too_large = MessageTooLargeError("b:1", 34866, "Received message larger than max (34866 vs. 16384)")
    assert str(loadgen.refusal(too_large, "b:1", "lg")) == (
        "loadgen: bus b:1 refused a batch of 34,866 bytes as too large (Received message larger than max "
        "(34866 vs. 16384)); use a smaller --batch"
    )
    assert isinstance(loadgen.refusal(BusError("x"), "b:1", "lg"), BusError)


async def test_a_closed_port_gives_up_after_the_connect_timeout_with_one_line(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    identity = await PublisherIdentity.load(bundle)
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(loadgen.BusUnreachableError) as err:
        await loadgen.run(identity, address, events=10, batch=5, connect_timeout=0.5, bundle_dir=bundle)
    assert time.monotonic() - t0 < 10
    assert err.value.diagnosis.reason == "refused"
    assert str(err.value).startswith(f"loadgen: bus {address}: connection refused")
    assert "\n" not in str(err.value)


def test_the_summary_is_json_when_asked() -> None:
    result = loadgen.LoadgenResult(10, 10, 0, 0, 0, 1.0, 1.0, 2.0)
    assert json.loads(loadgen.format_summary(result, True))["events_per_second"] == 10.0
