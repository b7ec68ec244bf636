"""The control socket over a real Unix socket: status, collector start/stop/restart, refusals, the
CLI's handlers, and what the CLI says when no appliance runs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from control_support import ServiceEnv, service_env

from amoskys.bus.gate import NotRevokedError
from amoskys.cli.status import cmd_collectors, cmd_status, format_status
from amoskys.collectors.clock import FakeClock
from amoskys.control import ControlServer, NotRunningError, request
from amoskys.control_service import Revoker
from amoskys.errors import ControlError
from amoskys.paths import Layout
from amoskys.supervisor import Supervisor

from support import eventually

ME = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"


@dataclass
class Running:
    data_dir: Path
    supervisor: Supervisor
    server: ControlServer
    clock: FakeClock
    env: ServiceEnv

    @property
    def socket(self) -> Path:
        return Layout(self.data_dir).control_socket

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        # the client blocks: run it off the loop that serves the socket
        return await asyncio.to_thread(request, self.socket, message)


@contextlib.asynccontextmanager
async def _running(tmp_path: Path, revoke_live: Revoker | None = None) -> AsyncIterator[Running]:
    async with service_env(tmp_path, revoke_live=revoke_live) as env:
        clock, info = env.clock, env.info
        server = ControlServer(Layout(env.data_dir).control_socket, env.service, lambda: info.snapshot(clock))
        await server.start()
        try:
            yield Running(env.data_dir, env.supervisor, server, clock, env)
        finally:
            async with asyncio.timeout(5):
                await server.close()


@pytest.fixture
async def appliance(tmp_path: Path) -> AsyncIterator[Running]:
    async with _running(tmp_path) as running:
        yield running


async def test_status_stop_start_restart_round_trip_over_a_0600_socket(appliance: Running) -> None:
    assert stat.S_IMODE(os.stat(appliance.socket).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(appliance.socket).st_mode)
    await eventually(
        lambda: appliance.supervisor.status_of("waiter").state == "running", what="waiter to run"
    )

    status = await appliance.ask({"cmd": "status"})
    assert status["ok"] is True
    assert status["appliance"]["name"] == "box-1" and status["appliance"]["pid"] == 4242
    by_name = {c["name"]: c for c in status["collectors"]}
    assert by_name["waiter"]["state"] == "running" and by_name["waiter"]["mode"] == "waiting"
    assert (by_name["needs_raw"]["state"], by_name["needs_raw"]["reason"]) == (
        "disabled",
        "needs CAP_NET_RAW",
    )

    stopped = await appliance.ask({"cmd": "collectors", "action": "stop", "name": "waiter"})
    assert stopped["ok"] and stopped["collector"]["state"] == "stopped"
    assert stopped["collector"]["reason"] == "stopped by operator"
    assert appliance.supervisor.status_of("waiter").state == "stopped"

    started = await appliance.ask({"cmd": "collectors", "action": "start", "name": "waiter"})
    assert started["ok"] and started["collector"]["state"] == "running"

    restarted = await appliance.ask({"cmd": "collectors", "action": "restart", "name": "waiter"})
    assert restarted["ok"] and restarted["collector"]["restarts"] == 1

    again = await appliance.ask({"cmd": "collectors", "action": "start", "name": "waiter"})
    assert again == {"ok": False, "error": "collector 'waiter' is already running", "nothing_to_do": True}

    unknown = await appliance.ask({"cmd": "collectors", "action": "stop", "name": "flow"})
    assert unknown == {
        "ok": False,
        "error": "unknown collector 'flow' (known: needs_raw, waiter)",
        "not_found": True,
    }


async def test_cli_handlers_print_a_table_json_and_new_states(appliance: Running) -> None:
    await eventually(
        lambda: appliance.supervisor.status_of("waiter").state == "running", what="waiter to run"
    )
    out, err = io.StringIO(), io.StringIO()
    assert await asyncio.to_thread(cmd_status, appliance.data_dir, out=out, err=err) == 0
    text = out.getvalue()
    assert "name:" in text and "box-1" in text
    assert any(
        line.split()[:2] == ["waiter", "waiting"] and line.endswith("running") for line in text.splitlines()
    )
    assert any(line.endswith("disabled: needs CAP_NET_RAW") for line in text.splitlines())

    out = io.StringIO()
    assert await asyncio.to_thread(cmd_status, appliance.data_dir, as_json=True, out=out, err=err) == 0
    assert {c["name"] for c in json.loads(out.getvalue())["collectors"]} == {"waiter", "needs_raw"}

    out = io.StringIO()
    assert (
        await asyncio.to_thread(cmd_collectors, appliance.data_dir, "stop", "waiter", out=out, err=err) == 0
    )
    assert out.getvalue() == "waiter: stopped: stopped by operator\n"

    out = io.StringIO()
    code = await asyncio.to_thread(cmd_collectors, appliance.data_dir, "start", "nope", out=out, err=err)
    assert code == 1 and out.getvalue() == ""  # nothing to act on
    assert err.getvalue() == "amoskys: error: unknown collector 'nope' (known: needs_raw, waiter)\n"


async def test_start_and_stop_of_a_disabled_collector_are_refused_with_its_reason(appliance: Running) -> None:
    await eventually(
        lambda: appliance.supervisor.status_of("needs_raw").state == "disabled", what="needs_raw disabled"
    )
    status = await appliance.ask({"cmd": "status"})
    by_name = {c["name"]: c for c in status["collectors"]}
    assert by_name["needs_raw"]["actions"] == [] and by_name["waiter"]["actions"] == ["stop", "restart"]

    started = await appliance.ask({"cmd": "collectors", "action": "start", "name": "needs_raw"})
    assert started == {
        "ok": False,
        "error": "collector 'needs_raw' did not start: disabled: needs CAP_NET_RAW",
    }
    stopped = await appliance.ask({"cmd": "collectors", "action": "stop", "name": "needs_raw"})
    assert stopped == {
        "ok": False,
        "error": "collector 'needs_raw' is already disabled: needs CAP_NET_RAW",
        "nothing_to_do": True,
    }
    assert appliance.supervisor.status_of("needs_raw").state_text == "disabled: needs CAP_NET_RAW"

    for action, line, exit_code in [
        ("start", "collector 'needs_raw' did not start: disabled: needs CAP_NET_RAW", 2),  # refused
        ("stop", "collector 'needs_raw' is already disabled: needs CAP_NET_RAW", 1),  # nothing to act on
    ]:
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(
            cmd_collectors, appliance.data_dir, action, "needs_raw", out=out, err=err
        )
        assert (code, out.getvalue(), err.getvalue()) == (exit_code, "", f"amoskys: error: {line}\n")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"not json\n", "request is not JSON"),
        (b"[1, 2]\n", "request must be a JSON object, got list"),
        (b'{"cmd": "reboot"}\n', "unknown command 'reboot' (expected one of: status, collectors, revoke, "),
        (
            b'{"cmd": "collectors", "action": "kill", "name": "x"}\n',
            "action must be one of start, stop, restart",
        ),
        (b'{"cmd": "collectors", "action": "stop"}\n', "collectors stop: 'name' is required"),
        (b'{"cmd": "revoke"}\n', "revoke: 'name' is required"),
        (b'{"cmd": "revoke", "name": "edge-1"}\n', "no enrolled agent named 'edge-1'"),
        (b'{"cmd": "users_add", "name": "ana", "role": "viewer"}\n', "users_add: 'password' is required"),
        (b'{"cmd": "tokens_issue", "user": "ana", "days": "9"}\n', "'days' must be a whole number"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason_and_the_connection_stays_usable(
    appliance: Running, line: bytes, error: str
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(appliance.socket))
    try:
        writer.write(line)
        reply = json.loads(await reader.readline())
        assert reply["ok"] is False and error in reply["error"]
        writer.write(b'{"cmd": "status"}\n')
        assert json.loads(await reader.readline())["ok"] is True
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_overlong_request_is_refused(appliance: Running) -> None:
    reader, writer = await asyncio.open_unix_connection(str(appliance.socket))
    try:
        writer.write(b"x" * (128 * 1024) + b"\n")
        reply = json.loads(await reader.readline())
        assert reply == {"ok": False, "error": "request longer than 65536 bytes"}
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_live_socket_is_not_taken_over_and_close_removes_it(appliance: Running) -> None:
    second = ControlServer(appliance.socket, appliance.env.service, dict)
    with pytest.raises(ControlError, match="another appliance is running with data dir"):
        await second.start()
    await appliance.server.close()
    assert not appliance.socket.exists()


def _leave_stale_socket(path: Path) -> None:
    """A socket file nobody listens on: what an appliance killed with SIGKILL leaves behind."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


async def test_a_stale_socket_is_replaced_at_start(appliance: Running, tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    _leave_stale_socket(path)
    server = ControlServer(path, appliance.env.service, dict)
    await server.start()
    try:
        reply = await asyncio.to_thread(request, path, {"cmd": "status"})
        assert reply["ok"] is True and reply["appliance"] == {}
    finally:
        await server.close()


def test_status_without_an_appliance_says_so_and_exits_1(tmp_path: Path) -> None:
    err = io.StringIO()
    assert cmd_status(tmp_path, out=io.StringIO(), err=err) == 1
    assert err.getvalue() == (
        f"amoskys: no appliance is running with data dir {tmp_path}: there is no control socket "
        f"{tmp_path / 'control.sock'}\n"
    )


def test_a_dead_appliance_is_reported_with_its_stale_run_json(tmp_path: Path) -> None:
    _leave_stale_socket(tmp_path / "control.sock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run.json").write_text(json.dumps({"pid": dead.pid}))
    err = io.StringIO()
    assert cmd_collectors(tmp_path, "stop", "heartbeat", out=io.StringIO(), err=err) == 1
    message = err.getvalue()
    assert "no appliance is running with data dir" in message and "refuses connections" in message
    assert f"run.json is stale: pid {dead.pid} is not running" in message


def test_client_raises_not_running_and_rejects_long_paths(tmp_path: Path) -> None:
    with pytest.raises(NotRunningError) as info:
        request(tmp_path / "control.sock", {"cmd": "status"})
    assert info.value.socket_path == tmp_path / "control.sock"
    with pytest.raises(ControlError, match="Unix sockets allow at most 107"):
        request(tmp_path / ("x" * 120) / "control.sock", {"cmd": "status"})


def test_format_status_renders_facts_rows_and_last_errors() -> None:
    now = 1_700_000_000_000_000_000
    reply = {
        "appliance": {
            "name": "box-1",
            "started_ns": now - 3725 * 10**9,
            "uptime_seconds": 3725.0,
            "web": {"host": "127.0.0.1", "port": 8080},
        },
        "collectors": [
            {"name": "heartbeat", "mode": "timer", "events": 12, "errors": 0, "restarts": 0, "busy_seconds": 0.0123,
             "state": "running", "reason": "", "last_error": "", "last_error_ns": 0},
            {"name": "flow", "mode": "", "events": 0, "errors": 3, "restarts": 2, "busy_seconds": 0,
             "state": "backoff", "reason": "restarting in 4.0 s after: OSError: gone",
             "last_error": "OSError: gone", "last_error_ns": now - 90 * 10**9},
        ],
    }  # fmt: skip
    assert format_status(reply, now_ns=now) == (
        "name:     box-1\n"
        "started:  2023-11-14 21:11:15 UTC\n"
        "uptime:   1h02m\n"
        "web:      host=127.0.0.1 port=8080\n"
        "\n"
        "COLLECTOR  MODE   EVENTS  ERRORS  RESTARTS  BUSY_S  STATE\n"
        "heartbeat  timer      12       0         0   0.012  running\n"
        "flow       -           0       3         2   0.000  backoff: restarting in 4.0 s after: OSError: gone\n"
        "    last error 1m30s ago: OSError: gone\n"
    )


async def test_revoke_answers_only_after_the_bus_applied_it(tmp_path: Path) -> None:
    applied: list[str] = []

    async def revoke(name: str) -> int:
        if name == "edge-2":
            raise NotRevokedError(name)
        await asyncio.sleep(0)
        applied.append(name)
        return 3

    async with _running(tmp_path, revoke_live=revoke) as running:
        for name in ("edge-1", "edge-2"):
            await running.env.store.state.enroll_identity(name, "agent", bytes(32), "1")
        reply = await running.ask({"cmd": "revoke", "name": "edge-1"})
        assert reply == {"ok": True, "agent": "edge-1", "newly_revoked": True, "calls_ended": 3}
        assert applied == ["edge-1"]
        refused = await running.ask({"cmd": "revoke", "name": "edge-2"})
        assert refused["ok"] is False and "'edge-2' is enrolled and not revoked" in refused["error"]
        unknown = await running.ask({"cmd": "revoke", "name": "edge-9"})
        assert unknown["not_found"] is True


async def test_the_socket_audits_each_action_as_the_connecting_unix_user(appliance: Running) -> None:
    """The actor comes from SO_PEERCRED on the accepted socket, never from the request."""
    added = await appliance.ask(
        {"cmd": "users_add", "name": "ana", "role": "viewer", "password": "a-long-enough-password",
         "actor": "admin"}
    )  # fmt: skip
    assert added == {"ok": True, "user": "ana", "added": True}
    issued = await appliance.ask(
        {"cmd": "tokens_issue", "user": "ana", "days": 7, "label": "x", "role": None}
    )
    assert issued["ok"] and issued["user"] == "ana" and issued["role"] == "viewer"
    revoked = await appliance.ask({"cmd": "tokens_revoke", "id": issued["id"]})
    assert revoked == {"ok": True, "id": issued["id"], "user": "ana", "revoked": 1}
    passwd = await appliance.ask({"cmd": "users_passwd", "name": "ana", "password": "short"})
    assert passwd["ok"] is False and "12 characters" in passwd["error"]
    removed = await appliance.ask({"cmd": "users_remove", "name": "ana"})
    assert removed == {"ok": True, "user": "ana", "sessions_ended": 0}
    again = await appliance.ask({"cmd": "users_remove", "name": "ana"})
    assert again["not_found"] is True
    stopped = await appliance.ask({"cmd": "collectors", "action": "stop", "name": "waiter"})
    assert stopped["ok"]
    rows = await appliance.env.audit_rows()
    assert [(e.actor, e.action, e.success) for e in rows] == [
        (ME, "user_added", True),
        (ME, "token_issued", True),
        (ME, "token_revoked", True),
        (ME, "user_removed", True),
        (ME, "collector_stop", True),
    ]
