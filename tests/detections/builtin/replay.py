"""Replay a built-in detector's testcase: recorded inputs through the detector, as the runner feeds it.

A case (``testcases/<detector>/<case>/``) holds:

- ``input.jsonl``: one input a line, each with ``at_ns`` (the detections' clock when it is fed) and one of
  ``envelope`` (an Envelope in the protobuf JSON mapping: ``json_format.MessageToDict``),
  ``flow_start`` (the fields of a ``FlowStart``: a flow as the capture's flow-start note tells it),
  ``tick`` (the detections' clock tick) or, for ``chain_fork``, ``batch`` (``sender``,
  ``prev_digest`` and ``digest`` in hex: a signed batch as the bus judges it);
- ``config.toml`` (optional): ``[detections.<name>]`` settings over the defaults, and ``[bus]
  silent_after_heartbeats``; relative ``ioc_files`` are taken from the case's folder;
- ``certs.json`` (cert_expiry): ``[host, label, file]`` of each certificate the detector checks;
- ``expected.jsonl``: the findings, one a line, in the order the detector returned them (see ``render``).

The detector is built by ``registry.build`` (as the appliance builds it) and fed as
``BuiltinDetections`` feeds it: an envelope whose body kind it reads goes to ``event``; a FlowRecord
goes to ``flow`` when the detector judges flows and it is the first record of its flow (by source
and community id: a remote capture's flow is judged once, on its first record); a flow start goes
to ``flow``; a tick to ``tick``. A ``chain_fork`` case goes through the bus's
``ChainTracker`` (judge, then advance, as the bus service does) and ``fork_alert`` for every fork.

Volatile fields: file paths in attributes (``list`` of ioc, ``path`` of cert_expiry) are shown
relative to the case's folder; nothing else is dropped.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from google.protobuf import json_format

from amoskys.bus.chain import ChainTracker
from amoskys.config import DetectionsConfig, from_mapping
from amoskys.detections.builtin import registry
from amoskys.detections.builtin.cert_expiry import CertFile
from amoskys.detections.builtin.chain_fork import RULE as CHAIN_FORK
from amoskys.detections.builtin.chain_fork import fork_alert
from amoskys.detections.builtin.finding import Detector, Finding, FlowStart, from_record
from amoskys.proto import events_pb2 as ev

CASES_DIR = Path(__file__).resolve().parent / "testcases"
REGENERATE = ".venv/bin/python tests/detections/builtin/make_testcases.py --expected"
#: The appliance the detectors run on (the source of its own collectors' events).
APPLIANCE = "box"
DETECTORS = (*registry.NAMES, "chain_fork")


def cases() -> list[str]:
    """Every case, as ``<detector>/<case>``."""
    return sorted(f"{p.parent.name}/{p.name}" for p in CASES_DIR.glob("*/*") if (p / "input.jsonl").is_file())


def read_inputs(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "input.jsonl").read_text().splitlines() if line]


def case_config(folder: Path) -> tuple[DetectionsConfig, int]:
    """The case's [detections] settings (ioc_files from its folder) and silent_after_heartbeats."""
    path = folder / "config.toml"
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    config = from_mapping(data, source=str(path))
    detections = config.detections
    if detections.ioc.ioc_files:
        files = tuple(str(folder / f) for f in detections.ioc.ioc_files)
        detections = msgspec.structs.replace(
            detections, ioc=msgspec.structs.replace(detections.ioc, ioc_files=files)
        )
    return detections, config.bus.silent_after_heartbeats


def case_certs(folder: Path) -> list[CertFile]:
    path = folder / "certs.json"
    if not path.exists():
        return []
    return [(host, label, folder / name) for host, label, name in json.loads(path.read_text())]


def build(name: str, folder: Path) -> Detector:
    config, after = case_config(folder)
    certs = case_certs(folder)
    made = registry.build(config, silent_after_heartbeats=after, appliance=APPLIANCE, certs=lambda: certs)
    [detector] = [d for d in made if d.name == name]
    return detector


def feed(detector: Detector, item: dict[str, Any], judged: set[tuple[str, str]]) -> list[Finding]:
    """One input to the detector; `judged` holds the flows whose first record was judged already."""
    at = int(item["at_ns"])
    if "tick" in item:
        return detector.tick(at)
    if "flow_start" in item:
        return detector.flow(FlowStart(**item["flow_start"]))
    envelope = json_format.ParseDict(item["envelope"], ev.Envelope())
    kind = envelope.WhichOneof("body") or ""
    out: list[Finding] = []
    if kind == "flow" and detector.flows:
        f = envelope.flow
        key = (envelope.source, f.community_id)
        if key not in judged:
            judged.add(key)
            out += detector.flow(from_record(envelope))
    if kind in detector.kinds:
        out += detector.event(envelope, at)
    return out


def finding_line(f: Finding, folder: Path) -> dict[str, Any]:
    attributes = dict(f.attributes)
    for key in ("list", "path"):
        if key in attributes and attributes[key].startswith(str(folder)):
            attributes[key] = str(Path(attributes[key]).relative_to(folder))
    return {
        "rule_id": f.rule.id,
        "host": f.host,
        "level": f.rule.level,
        "title": f.rule.title,
        "ts_ns": f.ts_ns,
        "summary": f.summary,
        "attributes": attributes,
        "evidence": f.evidence,
        "key": f.key,
    }


async def chain_forks(inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batches through the bus's chain tracker; a fork raises the bus's alert."""
    chains = ChainTracker(wait_seconds=0.0)
    out: list[dict[str, Any]] = []
    for item in inputs:
        batch = item["batch"]
        sender = batch["sender"]
        prev, digest = bytes.fromhex(batch["prev_digest"]), bytes.fromhex(batch["digest"])
        verdict = await chains.judge(sender, prev, digest)
        expected = chains.successor(sender, prev) or b""
        if verdict != "replay":
            chains.advance(sender, digest, prev)
        if verdict == "fork":
            a = fork_alert(sender, prev, expected)
            level = ev.Alert.Level.Name(a.level).removeprefix("LEVEL_").lower()
            assert level == CHAIN_FORK.level
            out.append(
                {
                    "rule_id": a.rule_id,
                    "host": a.host,
                    "level": level,
                    "title": a.title,
                    "ts_ns": int(item["at_ns"]),
                    "summary": a.summary,
                    "attributes": dict(sorted(a.attributes.items())),
                    "evidence": "",
                    "key": "",
                }
            )
    return out


def replay_detector(name: str, folder: Path) -> list[dict[str, Any]]:
    """Blocking (files read, as in the runner's worker thread)."""
    detector = build(name, folder)
    judged: set[tuple[str, str]] = set()
    return [finding_line(f, folder) for item in read_inputs(folder) for f in feed(detector, item, judged)]


async def replay(case: str) -> list[dict[str, Any]]:
    name = case.split("/", 1)[0]
    folder = CASES_DIR / case
    if name == "chain_fork":
        return await chain_forks(await asyncio.to_thread(read_inputs, folder))
    return await asyncio.to_thread(replay_detector, name, folder)


def render(lines: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


async def run_case(case: str) -> str:
    return render(await replay(case))
