"""Proof that the bus loses nothing it acknowledged: SIGKILL the appliance again and again under load.

The same harness, run against a bus that acks before it commits (a test-only fault), must catch
the loss — otherwise the proof would prove nothing.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, amoskys, free_port, start_appliance, wait_for

pytestmark = pytest.mark.e2e


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text().splitlines() if ln]


def _export_ids(data_dir: Path, source: str) -> list[str]:
    out = amoskys(
        "events", "export", "--data-dir", str(data_dir), "--source", source, "--format", "jsonl"
    ).stdout
    return [json.loads(line)["event_id"] for line in out.splitlines() if line]


def _harness(
    tmp_path: Path,
    *,
    events: int,
    kills: int,
    env: dict[str, str],
    kill_right_after_ack: bool,
    sig: int = signal.SIGKILL,
) -> tuple[list[str], list[str]]:
    """Publish while the appliance is stopped by `sig` again and again; return (acked ids, stored ids)."""
    data = tmp_path / "data"
    bundle = tmp_path / "bundle"
    amoskys("certs", "init", "--data-dir", str(data))
    port = free_port()
    amoskys(
        "agents", "enroll", "loadgen-1", "--role", "loadgen", "--out", str(bundle), "--data-dir", str(data),
        "--bus-address", f"127.0.0.1:{port}",
    )  # fmt: skip
    acked = tmp_path / "acked.txt"
    rng = random.Random(20261127)
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(i: int):  # type: ignore[no-untyped-def]
        app = start_appliance(data, logs / f"appliance-{i}.log", "--bus-listen", f"127.0.0.1:{port}", env=env)
        app.wait_ready()
        return app

    app = start(0)
    loadgen_log = open(logs / "loadgen.log", "wb")
    loadgen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amoskys",
            "loadgen",
            "--identity",
            str(bundle),
            "--bus",
            f"127.0.0.1:{port}",
            "--events",
            str(events),
            "--batch",
            "100",
            "--acked-file",
            str(acked),
        ],
        stdout=loadgen_log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        for i in range(kills):
            # a random moment: after a random number of further acks
            target = len(_lines(acked)) + (
                1 if kill_right_after_ack else rng.randint(1, events // (kills * 2))
            )
            wait_for(
                lambda t=target: len(_lines(acked)) >= t or loadgen.poll() is not None,
                timeout=60,
                interval=0.001,
                what="more acks",
            )
            if loadgen.poll() is not None:
                break
            app.proc.send_signal(sig)
            code = app.proc.wait(timeout=10)
            assert sig == signal.SIGKILL or code == 0, app.log()
            app = start(i + 1)
        assert loadgen.wait(timeout=180) == 0, (logs / "loadgen.log").read_text()
    finally:
        loadgen_log.close()
        if loadgen.poll() is None:
            loadgen.kill()
        app.proc.send_signal(signal.SIGTERM)
        try:
            app.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.proc.kill()
            raise AssertionError(f"appliance did not stop within 10 s of SIGTERM:\n{app.log()}") from None
    return _lines(acked), _export_ids(data, "loadgen-1")


def test_every_acked_event_is_stored_exactly_once_across_sigkills(tmp_path: Path) -> None:
    acked, stored = _harness(tmp_path, events=20_000, kills=10, env={}, kill_right_after_ack=False)
    assert len(acked) == 20_000 == len(set(acked))
    assert len(stored) == len(set(stored)), "an event was stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events were lost"


def test_the_proof_catches_a_bus_that_acks_before_it_commits(tmp_path: Path) -> None:
    acked, stored = _harness(
        tmp_path,
        events=3_000,
        kills=3,
        env={"AMOSKYS_FAULTS": "ack_before_commit_ms=200"},
        kill_right_after_ack=True,
    )
    missing = set(acked) - set(stored)
    assert missing, "the harness failed to detect acked-but-uncommitted events"


def test_graceful_shutdown_mid_publish_loses_no_acked_event(tmp_path: Path) -> None:
    acked, stored = _harness(
        tmp_path, events=5_000, kills=4, env={}, kill_right_after_ack=False, sig=signal.SIGTERM
    )
    assert len(acked) == 5_000
    assert len(stored) == len(set(stored)) and not set(acked) - set(stored)
