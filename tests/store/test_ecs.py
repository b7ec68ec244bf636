"""`events export --format ecs`: every emitted field is an ECS 8.11 field of the committed reference
table, with a JSON value of that field's type; kinds without a mapping are skipped and counted."""

from __future__ import annotations

import asyncio
import csv
import io
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from amoskys import ecs
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.store.export import export_events

from .helpers import flow_envelope, open_store, running
from support import amoskys

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "tests" / "fixtures" / "ecs_8_11_fields.csv"
TS = 1_796_292_000_123_456_789  # 2026-12-03T10:00:00.123456789Z
RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
STRINGS = {"keyword", "wildcard", "match_only_text"}


def _table() -> dict[str, tuple[str, bool]]:
    with TABLE.open(newline="") as f:
        return {row["field"]: (row["type"], row["normalize"] == "array") for row in csv.DictReader(f)}


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "labels":
            out.update(_flatten(value, name + "."))
        elif name == "labels":
            out.update({f"labels.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def _valid(kind: str, value: object) -> bool:
    if kind in STRINGS:
        return isinstance(value, str) and value != ""
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "ip":
        try:
            ipaddress.ip_address(str(value))
        except ValueError:
            return False
        return isinstance(value, str)
    if kind == "date":
        return isinstance(value, str) and RFC3339_NS.match(value) is not None
    raise AssertionError(f"type {kind!r} of the reference table has no check")


def _envelopes(stamper: EnvelopeStamper) -> list[ev.Envelope]:
    tagged = flow_envelope(stamper, 1, ts_ns=TS)
    tagged.flow.vlan, tagged.flow.inner_vlan = 10, 20
    icmp = flow_envelope(stamper, 2, ts_ns=TS)
    icmp.flow.protocol, icmp.flow.src_port, icmp.flow.dst_port = 1, 8, 0
    icmp.flow.final = False
    bodies = [
        ev.Envelope(
            process=ev.ProcessEvent(
                kind=ev.ProcessEvent.EXEC,
                pid=4242,
                ppid=1,
                exe="/usr/bin/curl",
                argv=["curl", "-s", "https://example.org"],
                user="alice",
                uid=1000,
                start_time_ns=TS - 1,
                exe_sha256=bytes(range(32)),
                container_id="c0ffee",
            )
        ),
        ev.Envelope(process=ev.ProcessEvent(kind=ev.ProcessEvent.EXIT, pid=4242, exit_code=3)),
        ev.Envelope(process=ev.ProcessEvent(kind=ev.ProcessEvent.SNAPSHOT, pid=1, rss_bytes=10)),
        ev.Envelope(
            device=ev.DeviceEvent(
                change=ev.DeviceEvent.IP_CHANGED,
                ip="192.168.1.78",
                previous_ip="192.168.1.77",
                mac=bytes.fromhex("020000000077"),
                hostname="printer",
                interface="eth0",
            )
        ),
        ev.Envelope(
            alert=ev.Alert(
                rule="flow.scan",
                severity=ev.Alert.WARNING,
                summary="port scan",
                attributes={"src": "10.0.0.9"},
            )
        ),
        ev.Envelope(heartbeat=ev.Heartbeat(version="1")),
        ev.Envelope(host=ev.HostMetrics(hostname="edge-1")),
    ]
    return [tagged, icmp, *(stamper.stamp(b, ts_ns=TS) for b in bodies)]


async def _export(tmp_path: Path, **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    path = tmp_path / "events.db"
    stamper = EnvelopeStamper("edge-1")
    async with running(await open_store(path)) as store:
        await store.state.enroll_identity("lg-1", "loadgen", b"\x01" * 32, "1")
        records = [Record.from_envelope(e) for e in _envelopes(stamper)]
        lg_alert = ev.Alert(rule="r", rule_id="0e95725d-7320-415d-80f7-004da920fc11", title="Shell from /tmp")
        lg_alert.level, lg_alert.host = ev.Alert.LEVEL_HIGH, "lg-1"
        lg = EnvelopeStamper("lg-1").stamp(ev.Envelope(alert=lg_alert), ts_ns=TS)
        records.append(Record.from_envelope(lg, origin="relay-1", synthetic=True))
        await store.submit(records)
    out = io.StringIO()
    summary = await export_events(path, out, format="ecs", **kw)
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


async def test_every_ecs_field_is_in_the_reference_table_with_a_value_of_its_type(tmp_path: Path) -> None:
    docs, summary = await _export(tmp_path)
    assert summary.written == 8 and dict(summary.skipped) == {"heartbeat": 1, "host": 1}
    table = _table()
    seen: set[str] = set()
    for doc in docs:
        for name, value in _flatten(doc).items():
            key = "labels.*" if name.startswith("labels.") else name
            assert key in table, f"{name} is not in {TABLE.name}"
            kind, array = table[key]
            values = value if array else [value]
            assert isinstance(values, list) and values, (name, value)
            assert all(_valid(kind, v) for v in values), (name, kind, value)
            seen.add(key)
    assert seen == set(table), f"fields in the table never emitted: {set(table) - seen}"
    assert all(doc["ecs"]["version"] == ecs.ECS_VERSION == "8.11.0" for doc in docs)


async def test_a_flow_maps_to_source_destination_and_network(tmp_path: Path) -> None:
    docs, _ = await _export(tmp_path)
    flow = docs[0]
    assert flow["@timestamp"] == "2026-12-03T10:00:00.123456789Z"
    assert flow["event"] | {"id": ""} == {
        "id": "",
        "module": "amoskys",
        "dataset": "amoskys.flow",
        "sequence": 1,
        "kind": "event",
        "category": ["network"],
        "type": ["connection", "end"],
        "action": "network_flow",
        "start": "2025-11-27T13:26:40.000000001Z",
        "end": "2025-11-27T13:26:40.050000001Z",
        "duration": 50_000_000,
        "reason": "end_of_flow",
    }
    assert flow["source"] == {
        "ip": "192.168.1.8",
        "address": "192.168.1.8",
        "port": 40001,
        "mac": "02-00-00-00-00-01",
        "bytes": 3000,
        "packets": 11,
    }
    assert flow["destination"]["ip"] == "93.184.216.34" and flow["destination"]["port"] == 443
    assert flow["network"] == {
        "transport": "tcp",
        "iana_number": "6",
        "type": "ipv4",
        "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "bytes": 3000 + 9001,
        "packets": 11 + 9,
        "vlan": {"id": "10"},
        "inner": {"vlan": {"id": "20"}},
    }
    assert flow["observer"] == {
        "name": "edge-1",
        "vendor": "AMOSKYS",
        "product": "amoskys",
        "ingress": {"interface": {"name": "eth1"}},
    }
    assert flow["related"] == {"ip": ["192.168.1.8", "93.184.216.34"]}
    icmp = docs[1]
    assert "port" not in icmp["source"] and icmp["network"]["transport"] == "icmp"
    assert icmp["event"]["type"] == ["connection"]  # an interim record


async def test_processes_devices_and_alerts_map_to_their_ecs_fields(tmp_path: Path) -> None:
    docs, _ = await _export(tmp_path)
    exec_, exit_, snap, device, alert, synthetic = docs[2:]
    assert exec_["process"] == {
        "pid": 4242,
        "parent": {"pid": 1},
        "executable": "/usr/bin/curl",
        "name": "curl",
        "args": ["curl", "-s", "https://example.org"],
        "args_count": 3,
        "command_line": "curl -s https://example.org",
        "hash": {"sha256": bytes(range(32)).hex()},
        "user": {"name": "alice", "id": "1000"},
        "start": "2026-12-03T10:00:00.123456788Z",
    }
    assert exec_["host"] == {"name": "edge-1"} and exec_["container"] == {"id": "c0ffee"}
    assert (exec_["event"]["type"], exec_["event"]["action"]) == (["start"], "exec")
    assert exit_["process"] == {"pid": 4242, "end": "2026-12-03T10:00:00.123456789Z", "exit_code": 3}
    assert (snap["event"]["kind"], snap["event"]["type"]) == ("state", ["info"])
    assert device["host"] == {
        "name": "printer",
        "hostname": "printer",
        "ip": ["192.168.1.78"],
        "mac": ["02-00-00-00-00-77"],
    }
    assert device["related"] == {"ip": ["192.168.1.78", "192.168.1.77"], "hosts": ["printer"]}
    assert (device["event"]["type"], device["event"]["action"]) == (["change"], "device_ip_changed")
    assert alert["rule"] == {"name": "flow.scan"} and alert["message"] == "port scan"
    assert alert["event"]["kind"] == "alert" and alert["event"]["severity"] == 2
    assert alert["labels"] == {"src": "10.0.0.9"} and alert["log"] == {"level": "warning"}
    assert synthetic["tags"] == ["synthetic"] and synthetic["labels"] == {"origin": "relay-1"}
    assert synthetic["observer"]["name"] == "lg-1"
    # an alert with a Sigma rule's identity and level (Sigma's 1 informational .. 5 critical)
    assert synthetic["rule"] == {"id": "0e95725d-7320-415d-80f7-004da920fc11", "name": "Shell from /tmp"}
    assert (synthetic["event"]["severity"], synthetic["log"]) == (4, {"level": "high"})
    assert synthetic["host"] == {"name": "lg-1"}


async def test_limit_counts_documents_written_not_events_skipped(tmp_path: Path) -> None:
    docs, summary = await _export(tmp_path, kind="alert", limit=1)
    assert len(docs) == summary.written == 1 and docs[0]["rule"]["name"] == "flow.scan"


def test_the_cli_writes_ecs_and_counts_what_it_skipped_on_stderr(tmp_path: Path) -> None:
    data = tmp_path / "data"
    amoskys("certs", "init", "--data-dir", str(data))

    async def fill() -> None:
        async with running(await open_store(data / "events.db")) as store:
            await store.submit([Record.from_envelope(e) for e in _envelopes(EnvelopeStamper("edge-1"))])

    asyncio.run(fill())
    result = amoskys("events", "export", "--format", "ecs", "--data-dir", str(data))
    assert len(result.stdout.splitlines()) == 7
    assert result.stderr.strip().endswith("exported 7 events (skipped, no ECS mapping: heartbeat 1, host 1)")


def test_the_module_and_the_readme_name_the_ecs_version() -> None:
    readme = (ROOT / "amoskys" / "store" / "README.md").read_text()
    assert "ECS 8.11" in readme and "8.11" in (ecs.__doc__ or "")
