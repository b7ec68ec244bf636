"""Golden cases: `amoskys flows read` on each generated capture prints exactly the reviewed output.

Regenerate only on purpose, and review the diff:
    .venv/bin/python tests/collectors/flow/make_pcaps.py --expected
"""

from __future__ import annotations

import pytest

from flow_golden import CASES_DIR, run_case

CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())
REGENERATE = (
    "regenerate with: .venv/bin/python tests/collectors/flow/make_pcaps.py --expected (and review the diff)"
)


def test_every_case_has_its_capture_and_expected_output() -> None:
    assert len(CASES) >= 15
    for case in CASES:
        names = {p.name for p in (CASES_DIR / case).iterdir()}
        assert {"expected.jsonl", "expected.txt"} <= names and names & {"input.pcap", "input.pcapng"}, case


@pytest.mark.parametrize("fmt", ["jsonl", "table"])
@pytest.mark.parametrize("case", CASES)
def test_flows_read_output_equals_the_reviewed_golden(case: str, fmt: str) -> None:
    out, err, code = run_case(case, fmt)
    expected = (CASES_DIR / case / ("expected.jsonl" if fmt == "jsonl" else "expected.txt")).read_text()
    assert code == 0 and err == ""
    assert out == expected, f"{case} ({fmt}) differs from its golden; {REGENERATE}"
