"""Community ID v1: every spec vector, and the IDs of real flows equal the spec function's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amoskys.community_id import community_id, community_id_of

from flow_golden import CASES_DIR

VECTORS_FILE = Path(__file__).resolve().parent / "community_id_v1_vectors.json"
VECTORS = json.loads(VECTORS_FILE.read_text())["vectors"]


@pytest.mark.parametrize(
    "v", VECTORS, ids=lambda v: f"{v['proto']}-{v['saddr']}-{v['sport']}-seed{v['seed']}"
)
def test_every_spec_vector(v: dict) -> None:  # type: ignore[type-arg]
    got = community_id_of(v["saddr"], v["daddr"], v["proto"], v["sport"], v["dport"], v["seed"])
    assert got == v["community_id"]


def test_both_directions_of_a_flow_hash_alike() -> None:
    a, b = bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2))
    assert community_id(a, b, 6, 40000, 80) == community_id(b, a, 6, 80, 40000)
    assert community_id(a, b, 1, 8, 0) == community_id(b, a, 1, 0, 0)  # echo request, reply
    assert community_id(a, b, 1, 3, 1) != community_id(b, a, 1, 3, 1)  # unreachable: one-way


def test_ids_of_real_flows_equal_the_spec_function() -> None:
    """Every record of every golden case: the ID the table computed from packets equals the one the
    spec function gives for the record's endpoints (written independently from the table)."""
    seen = 0
    for expected in sorted(CASES_DIR.glob("*/expected.jsonl")):
        for line in expected.read_text().splitlines():
            rec = json.loads(line)
            if "summary" in rec:
                continue
            spec = community_id_of(
                rec["src_addr"], rec["dst_addr"], rec["protocol"], rec["src_port"], rec["dst_port"]
            )
            assert rec["community_id"] == spec, f"{expected.parent.name}: {rec}"
            seen += 1
    assert seen > 40
