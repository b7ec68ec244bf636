"""The blocking-call detector itself (tests/blocking.py): a finding that product code swallows is
still recorded for the test's teardown, and an `amoskys run`-style child reports its findings on
stderr instead of raising."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import blocking
import pytest
from blockbuster import BlockingError

from amoskys.collectors.discovery import neighbour

import support


async def test_a_swallowed_blocking_call_is_recorded_for_teardown() -> None:
    try:
        neighbour.read()  # product code reading a file on the running loop
    except BlockingError:
        pass  # what the supervisor's `except Exception` would do
    found = list(blocking.findings)
    blocking.findings.clear()  # else this test's teardown fails (that is the point of the list)
    assert len(found) == 1
    assert found[0].startswith("Blocking call to io.TextIOWrapper.read from pathlib.py:")
    assert "(under amoskys/collectors/discovery/neighbour.py:" in found[0]


async def test_a_blocking_call_in_a_worker_thread_is_not_a_finding() -> None:
    await asyncio.to_thread(neighbour.read)
    assert blocking.findings == []


def test_a_child_logs_its_findings_on_stderr_and_goes_on() -> None:
    code = (
        "import asyncio\n"
        "from amoskys.collectors.discovery import neighbour\n"
        "async def main():\n"
        "    neighbour.read()\n"
        "    print('went on')\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(support.CHILD_SITE)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=support.ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "went on\n"
    lines = [line for line in result.stderr.splitlines() if line.startswith("Blocking call to ")]
    assert len(lines) == 1 and "amoskys/collectors/discovery/neighbour.py" in lines[0], result.stderr


@pytest.mark.parametrize("entry", blocking.ALLOWED, ids=lambda e: f"{e.file}:{' '.join(sorted(e.functions))}")
def test_every_allowed_entry_gives_a_reason(entry: blocking.Allowed) -> None:
    assert len(entry.reason) > 20 and entry.functions
