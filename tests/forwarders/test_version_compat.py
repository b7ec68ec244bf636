"""Agents one release apart from their appliance: the recorded agent batches of every release kept in
tests/fixtures/compat/ are replayed against this appliance's bus (real grpc.aio server, real mTLS, SQLite
in tmp_path) and each event is stored once; and this release's agent batches decode and validate with
every kept release's .proto files (compiled here with grpcio-tools and loaded in a child interpreter, so
they cannot clash with this release's modules).

A new release records its fixture with `tests/fixtures/compat/record.py --expected`."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from amoskys import __version__
from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.pki.enrolment import enroll_agent
from amoskys.proto import bus_pb2

from .harness import TRUST, upstream
from support import ROOT

COMPAT = ROOT / "tests" / "fixtures" / "compat"
KEPT = sorted((p for p in COMPAT.glob("v*") if p.is_dir()), key=lambda p: p.name)


def _recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat_record", COMPAT / "record.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


record = _recorder()


def test_this_release_keeps_its_recorded_agent_batches() -> None:
    here = COMPAT / f"v{__version__}"
    assert here.is_dir(), (
        f"no fixture of this release: run tests/fixtures/compat/record.py --expected ({here})"
    )
    shipped = {p.relative_to(ROOT / "protos"): p.read_bytes() for p in (ROOT / "protos").rglob("*.proto")}
    kept = {p.relative_to(here / "protos"): p.read_bytes() for p in (here / "protos").rglob("*.proto")}
    assert kept == shipped, (
        f"protos/ changed since {here.name} was recorded: run tests/fixtures/compat/record.py --expected"
    )
    for release in KEPT:
        assert (release / "identity.json").is_file() and (release / "expected.jsonl").is_file(), release
        assert sorted((release / "batches").glob("*.bin")) and (release / "protos").is_dir(), release


@pytest.mark.parametrize("release", KEPT, ids=[p.name for p in KEPT])
async def test_a_kept_release_s_agent_batches_are_stored_once_by_this_appliance(
    release: Path, tmp_path: Path
) -> None:
    meta = json.loads(await asyncio.to_thread((release / "identity.json").read_text))
    text = await asyncio.to_thread((release / "expected.jsonl").read_text)
    expected = [json.loads(line) for line in text.splitlines()]
    batches = await asyncio.to_thread(record.read_batches, release)
    up = await upstream(tmp_path / "appliance")
    try:
        # a TLS certificate from this appliance, and the recorded Ed25519 public key: its signatures
        bundle = await asyncio.to_thread(
            enroll_agent,
            up.creds,
            name=meta["name"],
            role=meta["role"],
            trust_domain=TRUST,
            bus_address=up.address,
            out_dir=tmp_path / "bundle",
        )
        public = bytes.fromhex(meta["public_key"])
        await up.store.state.enroll_identity(meta["name"], meta["role"], public, str(bundle.cert_serial))
        client = BusClient(await PublisherIdentity.load(bundle.dir), up.address)
        try:
            for batch in batches:  # as sent
                ack = await client.call_once(batch)
                assert ack.status == bus_pb2.OK and not ack.rejected, ack
                assert ack.accepted == len(bus_pb2.RawEventList.FromString(batch.events).events)
            for batch in batches:  # and sent again, as after a crash: replays
                ack = await client.call_once(batch)
                assert ack.status == bus_pb2.OK and not ack.accepted and not ack.rejected, ack
        finally:
            await client.close()
        stored = await up.stored(meta["name"])
        assert [e.event_id for e in stored] == [e["event_id"] for e in expected]  # once each, in order
        assert [(e.boot_id, e.source_seq, e.kind) for e in stored] == [
            (e["boot_id"], e["source_seq"], e["kind"]) for e in expected
        ]
        assert {e.origin for e in stored} == {meta["name"]}
        assert up.counter("amoskys_bus_chain_forks_total") == 0
        assert up.counter("amoskys_bus_chain_starts_total") == 1
    finally:
        await up.close()


#: Run in a child interpreter whose first path entry holds one release's compiled protos: decodes
#: this release's batches with them and prints what it found, as JSON.
DECODE = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from google.protobuf.unknown_fields import UnknownFieldSet
from amoskys.v1 import bus_pb2, events_pb2
assert Path(bus_pb2.__file__).is_relative_to(sys.argv[1]), bus_pb2.__file__
out = []
for path in sorted(Path(sys.argv[2]).glob("*.bin")):
    batch = bus_pb2.SignedBatch.FromString(path.read_bytes())
    raw = bus_pb2.RawEventList.FromString(batch.events)
    full = bus_pb2.EventList.FromString(batch.events)
    envs = [events_pb2.Envelope.FromString(b) for b in raw.events]
    out.append({
        "sender": batch.sender, "key_id": batch.key_id, "prev_digest": len(batch.prev_digest),
        "signature": len(batch.signature), "unknown": len(UnknownFieldSet(batch)),
        "events": len(envs), "same_as_event_list": [e.SerializeToString() for e in full.events] == list(raw.events),
        "ids": [e.event_id for e in envs], "kinds": [e.WhichOneof("body") or "" for e in envs],
        "complete": all(e.event_id and e.source and e.boot_id and e.source_seq and e.ts_ns for e in envs),
    })
print(json.dumps(out))
"""


@pytest.mark.parametrize("release", KEPT, ids=[p.name for p in KEPT])
def test_this_release_s_agent_batches_decode_with_a_kept_release_s_protos(
    release: Path, tmp_path: Path
) -> None:
    from grpc_tools import protoc

    gen = tmp_path / "gen"
    gen.mkdir()
    includes = [f"-I{release / 'protos'}", f"-I{Path(protoc.__file__).parent / '_proto'}"]
    protos = sorted(str(p.relative_to(release / "protos")) for p in (release / "protos").rglob("*.proto"))
    assert protoc.main(["protoc", *includes, f"--python_out={gen}", *protos]) == 0
    for package in (gen / "amoskys", gen / "amoskys" / "v1"):  # regular packages: found before ours
        (package / "__init__.py").write_text("")
    recording = asyncio.run(record.record(tmp_path / "work", 60))
    batches = tmp_path / "batches"
    batches.mkdir()
    for i, data in enumerate(recording.batches):
        (batches / f"{i:04d}.bin").write_bytes(data)

    done = subprocess.run(
        [sys.executable, "-I", "-c", DECODE, str(gen), str(batches)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    decoded = json.loads(done.stdout)
    assert len(decoded) == len(recording.batches)
    assert [i for b in decoded for i in b["ids"]] == [e["event_id"] for e in recording.expected]
    assert [k for b in decoded for k in b["kinds"]] == [e["kind"] for e in recording.expected]  # known
    for b in decoded:
        assert b["sender"] == record.NAME and b["key_id"] == recording.identity["key_id"]
        assert b["signature"] == 64 and b["prev_digest"] in (0, 32) and b["unknown"] == 0
        assert b["complete"] and b["same_as_event_list"]
