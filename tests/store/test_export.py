"""JSON Lines export: documented fields, filters, and reading while the writer runs."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from amoskys.errors import StoreError
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.store.export import export_events

from .helpers import flow_records, open_store, running

FIELDS = [
    "store_seq",
    "event_id",
    "source",
    "origin",
    "synthetic",
    "boot_id",
    "source_seq",
    "kind",
    "ts_ns",
    "received_ns",
    "body",
]


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


async def test_export_writes_one_json_object_per_event_with_the_documented_fields(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    stamper = EnvelopeStamper("edge-1")
    proc = stamper.stamp(
        ev.Envelope(
            process=ev.ProcessEvent(kind=ev.ProcessEvent.EXEC, pid=7, exe="/bin/sh", exe_sha256=b"\x01\x02")
        ),
        ts_ns=1_000,
    )
    flows = flow_records(stamper, 2, ts_ns=2_000)
    async with running(await open_store(path, clock=lambda: 5_000)) as store:
        await store.submit([Record.from_envelope(proc), *flows])
    out = io.StringIO()
    assert await export_events(path, out) == 3
    first, second, _ = _lines(out)
    assert list(first) == FIELDS
    assert first["store_seq"] == 1 and first["kind"] == "process" and first["source"] == "edge-1"
    assert (first["event_id"], first["boot_id"], first["source_seq"]) == (proc.event_id, proc.boot_id, 1)
    assert (first["ts_ns"], first["received_ns"]) == (1_000, 5_000)
    body = first["body"]
    assert isinstance(body, dict)
    assert body["exe"] == "/bin/sh" and body["kind"] == "EXEC" and body["pid"] == 7
    assert base64.b64decode(str(body["exe_sha256"])) == b"\x01\x02"  # bytes as base64
    assert second["kind"] == "flow" and isinstance(second["body"], dict) and second["body"]["dst_port"] == 443
    assert second["body"]["first_ts_ns"] == str(flows[0].parsed.flow.first_ts_ns)  # type: ignore[union-attr]


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
        assert await export_events(path, out, **filters) == expected, filters  # type: ignore[arg-type]
        assert len(_lines(out)) == expected


async def test_export_reads_while_the_writer_runs_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    stamper = EnvelopeStamper("a")
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(stamper, 2500))
        out = io.StringIO()
        pending = store.submit(flow_records(stamper, 100, start=2500))
        n = await export_events(path, out)
        await pending
        assert n in (2500, 2600)
        seqs = [line["store_seq"] for line in _lines(out)]
        assert seqs == list(range(1, n + 1))  # pages of 1000 stitched without gaps or repeats
        assert await store.submit(flow_records(stamper, 1, start=9999))  # the writer was never blocked


async def test_export_of_a_missing_file_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such file"):
        await export_events(tmp_path / "events.db", io.StringIO())
    assert not (tmp_path / "events.db").exists()
