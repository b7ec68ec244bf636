"""Recorded testcases: proc connector datagrams (and the /proc files of each exec) replayed through the
collector's reader and enricher publish exactly the reviewed events.

Regenerate only on purpose, and review the diff:
    .venv/bin/python tests/collectors/process/make_process_testcases.py --expected
"""

from __future__ import annotations

import pytest

from process_replay import CASES_DIR, REGENERATE, cases, run_case

CASES = cases()


def test_every_case_has_its_recording_and_expected_output() -> None:
    assert {"fork_exec_exit", "kernel_capture", "malformed", "sequence_gap", "short_lived"} <= set(CASES)
    for case in CASES:
        names = {p.name for p in (CASES_DIR / case).iterdir()}
        assert {"input.pcap", "expected.jsonl"} <= names, case


@pytest.mark.parametrize("case", CASES)
async def test_replayed_case_publishes_the_reviewed_events(case: str) -> None:
    out = await run_case(case)
    expected = (CASES_DIR / case / "expected.jsonl").read_text()
    assert out == expected, (
        f"{case} differs from its expected.jsonl; regenerate with: {REGENERATE} (and review the diff)"
    )


async def test_malformed_datagrams_are_counted_and_the_rest_still_published() -> None:
    lines = (await run_case("malformed")).splitlines()
    assert '"malformed_datagrams": ["malformed proc connector datagram: ' in lines[-1]
    assert lines[-1].count("malformed proc connector datagram") == 3
    assert sum('"kind": "EXEC"' in line for line in lines) == 2
