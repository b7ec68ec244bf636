"""Replay an SNMP testcase through the collector's poll of one target and render what it publishes.

A case (``testcases/<case>/``) holds:

- ``poll1.snmprec``, ``poll2.snmprec``, ...: what the agent holds at each poll, in snmpsim's recording
  format (``OID|tag|value``; tags are the BER type numbers, ``x`` for hex values); polls are
  ``interval_seconds`` apart on the collector's clock;
- ``config.toml`` (optional): a ``[collectors.snmp]`` section (its first target is polled, else a
  v2c target named ``device`` at 192.0.2.1);
- ``expected.jsonl``: the reviewed output (see ``render``).

Each poll runs the collector's own ``TargetPoller.poll_once``: the system group by GET, the column
walks by GETBULK (``poller.fetch``, ``walk.ColumnWalk``: sysUpTime stamps every page, the 32-bit
counters walked only when an interface lacks its 64-bit twin), rows and rates against the previous
poll (``rows.assemble``, ``rates``), and the sample it publishes — or, when the poll fails, the
unreachable sample and the counted error. Only the network is replaced: ``RecordedAgent`` answers
GET and GETBULK from the recording as an agent does (RFC 3416), its values decoded by snmpsim's own
record reader into the pysnmp objects the collector's ``client.python_value`` converts.
(``make_snmp_testcases.py --check-agent`` compares it with snmpsim over loopback.) The clock is
fake, so times are exact: the first poll at 2026-01-01T00:00:00Z, and each poll takes no time.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import tomllib
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from pysnmp.proto import rfc1905
from snmp_harness import Harness
from snmpsim.record.snmprec import SnmprecRecord

from amoskys.collectors.clock import FakeClock
from amoskys.collectors.snmp.client import Session, auth_data, python_value, session_for
from amoskys.collectors.snmp.config import SnmpConfig, SnmpTargetConfig
from amoskys.collectors.snmp.oids import Oid
from amoskys.collectors.snmp.schedule import Activity, TargetPoller
from amoskys.collectors.snmp.series import SnmpSeries
from amoskys.config import from_mapping
from amoskys.proto import events_pb2

CASES_DIR = Path(__file__).resolve().parent / "testcases"
REGENERATE = ".venv/bin/python tests/collectors/snmp/make_snmp_testcases.py --expected"
T0_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z
COMMUNITY_ENV = "AMOSKYS_TESTCASE_COMMUNITY"
DEFAULT_TARGET = SnmpTargetConfig(name="device", address="192.0.2.1", community_env=COMMUNITY_ENV)


def cases() -> list[str]:
    return sorted(p.name for p in CASES_DIR.iterdir() if polls(p.name))


def polls(name: str) -> list[Path]:
    """The case's recordings in poll order (poll1, poll2, ... poll10)."""
    found = (CASES_DIR / name).glob("poll*.snmprec")
    return sorted(found, key=lambda p: int(p.stem.removeprefix("poll")))


def case_config(name: str) -> SnmpConfig:
    """The case's [collectors.snmp] settings (its config.toml over the defaults)."""
    path = CASES_DIR / name / "config.toml"
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    return from_mapping(data, source=str(path)).collectors.snmp


def case_target(config: SnmpConfig) -> SnmpTargetConfig:
    return config.targets[0] if config.targets else DEFAULT_TARGET


def read_snmprec(path: Path) -> list[tuple[Oid, Any]]:
    """(OID, pysnmp value) of every record, decoded by snmpsim's reader; variations are refused (a
    recording must say the same at every read)."""
    reader = SnmprecRecord()
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip() or line.startswith(b"#"):
            continue
        tag = line.split(b"|", 2)[1] if line.count(b"|") >= 2 else b""
        if b":" in tag:
            raise ValueError(
                f"{path}:{number}: variation {tag.decode()!r}: testcases hold recorded values only"
            )
        oid, value = reader.evaluate(line)
        records.append((tuple(oid), value))
    return records


class RecordedAgent:
    """The `SnmpClient` interface (``get``, ``bulk``) answered from one recording at a time."""

    def __init__(self) -> None:
        self.oids: list[Oid] = []
        self.values: dict[Oid, Any] = {}

    def load(self, records: Sequence[tuple[Oid, Any]]) -> None:
        self.values = dict(records)
        self.oids = sorted(self.values)

    def _next(self, oid: Oid) -> tuple[Oid, Any]:
        """GETNEXT: the first OID after `oid`, or `oid` with endOfMibView."""
        at = bisect_right(self.oids, oid)
        if at == len(self.oids):
            return oid, rfc1905.endOfMibView
        found = self.oids[at]
        return found, self.values[found]

    async def get(self, session: Session, names: Sequence[Oid]) -> dict[Oid, object]:
        return {tuple(n): python_value(self.values.get(tuple(n), rfc1905.noSuchObject)) for n in names}

    async def bulk(
        self, session: Session, non_repeaters: Sequence[Oid], repeaters: Sequence[Oid], max_repetitions: int
    ) -> list[tuple[Oid, object]]:
        """RFC 3416 §4.2.3: GETNEXT of each non-repeater, then up to `max_repetitions` rows of the
        repeaters, each from the previous row; it stops after a row that is endOfMibView throughout."""
        out = [self._next(tuple(oid)) for oid in non_repeaters]
        cursors = [tuple(oid) for oid in repeaters]
        for _ in range(max_repetitions if cursors else 0):
            row = [self._next(oid) for oid in cursors]
            out.extend(row)
            cursors = [name for name, _ in row]
            if all(value is rfc1905.endOfMibView for _, value in row):
                break
        return [(name, python_value(value)) for name, value in out]


class Discard:
    """Takes any metric call and does nothing: the replay checks what is published, not the series."""

    def __getattr__(self, name: str) -> Discard:
        return self

    def __call__(self, *args: object, **kwargs: object) -> Discard:
        return self


async def replay(name: str) -> list[tuple[str, events_pb2.Envelope] | dict[str, Any]]:
    """(recording, published envelope) for each poll of the case, then what the collector counted."""
    config = case_config(name)
    target = case_target(config)
    harness = Harness(Path(tempfile.gettempdir()))
    ctx = harness.context()
    clock = FakeClock(wall_ns=T0_NS)
    ctx.clock = clock
    errors: list[str] = []
    count_error = ctx.count_error

    def counted(error: BaseException | str) -> None:
        errors.append(str(error))
        count_error(error)

    ctx.count_error = counted  # type: ignore[method-assign]
    environ = {COMMUNITY_ENV: "public"}
    if target.community_env:
        environ[target.community_env] = "public"
    session = session_for(
        target, auth_data(target, environ), timeout_seconds=config.timeout_seconds, retries=config.retries
    )
    agent = RecordedAgent()
    poller = TargetPoller(
        target,
        session,
        config=config,
        ctx=ctx,
        client=agent,  # type: ignore[arg-type]
        limiter=asyncio.Semaphore(1),
        activity=Activity(ctx),
        series=SnmpSeries(Discard(), ctx.log, per_interface=False, cap=0),  # type: ignore[arg-type]
    )
    out: list[tuple[str, events_pb2.Envelope] | dict[str, Any]] = []
    for number, path in enumerate(polls(name)):
        if number:
            clock.advance(config.interval_seconds)
        agent.load(read_snmprec(path))
        await poller.poll_once()
        out.extend((path.name, envelope) for envelope in harness.sink[len(out) :])
    out.append({"errors": errors})
    return out


def render(items: list[tuple[str, events_pb2.Envelope] | dict[str, Any]]) -> str:
    """One JSON line per published sample (the recording it came from, its time and the SnmpSample in
    the proto JSON mapping, MAC addresses as hex), then ``{"summary": ...}``."""
    lines: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            lines.append({"summary": item})
            continue
        poll, envelope = item
        body = json_format.MessageToDict(envelope.snmp, preserving_proto_field_name=True)
        for iface, message in zip(body.get("interfaces", []), envelope.snmp.interfaces, strict=True):
            if message.phys_address:
                iface["phys_address"] = message.phys_address.hex(":")
        lines.append({"poll": poll, "ts_ns": envelope.ts_ns, "snmp": body})
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


async def run_case(name: str) -> str:
    return render(await replay(name))
