"""JSON Lines export: documented fields, filters, and reading while the writer runs."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime
from pathlib import Path

import pytest

from amoskys.errors import StoreError
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.store.export import KINDS, bytes_text, export_events, is_time_field, message_json

from .helpers import flow_records, open_store, running
from support import amoskys

FIELDS = [
    "store_seq",
    "event_id",
    "source",
    "origin",
    "synthetic",
    "boot_id",
    "source_seq",
    "kind",
    "ts",
    "ts_ns",
    "received",
    "received_ns",
    "body",
]
TS = 1_796_292_000_123_456_789  # 2026-12-03T10:00:00.123456789Z, above 2**53
RECEIVED = 1_796_292_001_000_000_000


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def _head(env: ev.Envelope, seq: int, kind: str, ts: str) -> dict[str, object]:
    return {
        "store_seq": seq,
        "event_id": env.event_id,
        "source": "edge-1",
        "origin": "",
        "synthetic": False,
        "boot_id": env.boot_id,
        "source_seq": seq,
        "kind": kind,
        "ts": ts,
        "ts_ns": str(env.ts_ns),
        "received": "2026-12-03T10:00:01.000000000Z",
        "received_ns": str(RECEIVED),
    }


async def test_export_writes_each_kind_with_the_documented_encodings(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    stamper = EnvelopeStamper("edge-1")
    proc = ev.ProcessEvent(
        kind=ev.ProcessEvent.EXIT,
        pid=7,
        ppid=1,
        exe="/bin/sh",
        argv=["sh", "-c", "true"],
        user="root",
        start_time_ns=TS - 5,
        exit_code=0,  # optional: present although 0
        lifetime_ns=5,  # a duration: a number
        rss_bytes=2**60,  # a size: a number, exact in Python's json
        exe_sha256=bytes(range(32)),
    )
    device = ev.DeviceEvent(
        change=ev.DeviceEvent.MAC_CHANGED,
        ip="192.168.1.77",
        mac=bytes.fromhex("020000000077"),
        previous_mac=bytes.fromhex("aabbccddeeff"),
        seen_by=["arp_sweep"],
        first_seen_ns=TS - 10,
        last_seen_ns=TS,
        open_tcp_ports=[22, 80],
    )
    alert = ev.Alert(
        rule="bus.chain_fork", severity=ev.Alert.CRITICAL, summary="fork", attributes={"b": "2", "a": "1"}
    )
    loss = ev.LossReport(what="events", where="store", count=3, reason="hard_cap", range_start=1, range_end=3)
    envs = [
        stamper.stamp(ev.Envelope(process=proc), ts_ns=TS),
        stamper.stamp(ev.Envelope(device=device), ts_ns=TS),
        stamper.stamp(ev.Envelope(alert=alert), ts_ns=1_000),
        stamper.stamp(ev.Envelope(loss=loss), ts_ns=0),
    ]
    flow = flow_records(stamper, 1, start=3, ts_ns=TS)
    async with running(await open_store(path, clock=lambda: RECEIVED)) as store:
        await store.submit([*(Record.from_envelope(e) for e in envs), *flow])
    out = io.StringIO()
    assert (await export_events(path, out)).written == 5
    got = _lines(out)
    assert all(list(line) == FIELDS for line in got)
    expected_bodies = [
        {
            "kind": "EXIT",
            "pid": 7,
            "ppid": 1,
            "exe": "/bin/sh",
            "argv": ["sh", "-c", "true"],
            "user": "root",
            "start_time": "2026-12-03T10:00:00.123456784Z",
            "start_time_ns": str(TS - 5),
            "exit_code": 0,
            "lifetime_ns": 5,
            "rss_bytes": 2**60,
            "exe_sha256": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        },
        {
            "change": "MAC_CHANGED",
            "ip": "192.168.1.77",
            "mac": "02:00:00:00:00:77",
            "seen_by": ["arp_sweep"],
            "previous_mac": "aa:bb:cc:dd:ee:ff",
            "first_seen": "2026-12-03T10:00:00.123456779Z",
            "first_seen_ns": str(TS - 10),
            "last_seen": "2026-12-03T10:00:00.123456789Z",
            "last_seen_ns": str(TS),
            "open_tcp_ports": [22, 80],
        },
        {
            "rule": "bus.chain_fork",
            "severity": "CRITICAL",
            "summary": "fork",
            "attributes": {"a": "1", "b": "2"},
        },
        {
            "what": "events",
            "where": "store",
            "count": 3,
            "reason": "hard_cap",
            "range_start": 1,
            "range_end": 3,
        },
    ]
    kinds = ["process", "device", "alert", "loss"]
    times = [
        "2026-12-03T10:00:00.123456789Z",
        "2026-12-03T10:00:00.123456789Z",
        "1970-01-01T00:00:00.000001000Z",
        "1970-01-01T00:00:00.000000000Z",
    ]
    for i, (env, kind, ts, body) in enumerate(zip(envs, kinds, times, expected_bodies, strict=True)):
        assert got[i] == _head(env, i + 1, kind, ts) | {"body": body}
    flow_env = flow[0].parsed
    assert got[4] == _head(flow_env, 5, "flow", "2026-12-03T10:00:00.123456789Z") | {  # type: ignore[arg-type]
        "body": {
            "src_addr": "192.168.3.22",
            "dst_addr": "93.184.216.34",
            "src_port": 40003,
            "dst_port": 443,
            "protocol": 6,
            "ip_version": 4,
            "forward": {"packets": 13, "octets": 6000, "tcp_flags": 27},
            "reverse": {"packets": 11, "octets": 9003, "tcp_flags": 27},
            "first_ts": "2025-11-27T13:26:40.000000003Z",
            "first_ts_ns": "1764250000000000003",
            "last_ts": "2025-11-27T13:26:40.050000003Z",
            "last_ts_ns": "1764250000050000003",
            "final": True,
            "end_reason": "END_OF_FLOW",
            "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "interface": "eth1",
            "src_mac": "02:00:00:00:00:01",
            "dst_mac": "02:00:00:00:00:02",
        }
    }


async def test_big_nanosecond_times_round_trip_exactly_through_the_string_fields(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    stamper = EnvelopeStamper("edge-1")
    big = [2**63 - 1, 2**53 + 1, TS]
    envs = [stamper.stamp(ev.Envelope(heartbeat=ev.Heartbeat(started_ns=ns)), ts_ns=ns) for ns in big]
    async with running(await open_store(path, clock=lambda: 2**62 + 1)) as store:
        await store.submit([Record.from_envelope(e) for e in envs])
    out = io.StringIO()
    await export_events(path, out)
    for ns, line in zip(big, _lines(out), strict=True):
        body = line["body"]
        assert isinstance(body, dict)
        assert int(str(line["ts_ns"])) == ns and int(body["started_ns"]) == ns
        assert int(str(line["received_ns"])) == 2**62 + 1
        # the RFC 3339 form is the same instant, to the nanosecond
        stamp = str(line["ts"])
        assert stamp == body["started"] and stamp.endswith("Z") and len(stamp) == 30
        seconds = datetime.fromisoformat(stamp[:19] + "+00:00").timestamp()
        assert int(seconds) * 10**9 + int(stamp[20:29]) == ns
    assert _lines(out)[0]["ts"] == "2262-04-11T23:47:16.854775807Z"


def test_bytes_are_macs_addresses_or_hex_and_time_siblings_never_clash_with_fields() -> None:
    assert bytes_text("src_mac", bytes.fromhex("02000000007a")) == "02:00:00:00:00:7a"
    assert bytes_text("phys_address", bytes.fromhex("0011223344ff")) == "00:11:22:33:44:ff"
    assert bytes_text("mac", b"\x01\x02") == "0102"  # not 6 bytes: hex
    assert bytes_text("exe_sha256", b"\xab" * 6) == "ababababab" + "ab"  # a digest of 6 bytes stays hex
    assert bytes_text("remote_ip", bytes([10, 0, 0, 1])) == "10.0.0.1"
    assert bytes_text("src_addr", bytes.fromhex("20010db8" + "00" * 11 + "01")) == "2001:db8::1"
    assert bytes_text("prev_digest", bytes.fromhex("00ff")) == "00ff"
    assert message_json(ev.FlowRecord(end_reason=ev.FlowEndReason.Value("FORCED_END"))) == {
        "end_reason": "FORCED_END"
    }
    assert message_json(ev.SnmpInterface(in_bps=float("nan"), out_bps=0.5)) == {
        "in_bps": None,
        "out_bps": 0.5,
    }
    for message in ev.DESCRIPTOR.message_types_by_name.values():
        names = set(message.fields_by_name)
        for fd in message.fields:
            if is_time_field(fd):
                assert fd.name.removesuffix("_ns") not in names, (message.name, fd.name)


def test_an_unknown_kind_exits_2_with_one_line_naming_the_known_kinds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    amoskys("certs", "init", "--data-dir", str(data))
    asyncio.run(_one_flow(data / "events.db"))
    ok = amoskys("events", "export", "--kind", "flow", "--data-dir", str(data))
    assert len(ok.stdout.splitlines()) == 1 and ok.stderr.strip().endswith("exported 1 events")
    bad = amoskys("events", "export", "--kind", "flows", "--data-dir", str(data), check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1, bad.stderr
    assert "'flows'" in bad.stderr and ", ".join(KINDS) in bad.stderr
    assert KINDS == ("process", "host", "flow", "snmp", "device", "loss", "alert", "audit", "heartbeat")


async def _one_flow(path: Path) -> None:
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(EnvelopeStamper("a"), 1))


async def test_export_filters_by_kind_source_time_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(EnvelopeStamper("a"), 5, ts_ns=100))
        await store.submit(flow_records(EnvelopeStamper("b"), 5, ts_ns=200))
    cases = [
        ({"source": "b"}, 5),
        ({"kind": "flow", "since_ns": 150}, 5),
        ({"kind": "process"}, 0),
        ({"limit": 3}, 3),
        ({"limit": 0}, 0),
        ({"source": "a", "since_ns": 150}, 0),
    ]
    for filters, expected in cases:
        out = io.StringIO()
        assert (await export_events(path, out, **filters)).written == expected, filters  # type: ignore[arg-type]
        assert len(_lines(out)) == expected


async def test_export_reads_while_the_writer_runs_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    stamper = EnvelopeStamper("a")
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(stamper, 2500))
        out = io.StringIO()
        pending = store.submit(flow_records(stamper, 100, start=2500))
        n = (await export_events(path, out)).written
        await pending
        assert n in (2500, 2600)
        seqs = [line["store_seq"] for line in _lines(out)]
        assert seqs == list(range(1, n + 1))  # pages of 1000 stitched without gaps or repeats
        assert await store.submit(flow_records(stamper, 1, start=9999))  # the writer was never blocked


async def test_export_of_a_missing_file_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such file"):
        await export_events(tmp_path / "events.db", io.StringIO())
    assert not (tmp_path / "events.db").exists()
