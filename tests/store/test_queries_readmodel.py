"""The read model's queries (amoskys.store.queries): each equals a brute-force scan of the events it was
built from, page by page; pages stay stable while ingest goes on; the SNMP reads are bounded.

Events are written by a real store (its writer maintains the read model) in a temporary directory; the
queries run on the dashboard's Reader, as the web app runs them."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store
from amoskys.store.queries import flows as fq
from amoskys.store.queries import history, log, snmp
from amoskys.store.queries.reader import Reader

from .helpers import open_store, running

ADDRS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "192.0.2.9")
PORTS = (22, 53, 443)
CIDS = ("1:a", "1:b", "1:c")
TS = tuple(1_764_000_000_000_000_000 + k * 1_000_000_000 for k in range(4))  # few values: many ties


@dataclass(frozen=True)
class FlowSpec:
    src: str
    dst: str
    port: int
    cid: str
    ts: int
    fwd: int
    rev: int
    synthetic: bool = False


flow_specs = st.builds(
    FlowSpec,
    src=st.sampled_from(ADDRS),
    dst=st.sampled_from(ADDRS),
    port=st.sampled_from(PORTS),
    cid=st.sampled_from(CIDS),
    ts=st.sampled_from(TS),
    fwd=st.integers(0, 10_000),
    rev=st.integers(0, 10_000),
    synthetic=st.booleans(),
)


def flow_record(stamper: EnvelopeStamper, f: FlowSpec) -> Record:
    body = ev.FlowRecord(
        src_addr=f.src,
        dst_addr=f.dst,
        src_port=40000,
        dst_port=f.port,
        protocol=6,
        ip_version=4,
        forward=ev.FlowDirection(packets=f.fwd // 100, octets=f.fwd),
        reverse=ev.FlowDirection(packets=f.rev // 100, octets=f.rev),
        final=True,
        end_reason=ev.END_OF_FLOW,
        community_id=f.cid,
    )
    return Record.from_envelope(stamper.stamp(ev.Envelope(flow=body), ts_ns=f.ts), synthetic=f.synthetic)


@asynccontextmanager
async def store_and_reader(path: Path) -> AsyncIterator[tuple[Store, Reader]]:
    store = await open_store(path)
    async with running(store):
        reader = Reader(path)
        await reader.open()
        try:
            yield store, reader
        finally:
            await reader.close()


async def all_pages(fetch: Callable[[int | None], Awaitable[list[dict[str, Any]]]], limit: int) -> list[int]:
    """Walk every page (`fetch(before)`), as a client follows `next_before`; the store_seqs in order."""
    seqs: list[int] = []
    before = None
    while True:
        page = await fetch(before)
        seqs += [item["store_seq"] for item in page]
        if len(page) < limit:
            return seqs
        before = page[-1]["store_seq"]


def newest_first(rows: list[tuple[int, int]]) -> list[int]:
    """(ts_ns, store_seq) pairs in page order: newest observation first, then highest store_seq."""
    return [seq for _, seq in sorted(rows, reverse=True)]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(flow_specs, min_size=0, max_size=40), limit=st.integers(1, 7))
def test_flow_searches_and_top_talkers_equal_a_scan_of_the_events(specs: list[FlowSpec], limit: int) -> None:
    async def check(tmp: Path) -> None:
        stamper = EnvelopeStamper("box")
        async with store_and_reader(tmp / "events.db") as (store, reader):
            await store.submit([flow_record(stamper, f) for f in specs])
            seq_of = list(enumerate(specs, start=1))  # a fresh store numbers them from 1
            searches: list[dict[str, Any]] = [
                {},
                {"ip": "10.0.0.1"},
                {"ip": "192.0.2.9", "port": 443},
                {"port": 53},
                {"community_id": "1:b"},
                {"community_id": "1:a", "ip": "10.0.0.2"},
                {"ip": "203.0.113.1"},
            ]
            for search in searches:

                def wanted(f: FlowSpec, s: dict[str, Any] = search) -> bool:
                    return (
                        ("ip" not in s or s["ip"] in (f.src, f.dst))
                        and ("port" not in s or f.port == s["port"])
                        and ("community_id" not in s or f.cid == s["community_id"])
                    )

                expected = newest_first([(f.ts, seq) for seq, f in seq_of if wanted(f)])

                async def fetch(before: int | None, s: dict[str, Any] = search) -> list[dict[str, Any]]:
                    return await fq.flows(reader, **s, before=before, limit=limit)

                assert await all_pages(fetch, limit) == expected, search
            page = await fq.flows(reader, limit=1)
            if specs:
                seq = page[0]["store_seq"]
                f = specs[seq - 1]
                body = page[0]["body"]
                assert (body["src_addr"], body["dst_addr"], body["dst_port"]) == (f.src, f.dst, f.port)
                assert body.get("forward", {}).get("octets", 0) == f.fwd and page[0]["kind"] == "flow"
            octets: Counter[str] = Counter()
            packets: Counter[str] = Counter()
            for f in specs:
                if f.synthetic:
                    continue  # the time series hold real traffic only
                for addr in (f.src, f.dst):
                    octets[addr] += f.fwd + f.rev
                    packets[addr] += f.fwd // 100 + f.rev // 100
            want = sorted(octets, key=lambda a: (-octets[a], a))[:3]
            top = await fq.top_talkers(reader, since_ns=TS[-1], limit=3)  # the minute all of TS fall in
            assert top == [{"addr": a, "octets": octets[a], "packets": packets[a]} for a in want]
            assert await fq.top_talkers(reader, since_ns=TS[0] + 60 * 10**9, limit=3) == []

    with tempfile.TemporaryDirectory() as tmp:
        run(check(Path(tmp)))


@dataclass(frozen=True)
class ProcSpec:
    source: str
    exec_: bool
    exe: str
    ts: int
    snapshot: bool
    relayed: bool


proc_specs = st.builds(
    ProcSpec,
    source=st.sampled_from(("a", "b")),
    exec_=st.booleans(),
    exe=st.sampled_from(("/usr/bin/ssh", "/bin/ls", "/opt/x/ls")),
    ts=st.sampled_from(TS),
    snapshot=st.booleans(),
    relayed=st.booleans(),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(proc_specs, max_size=30), limit=st.integers(1, 6))
def test_exec_history_and_audit_pages_equal_a_scan_of_the_events(specs: list[ProcSpec], limit: int) -> None:
    async def check(tmp: Path) -> None:
        stampers = {s: EnvelopeStamper(s) for s in ("a", "b")}
        records = []
        for i, p in enumerate(specs):
            kind = (
                ev.ProcessEvent.SNAPSHOT
                if p.snapshot
                else ev.ProcessEvent.EXEC
                if p.exec_
                else ev.ProcessEvent.EXIT
            )
            body = ev.ProcessEvent(kind=kind, pid=100 + i, ppid=1, exe=p.exe, argv=[p.exe, "-l"], user="root")
            records.append(
                Record.from_envelope(stampers[p.source].stamp(ev.Envelope(process=body), ts_ns=p.ts))
            )
            # an audit event beside each, so the two tables interleave in store_seq
            audit = ev.AuditEvent(actor=p.source, action="login" if p.exec_ else "logout", success=p.exec_)
            origin = "relay-1" if p.relayed else ""  # relayed: it came through the bus from another box
            envelope = stampers["a"].stamp(ev.Envelope(audit=audit), ts_ns=p.ts)
            records.append(Record.from_envelope(envelope, origin=origin))
        async with store_and_reader(tmp / "events.db") as (store, reader):
            await store.submit(records)
            procs = [(2 * i + 1, p) for i, p in enumerate(specs)]
            for search in ({}, {"source": "b"}, {"exe": "/bin/ls"}, {"comm": "ls"}):

                def wanted(p: ProcSpec, s: dict[str, Any] = search) -> bool:
                    return (
                        not p.snapshot
                        and ("source" not in s or p.source == s["source"])
                        and ("exe" not in s or p.exe == s["exe"])
                        and ("comm" not in s or p.exe.rsplit("/", 1)[-1] == s["comm"])
                    )

                expected = newest_first([(p.ts, seq) for seq, p in procs if wanted(p)])

                async def fetch(before: int | None, s: dict[str, Any] = search) -> list[dict[str, Any]]:
                    return await history.execs(reader, **s, before=before, limit=limit)

                assert await all_pages(fetch, limit) == expected, search
            items = await history.execs(reader, limit=100)
            for item in items:
                p = specs[(item["store_seq"] - 1) // 2]
                assert item["body"]["kind"] == ("EXEC" if p.exec_ else "EXIT")
                assert item["body"]["argv"] == [p.exe, "-l"] and item["source"] == p.source

            for scope in ("local", "remote"):

                async def audit_page(before: int | None, sc: Any = scope) -> list[dict[str, Any]]:
                    return await history.audit(reader, scope=sc, before=before, limit=limit)

                relayed = scope == "remote"
                expected = newest_first([(p.ts, seq + 1) for seq, p in procs if p.relayed == relayed])
                assert await all_pages(audit_page, limit) == expected, scope
            for item in await history.audit(reader, scope="remote", limit=100):
                p = specs[(item["store_seq"] - 2) // 2]
                assert item["origin"] == "relay-1" and item["body"]["actor"] == p.source
                assert item["body"].get("success", False) == p.exec_

    with tempfile.TemporaryDirectory() as tmp:
        run(check(Path(tmp)))


async def test_pages_stay_stable_while_ingest_continues(tmp_path: Path) -> None:
    """New records arriving between pages (newer, older and equal in time to the page's last one) never
    make a page repeat or skip a record that was there when the walk began."""
    stamper = EnvelopeStamper("box")
    flows = [FlowSpec(ADDRS[i % 4], ADDRS[(i + 1) % 4], 443, "1:a", TS[i % 4], i, i) for i in range(60)]
    async with store_and_reader(tmp_path / "events.db") as (store, reader):
        await store.submit([flow_record(stamper, f) for f in flows])
        there = set(range(1, 61))
        seen: list[int] = []
        before = None
        for round_ in range(100):
            page = await fq.flows(reader, ip="10.0.0.1", before=before, limit=4)
            seen += [item["store_seq"] for item in page]
            if len(page) < 4:
                break
            before = page[-1]["store_seq"]
            # meanwhile: records newer, as old as and older than the page's last one
            late = [
                FlowSpec("10.0.0.1", "10.0.0.9", 443, "1:a", ts, round_, 0)
                for ts in (TS[3] + 1, TS[1], TS[0] - 1)
            ]
            await store.submit([flow_record(stamper, f) for f in late])
        assert len(seen) == len(set(seen)), "a record was repeated"
        assert {s for s in there if "10.0.0.1" in (flows[s - 1].src, flows[s - 1].dst)} <= set(seen)


async def test_a_50k_interface_target_is_read_a_bounded_page_at_a_time(tmp_path: Path) -> None:
    stamper = EnvelopeStamper("agent-9")
    interfaces = [
        ev.SnmpInterface(if_index=i, name=f"Gi0/{i}", descr="GigabitEthernet", in_octets=i, out_octets=i)
        for i in range(1, 50_001)
    ]
    sample = ev.SnmpSample(target="core-sw", address="192.0.2.1", reachable=True, interfaces=interfaces)
    async with store_and_reader(tmp_path / "events.db") as (store, reader):
        await store.submit([Record.from_envelope(stamper.stamp(ev.Envelope(snmp=sample)))])
        first = await snmp.interfaces(reader, target="core-sw", limit=100)
        assert [r["if_index"] for r in first] == list(range(1, 101))
        after = (first[-1]["source"], first[-1]["if_index"])
        second = await snmp.interfaces(reader, target="core-sw", after=after, limit=100)
        assert [r["if_index"] for r in second] == list(range(101, 201))
        last = await snmp.interfaces(reader, target="core-sw", after=("agent-9", 49_990), limit=100)
        assert [r["if_index"] for r in last] == list(range(49_991, 50_001))
        assert await snmp.interfaces(reader, target="other") == []
        assert [t["target"] for t in await snmp.targets(reader)] == ["core-sw"]


async def test_snmp_rates_are_the_minute_averages_of_the_polls(tmp_path: Path) -> None:
    stamper = EnvelopeStamper("agent-9")
    now = time.time_ns()
    minute = 60 * 10**9
    base = now - now % minute - 10 * minute  # ten minutes back: bucketed by observation time
    polls = [(base + 1, 1000.0), (base + 2, 3000.0), (base + minute + 5, 500.0), (base + 3 * minute, 8.0)]
    records = []
    for ts, bps in polls:
        iface = ev.SnmpInterface(if_index=7, in_bps=bps, out_bps=bps / 2)
        other = ev.SnmpInterface(if_index=8, in_bps=1e9, out_bps=1e9)
        sample = ev.SnmpSample(target="core-sw", reachable=True, interfaces=[iface, other])
        records.append(Record.from_envelope(stamper.stamp(ev.Envelope(snmp=sample), ts_ns=ts)))
    first = ev.SnmpSample(target="core-sw", reachable=True, interfaces=[ev.SnmpInterface(if_index=7)])
    records.append(Record.from_envelope(stamper.stamp(ev.Envelope(snmp=first), ts_ns=base)))  # no rate
    async with store_and_reader(tmp_path / "events.db") as (store, reader):
        await store.submit(records)
        points = await snmp.rates(reader, target="core-sw", if_index=7, now_ns=now, minutes=30)
        assert points == [
            {"ts_ns": base, "in_bps": 2000.0, "out_bps": 1000.0},
            {"ts_ns": base + minute, "in_bps": 500.0, "out_bps": 250.0},
            {"ts_ns": base + 3 * minute, "in_bps": 8.0, "out_bps": 4.0},
        ]
        assert await snmp.rates(reader, target="core-sw", if_index=7, now_ns=now, minutes=5) == []
        assert await snmp.rates(reader, target="edge-sw", if_index=7, now_ns=now, minutes=30) == []


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(
        st.tuples(st.sampled_from(("a", "b")), st.sampled_from(("heartbeat", "audit")), st.booleans()),
        max_size=40,
    ),
    limit=st.integers(1, 6),
    window=st.integers(2, 8),
)
def test_event_log_pages_equal_a_scan_and_continue_past_their_window(
    specs: list[tuple[str, str, bool]], limit: int, window: int
) -> None:
    """Every event matching the filters, once, newest first, however sparse: a page that ends inside
    its store_seq window hands on the window's bottom as `next_before`."""

    async def check(tmp: Path) -> None:
        stampers = {s: EnvelopeStamper(s) for s in ("a", "b")}
        records = []
        for i, (source, kind, synthetic) in enumerate(specs):
            body = (
                ev.Envelope(heartbeat=ev.Heartbeat(version=str(i)))
                if kind == "heartbeat"
                else ev.Envelope(audit=ev.AuditEvent(actor="ops", action=f"a{i}"))
            )
            records.append(Record.from_envelope(stampers[source].stamp(body), synthetic=synthetic))
        async with store_and_reader(tmp / "events.db") as (store, reader):
            await store.submit(records)
            for filters in ({}, {"kind": "audit"}, {"source": "b", "synthetic": False}, {"synthetic": True}):
                expected = [
                    seq
                    for seq, (source, kind, synthetic) in reversed(list(enumerate(specs, start=1)))
                    if filters.get("kind", kind) == kind
                    and filters.get("source", source) == source
                    and filters.get("synthetic", synthetic) == synthetic
                ]
                got: list[int] = []
                before = None
                for _ in range(200):
                    items, before = await log.page(reader, **filters, before_seq=before, limit=limit)
                    got += [i["store_seq"] for i in items]
                    for item in items:
                        assert item["body"] == json_body(records[item["store_seq"] - 1])
                    if before is None:
                        break
                assert got == expected, filters

    saved = log.SCAN_LIMIT
    log.SCAN_LIMIT = window
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(check(Path(tmp)))
    finally:
        log.SCAN_LIMIT = saved


def json_body(record: Record) -> dict[str, Any]:
    envelope = ev.Envelope.FromString(record.envelope)
    kind = envelope.WhichOneof("body")
    return MessageToDict(getattr(envelope, kind), preserving_proto_field_name=True)
