from __future__ import annotations

import subprocess
import sys

import pytest

from amoskys.events import KINDS, kind_of
from amoskys.proto import bus_pb2, events_pb2

from golden_envelopes import GOLDEN_DIR, all_golden, envelopes
from support import ROOT


def test_generated_code_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_body_kind_has_a_golden_envelope() -> None:
    assert set(envelopes()) == set(KINDS)
    for kind, env in envelopes().items():
        assert kind_of(env) == kind


@pytest.mark.parametrize("name", sorted(all_golden()))
def test_encoding_matches_golden_bytes(name: str) -> None:
    path = GOLDEN_DIR / f"{name}.bin"
    assert path.exists(), f"missing fixture {path}: run `.venv/bin/python tests/golden_envelopes.py --write`"
    assert all_golden()[name] == path.read_bytes(), f"{name}: encoding changed; field numbers are forever"


@pytest.mark.parametrize("kind", sorted(envelopes()))
def test_golden_bytes_decode_to_the_same_envelope(kind: str) -> None:
    parsed = events_pb2.Envelope.FromString((GOLDEN_DIR / f"envelope_{kind}.bin").read_bytes())
    assert parsed == envelopes()[kind]


def test_raw_event_list_reads_event_list_bytes_one_event_at_a_time() -> None:
    good = envelopes()
    data = bus_pb2.EventList(events=list(good.values())).SerializeToString()
    raw = bus_pb2.RawEventList.FromString(data)
    assert [events_pb2.Envelope.FromString(b) for b in raw.events] == list(good.values())
