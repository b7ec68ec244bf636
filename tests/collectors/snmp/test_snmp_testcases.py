"""Recorded testcases: agent recordings (.snmprec, one per poll) polled through the collector's fetch,
walk, rows and rates publish exactly the reviewed samples.

Regenerate only on purpose, and review the diff:
    .venv/bin/python tests/collectors/snmp/make_snmp_testcases.py --expected
"""

from __future__ import annotations

import json

import pytest
from pysnmp.proto import rfc1905

from amoskys.collectors.snmp.client import python_value

from snmp_replay import CASES_DIR, REGENERATE, RecordedAgent, cases, polls, read_snmprec, run_case

CASES = cases()


def test_every_case_has_its_recordings_and_expected_output() -> None:
    assert {"recorded_linux", "recorded_winxp", "malformed_agent"} <= set(CASES)
    for case in CASES:
        assert polls(case) and (CASES_DIR / case / "expected.jsonl").is_file(), case


@pytest.mark.parametrize("case", CASES)
async def test_replayed_case_publishes_the_reviewed_samples(case: str) -> None:
    out = await run_case(case)
    expected = (CASES_DIR / case / "expected.jsonl").read_text()
    assert out == expected, (
        f"{case} differs from its expected.jsonl; regenerate with: {REGENERATE} (and review the diff)"
    )


async def test_a_poll_without_sysuptime_is_an_unreachable_sample_and_a_counted_error() -> None:
    lines = [json.loads(line) for line in (await run_case("malformed_agent")).splitlines()]
    failed = lines[1]["snmp"]
    assert "reachable" not in failed and failed["error"].endswith("the agent returned no sysUpTime.0")
    assert lines[-1]["summary"]["errors"] == [failed["error"]]
    assert lines[2]["snmp"]["reachable"] and lines[2]["snmp"]["rate_interval_seconds"] == 120.0


async def test_the_recorded_agent_walks_like_an_agent_past_the_end_of_its_mib() -> None:
    agent = RecordedAgent()
    agent.load(read_snmprec(polls("recorded_linux")[0]))
    last = agent.oids[-1]
    rows = await agent.bulk(None, [(1, 3, 6, 1, 2, 1, 1, 3)], [last], 5)  # type: ignore[arg-type]
    assert rows[0] == ((1, 3, 6, 1, 2, 1, 1, 3, 0), 233425120)
    # one row of endOfMibView (named as asked), then the agent stops; converted as the client converts it
    assert rows[1:] == [(last, python_value(rfc1905.endOfMibView))]
