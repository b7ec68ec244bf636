"""`amoskys flows read FILE [--format jsonl|table]`: meter a capture file and print its flows.

The same parser and flow table as the collector, with packet time as the only clock. Records are
written as the table emits them (a large file streams), then a summary: JSON Lines end with one
``{"summary": {...}}`` line; the table format ends with a plain-text summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from amoskys.collectors.flow.collector import table_for
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.flow.parse import REASONS
from amoskys.collectors.flow.pcap import CaptureFileError, CaptureReader, open_capture, open_stream
from amoskys.collectors.flow.records import (
    END_REASONS,
    FlowRecordData,
    tcp_flags_text,
    to_json,
    ts_text,
)
from amoskys.collectors.flow.table import FlowTable

#: `amoskys flows ...`: found by the collector registry (the amoskys/cli/ package names no collector)
COMMAND = "flows"
HELP = "flow metering tools"

FORMATS = ("jsonl", "table")
BATCH_PACKETS = 65_536

_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}
_PORTED = frozenset((6, 17, 132))
_TABLE_HEADER = (
    f"{'FIRST (UTC)':<26} {'SECONDS':>9} {'PROTO':<11} {'SOURCE':<41} {'DESTINATION':<41} "
    f"{'VLAN':<9} {'PKTS>':>7} {'BYTES>':>10} {'PKTS<':>7} {'BYTES<':>10} {'FLAGS>/<':<17} "
    f"{'END':<17} COMMUNITY ID"
)


def cmd_flows_read(
    path: Path | str,
    fmt: str,
    out: IO[str],
    err: IO[str],
    config: FlowConfig | None = None,
) -> int:
    """Meter the pcap/pcapng file at ``path`` (``-``: stdin) and write its flow records to ``out``.

    Returns 0; 1 when the file turned out corrupt part-way (what came before is still printed, the
    problem goes to ``err``). A file that is not a capture at all raises CaptureFileError.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        return _read(path, fmt, out, err, config)
    except BrokenPipeError:  # `amoskys flows read big.pcap | head`: the reader left, stop quietly
        if out is sys.stdout:  # Python would complain again flushing stdout at exit (its docs' remedy)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


def _read(path: Path | str, fmt: str, out: IO[str], err: IO[str], config: FlowConfig | None) -> int:
    table = table_for(config or FlowConfig())
    reader = open_stream(sys.stdin.buffer, "<stdin>") if str(path) == "-" else open_capture(path)
    write = _write_jsonl if fmt == "jsonl" else _write_row
    if fmt == "table":
        out.write(_TABLE_HEADER + "\n")
    records = 0
    problem: CaptureFileError | None = None
    with reader:
        try:
            while reader.feed(table, BATCH_PACKETS):
                records += _write_all(table, out, write)
        except CaptureFileError as error:
            problem = error
        table.flush()
        records += _write_all(table, out, write)
    summary = _summary(reader, table, records, problem)
    if fmt == "jsonl":
        out.write(json.dumps({"summary": summary}) + "\n")
    else:
        out.write("\n" + _summary_text(summary) + "\n")
    if reader.truncated:
        err.write(f"amoskys: warning: {reader.name}: the file ends inside a packet record (cut short?)\n")
    if problem is not None:
        err.write(f"amoskys: error: {problem} — stopped there; the flows before it are above\n")
        return 1
    return 0


def _write_all(table: FlowTable, out: IO[str], write: Any) -> int:
    records, _losses = table.drain()  # evictions are in the summary (flows_evicted)
    for record in records:
        write(record, out)
    return len(records)


def _write_jsonl(record: FlowRecordData, out: IO[str]) -> None:
    out.write(json.dumps(to_json(record)) + "\n")


def _endpoint(addr: str, port: int, proto: int) -> str:
    if proto not in _PORTED:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _write_row(r: FlowRecordData, out: IO[str]) -> None:
    proto = _PROTO_NAMES.get(r.protocol, str(r.protocol))
    if r.protocol in (1, 58):
        proto += f" {r.src_port}/{r.dst_port}"
    vlan = f"{r.vlan}.{r.inner_vlan}" if r.inner_vlan else str(r.vlan) if r.vlan else "-"
    flags = f"{tcp_flags_text(r.fwd_flags)}/{tcp_flags_text(r.rev_flags)}" if r.protocol == 6 else "-"
    end = END_REASONS[r.end_reason] + ("" if r.final else "*")
    out.write(
        f"{ts_text(r.first_ts_ns)[:26]:<26} {(r.last_ts_ns - r.first_ts_ns) / 1e9:>9.3f} {proto:<11} "
        f"{_endpoint(r.src_addr, r.src_port, r.protocol):<41} "
        f"{_endpoint(r.dst_addr, r.dst_port, r.protocol):<41} {vlan:<9} "
        f"{r.fwd_packets:>7} {r.fwd_octets:>10} {r.rev_packets:>7} {r.rev_octets:>10} {flags:<17} "
        f"{end:<17} {r.community_id}\n"
    )


def _summary(
    reader: CaptureReader, table: FlowTable, records: int, problem: CaptureFileError | None
) -> dict[str, Any]:
    skipped = dict(zip(REASONS, table.skipped, strict=True))
    summary: dict[str, Any] = {
        "file": reader.name,
        "format": reader.format,
        "packets": reader.packets,
        "parsed": reader.packets - sum(table.skipped),
        "skipped": skipped,
        "flows": table.flows_created,
        "records": records,
        "flows_evicted": table.evicted,
        "fragments_unmatched": table.fragments_unmatched,
        "truncated": reader.truncated,
    }
    if problem is not None:
        summary["error"] = str(problem)
    return summary


def _summary_text(s: dict[str, Any]) -> str:
    skipped = ", ".join(f"{name} {count}" for name, count in s["skipped"].items() if count) or "none"
    lines = [
        f"{s['file']} ({s['format']}): {s['packets']} packets, {s['parsed']} in flows, skipped: {skipped}",
        f"{s['flows']} flows, {s['records']} records (* = interim), {s['flows_evicted']} flows ended "
        f"early by a full table, {s['fragments_unmatched']} fragments without their first",
    ]
    if s["truncated"]:
        lines.append("the file ends inside a packet record")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`amoskys flows read FILE [--format F] [--config FILE]`."""
    actions = parser.add_subparsers(dest="flows_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "read", help="meter a pcap/pcapng file and print one record per flow, then a summary"
    )
    p.add_argument("file", metavar="FILE", help="pcap or pcapng file; - reads standard input")
    p.add_argument("--format", choices=FORMATS, default="jsonl", help="output format (jsonl)")
    p.add_argument("--config", metavar="FILE", help="TOML config whose [collectors.flow] timeouts apply")


def run(args: argparse.Namespace) -> int:
    from amoskys import config as cfg

    config = cfg.load(args.config).collectors.section(FlowConfig)
    return cmd_flows_read(args.file, args.format, sys.stdout, sys.stderr, config=config)
