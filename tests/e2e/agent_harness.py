"""Real `amoskys agent` child processes for the end-to-end tests of agents and their appliance: started
with the blocking-call detector and the CPU-stall guard logging (tests/child_site), their /metrics read
over HTTP, their store and the appliance's read straight from the SQLite files (read-only)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from amoskys.proto import events_pb2

from support import (
    CHILD_SITE,
    ROOT,
    RunningAppliance,
    amoskys,
    blocking_findings,
    http_get,
    stall_findings,
    wait_for,
)

#: An agent that only beats and samples its host, once a second, and forwards at once.
QUIET_AGENT = """\
[web]
listen = "127.0.0.1:0"
[forwarders.bus]
batch_wait_ms = 20
call_timeout_seconds = 2.0
[collectors.heartbeat]
interval_seconds = 1.0
[collectors.host]
interval_seconds = 1.0
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[collectors.snmp]
enabled = false
"""

#: An appliance that runs only its heartbeat (the tests look at what its agents send).
QUIET_APPLIANCE = """\
[collectors.host]
enabled = false
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
"""


@dataclass
class RunningAgent:
    """An `amoskys agent` child process, its data dir (the outbox) and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    info: dict = field(default_factory=dict)  # type: ignore[type-arg]

    @property
    def db(self) -> Path:
        return self.data_dir / "events.db"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.info['web']['port']}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def poll_ready(self) -> bool:
        """Whether the agent answers /readyz (its run.json written); fails when it exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"agent {self.name} exited {self.proc.returncode}:\n{self.log()}")
        try:
            info = json.loads((self.data_dir / "run.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        if info.get("pid") != self.proc.pid:
            return False
        self.info = info
        return http_get(self.web_url + "/readyz")[0] == 200

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(self.poll_ready, timeout=timeout, what=f"agent {self.name} to be ready")

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the agent's /metrics (None: not exposed)."""
        status, body = http_get(self.web_url + "/metrics")
        assert status == 200, f"agent {self.name} /metrics answered {status}"
        return metric_value(body.decode(), name, labels)

    def status(self) -> dict:  # type: ignore[type-arg]
        """`amoskys status --agent --data-dir DIR --json`."""
        out = amoskys("status", "--agent", "--data-dir", str(self.data_dir), "--json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def forwarder(self) -> dict:  # type: ignore[type-arg]
        forwarders = self.status()["appliance"]["forwarders"]
        assert [f["name"] for f in forwarders] == ["bus"], forwarders
        return forwarders[0]  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


def metric_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{want}}} " if want else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def agent_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOSKYS_", "XDG_", "STATE_"))}
    env.update({"PYTHONUNBUFFERED": "1", "AMOSKYS_LOG_LEVEL": "info", "PYTHONPATH": str(CHILD_SITE)})
    return env


class Agents:
    """The agents a test starts; on exit every one still running is killed, and the test fails for
    any blocking call or CPU stall one of them reported on its event loop."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[RunningAgent] = []

    def __enter__(self) -> Agents:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        for agent in self.started:
            if agent.proc.poll() is None:
                agent.proc.kill()
        for agent in self.started:
            agent.proc.wait(timeout=10)
        if kind is not None:
            return
        found = [
            f"{a.log_path.name}: {line}"
            for a in self.started
            for line in blocking_findings(a.log_path) + stall_findings(a.log_path)
        ]
        assert not found, "agents reported on their event loops:\n  " + "\n  ".join(found)

    def start(
        self, name: str, identity: Path, bus: str, *, config: str = QUIET_AGENT, data_dir: Path | None = None
    ) -> RunningAgent:
        """Start `amoskys agent --identity BUNDLE --bus HOST:PORT` with `config` in its own data dir."""
        data = data_dir or self.tmp / f"agent-{name}"
        data.mkdir(mode=0o700, exist_ok=True)
        config_path = self.tmp / f"agent-{name}.toml"
        config_path.write_text(config)
        log_path = self.tmp / f"agent-{name}-{len(self.started)}.log"
        args = ["--identity", str(identity), "--bus", bus, "--config", str(config_path)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "amoskys", "agent", *args, "--data-dir", str(data)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=agent_env(),
                cwd=ROOT,
            )
        agent = RunningAgent(name, proc, data, log_path)
        self.started.append(agent)
        return agent


def run_all(commands: list[list[str]], timeout: float = 60) -> list[str]:
    """Run `amoskys` sub-commands side by side (both cores); their stdout, in order. Fails for any
    that exits non-zero."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSKYS_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "amoskys", *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for cmd in commands
    ]
    outs = []
    for cmd, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"amoskys {' '.join(cmd)} exited {proc.returncode}:\n{out}\n{err}"
        outs.append(out)
    return outs


def enrol_with_bundles(app: RunningAppliance, tmp: Path, names: list[str]) -> dict[str, Path]:
    """Bundles made on the appliance (`amoskys agents enroll NAME --out DIR`)."""
    out = {name: tmp / f"bundle-{name}" for name in names}
    data = str(app.data_dir)
    run_all([["agents", "enroll", n, "--out", str(d), "--data-dir", data] for n, d in out.items()])
    return out


def enrol_with_tokens(app: RunningAppliance, tmp: Path, names: list[str]) -> dict[str, Path]:
    """Identities made on the endpoint: `amoskys agents token NAME` on the appliance prints the line
    `amoskys agent enroll ...` that is run as printed (the keys are made here and never move)."""
    data = str(app.data_dir)
    lines = run_all([["agents", "token", n, "--data-dir", data] for n in names])
    out = {name: tmp / f"identity-{name}" for name in names}
    enrol = []
    for name, line in zip(names, lines, strict=True):
        words = shlex.split(line.strip())
        assert words[:3] == ["amoskys", "agent", "enroll"], line
        enrol.append([*words[1:], "--name", name, "--identity", str(out[name])])
    for name, printed in zip(names, run_all(enrol), strict=True):
        assert f"enrolled as {name!r}" in printed, printed
    return out


@dataclass(frozen=True)
class StoredRow:
    store_seq: int
    source: str
    event_id: str
    boot_id: str
    source_seq: int
    kind: str
    envelope: bytes

    def parse(self) -> events_pb2.Envelope:
        return events_pb2.Envelope.FromString(self.envelope)


def read_events(db: Path, *, source: str | None = None, kind: str | None = None) -> list[StoredRow]:
    """Rows of a store's `events` table in store order, read-only (the owner may be running)."""
    where, params = [], []
    if source is not None:
        where.append("source = ?")
        params.append(source)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    sql = "SELECT store_seq, source, event_id, boot_id, source_seq, kind, envelope FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        rows = conn.execute(sql + " ORDER BY store_seq", params).fetchall()
    return [StoredRow(*row) for row in rows]


def by_boot(rows: list[StoredRow]) -> dict[str, list[int]]:
    """source_seq of each boot_id, in store order."""
    out: dict[str, list[int]] = {}
    for row in rows:
        out.setdefault(row.boot_id, []).append(row.source_seq)
    return out


def contiguous(seqs: list[int]) -> bool:
    """1, 2, 3 ... without a gap or a repeat (in any order)."""
    return sorted(seqs) == list(range(1, len(seqs) + 1))


def pairs(rows: list[StoredRow]) -> Iterator[tuple[str, int]]:
    for row in rows:
        yield row.boot_id, row.source_seq
