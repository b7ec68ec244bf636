"""Recorded testcases: ARP and DHCP frames of a capture file, through the collector's passive path, parse and
publish exactly the reviewed observations and device events.

Regenerate only on purpose, and review the diff:
    .venv/bin/python tests/collectors/discovery/make_discovery_testcases.py --expected
"""

from __future__ import annotations

import json

import pytest

from discovery_replay import CASES_DIR, REGENERATE, cases, run_case

CASES = cases()


def test_every_case_has_its_capture_and_expected_output() -> None:
    assert {"arp_passive", "dhcp_lease", "gone_and_back", "malformed_frames"} <= set(CASES)
    for case in CASES:
        names = {p.name for p in (CASES_DIR / case).iterdir()}
        assert {"input.pcap", "expected.jsonl"} <= names, case


@pytest.mark.parametrize("case", CASES)
async def test_replayed_case_publishes_the_reviewed_events(case: str) -> None:
    out = await run_case(case)
    expected = (CASES_DIR / case / "expected.jsonl").read_text(encoding="utf-8")
    assert out == expected, (
        f"{case} differs from its expected.jsonl; regenerate with: {REGENERATE} (and review the diff)"
    )


async def test_damaged_frames_are_skipped_without_events_and_the_next_good_frame_counts() -> None:
    lines = [json.loads(line) for line in (await run_case("malformed_frames")).splitlines()]
    summary = lines[-1]["summary"]
    assert summary["frames"]["ignored"] >= 10
    skipped = [line for line in lines[:-1] if "ignored" in line]
    assert len(skipped) == summary["frames"]["ignored"] and all(not line["events"] for line in skipped)
    assert lines[-2]["arp"] and [e["device"]["change"] for e in lines[-2]["events"]] == ["NEW"]
