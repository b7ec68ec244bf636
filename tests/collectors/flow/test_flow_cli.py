"""`amoskys flows read` (its handler): stdin, cut and corrupt files, and files that are no capture."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from amoskys.collectors.flow.cli import cmd_flows_read
from amoskys.collectors.flow.pcap import CaptureFileError

from flow_golden import case_input
from support import ROOT


def run(path: Path | str, fmt: str = "jsonl") -> tuple[list[dict], str, int]:  # type: ignore[type-arg]
    out, err = io.StringIO(), io.StringIO()
    code = cmd_flows_read(path, fmt, out, err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue(), code


def test_the_summary_closes_the_output() -> None:
    lines, err, code = run(case_input("truncated_and_garbage"))
    assert code == 0 and err == ""
    assert lines[-1]["summary"]["packets"] == 11 and lines[-1]["summary"]["parsed"] == 1
    assert lines[-1]["summary"]["skipped"]["not_ip"] == 3 and not lines[-1]["summary"]["truncated"]


def test_a_cut_file_is_metered_up_to_the_cut_with_a_warning(tmp_path: Path) -> None:
    data = case_input("tcp_fin").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-20])
    lines, err, code = run(cut)
    assert code == 0 and "the file ends inside a packet record" in err
    assert lines[-1]["summary"]["truncated"] and lines[-1]["summary"]["packets"] == 11


def test_a_file_corrupt_part_way_prints_what_came_before_and_exits_1(tmp_path: Path) -> None:
    data = case_input("tcp_fin").read_bytes()
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(data + struct.pack("<IIII", 1, 0, 99_000_000, 99_000_000) + bytes(64))
    lines, err, code = run(bad)
    assert code == 1 and f"{bad}: packet record claims 99000000 captured bytes" in err
    assert len(lines) == 3 and lines[-1]["summary"]["error"].startswith(str(bad))


def test_a_file_that_is_no_capture_raises_for_the_command_to_report(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"not": "a capture"}\n')
    with pytest.raises(CaptureFileError, match="not a pcap or pcapng file"):
        run(path)
    with pytest.raises(ValueError, match="--format must be one of jsonl, table"):
        run(case_input("udp"), "csv")


def test_stdin_is_read_when_the_file_is_a_dash() -> None:
    code = "import sys; from amoskys.collectors.flow.cli import cmd_flows_read as r; sys.exit(r('-', 'jsonl', sys.stdout, sys.stderr))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=case_input("udp").read_bytes(),
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert lines[-1]["summary"]["file"] == "<stdin>" and lines[-1]["summary"]["flows"] == 4


def test_a_reader_that_leaves_early_stops_it_quietly(tmp_path: Path) -> None:
    """`amoskys flows read big.pcap | head -1`: no traceback, exit 141 (SIGPIPE's)."""
    from flow_traffic import write

    path = tmp_path / "t.pcap"
    write(path, 20_000, seed=2, concurrent=500)
    code = f"import sys; from amoskys.collectors.flow.cli import cmd_flows_read as r; sys.exit(r({str(path)!r}, 'jsonl', sys.stdout, sys.stderr))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141 and json.loads(first)["community_id"].startswith("1:")
    assert proc.stderr.read() == b""
    proc.stderr.close()
