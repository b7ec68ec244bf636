"""Recorded testcases: every built-in detector fed recorded inputs (the collectors' own recorded output
where they have one) reports exactly the reviewed findings, and nothing where it must not.

Regenerate only on purpose, and review the diff:
    .venv/bin/python tests/detections/builtin/make_testcases.py --expected
"""

from __future__ import annotations

import asyncio
import json

import pytest

from .replay import CASES_DIR, DETECTORS, REGENERATE, cases, read_inputs, run_case

CASES = cases()


def _expected(case: str) -> list[dict[str, object]]:
    text = (CASES_DIR / case / "expected.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


#: No certificate is ever committed (tests/packaging/test_certs.py): cert_expiry's cases make theirs at
#: test time (tests/detections/builtin/test_detectors.py).
NOT_RECORDED = frozenset({"cert_expiry"})


def test_every_detector_has_a_case_that_reports_and_one_that_does_not() -> None:
    for name in (d for d in DETECTORS if d not in NOT_RECORDED):
        mine = [c for c in CASES if c.startswith(name + "/")]
        assert mine, f"no testcase of {name}"
        found = [len(_expected(c)) for c in mine]
        assert any(found) and not all(found), (
            f"{name}: findings per case {dict(zip(mine, found, strict=True))}"
        )
    for case in CASES:
        assert {"input.jsonl", "expected.jsonl"} <= {p.name for p in (CASES_DIR / case).iterdir()}, case
        assert read_inputs(CASES_DIR / case), f"{case}: no input"


def test_every_finding_is_of_its_detectors_rules_and_names_stored_evidence_it_was_fed() -> None:
    """A finding's evidence is the id of an envelope of its case's input (or none: flow starts, ticks)."""
    for case in CASES:
        name = case.split("/", 1)[0]
        ids = {i["envelope"]["event_id"] for i in read_inputs(CASES_DIR / case) if "envelope" in i}
        for f in _expected(case):
            assert str(f["rule_id"]).startswith("amoskys."), case
            assert name == "snmp_health" or f["rule_id"] == f"amoskys.{name}", case
            assert f["evidence"] == "" or f["evidence"] in ids, case


@pytest.mark.parametrize("case", CASES)
async def test_replayed_case_reports_the_reviewed_findings(case: str) -> None:
    out = await run_case(case)
    expected = await asyncio.to_thread((CASES_DIR / case / "expected.jsonl").read_text)
    assert out == expected, (
        f"{case} differs from its expected.jsonl; regenerate with: {REGENERATE} (and review the diff)"
    )
