"""Run a golden test case through `amoskys flows read` (the handler, in-process) and return its output."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

from amoskys.collectors.flow.cli import cmd_flows_read
from amoskys.config import from_mapping

CASES_DIR = Path(__file__).resolve().parent / "testcases"


def case_input(name: str) -> Path:
    folder = CASES_DIR / name
    return next(p for p in (folder / "input.pcap", folder / "input.pcapng") if p.exists())


def case_config(name: str):  # type: ignore[no-untyped-def]
    """The case's [collectors.flow] settings (its config.toml over the defaults)."""
    path = CASES_DIR / name / "config.toml"
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    return from_mapping(data, source=str(path)).collectors.flow


def run_case(name: str, fmt: str) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of `amoskys flows read <case input> --format <fmt>`; the input's
    absolute path is shown as its file name, so the output does not depend on the checkout."""
    path = case_input(name)
    out, err = io.StringIO(), io.StringIO()
    code = cmd_flows_read(path, fmt, out, err, config=case_config(name))
    return out.getvalue().replace(str(path), path.name), err.getvalue().replace(str(path), path.name), code
