"""The control socket of a running appliance (DESIGN §5b): server side and a small blocking client.

A Unix stream socket in the data dir, mode 0600, speaking newline-delimited JSON: one request object
per line, one reply object per line. Requests:

- ``{"cmd": "status"}`` → ``{"ok": true, "appliance": {...}, "collectors": [{...}, ...]}``
- ``{"cmd": "collectors", "action": "start"|"stop"|"restart", "name": NAME}``
  → ``{"ok": true, "collector": {...}}``
- ``{"cmd": "revoke", "name": NAME}`` (after the revocation is recorded in the store): the bus re-reads
  the identity, refuses it from the next call on and ends its calls in progress before answering
  ``{"ok": true, "agent": NAME, "calls_ended": N}``

Any refusal is ``{"ok": false, "error": "<message for the operator>"}``, with ``"not_found": true``
when the thing named does not exist, ``"nothing_to_do": true`` when it is already in the state asked
for (both: nothing to act on, the CLI exits 1). A collector action its state does not allow
(stop on a stopped or disabled one, start on a running one, ...) or a start that ends with the
collector disabled again ("did not start: disabled: needs CAP_NET_RAW") is such a refusal (see
amoskys.supervisor): the CLI exits 2 with that line.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from amoskys.errors import BusError, CollectorError, ControlError, StoreError
from amoskys.supervisor import Supervisor, UnknownCollectorError

log = structlog.get_logger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
#: sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
ACTIONS = ("start", "stop", "restart")

#: Applies a recorded revocation in the running bus; returns how many calls in progress it ended.
Revoker = Callable[[str], Awaitable[int]]


class NotRunningError(ControlError):
    """No appliance answers on the control socket of a data dir (none runs, or it died)."""

    def __init__(self, socket_path: Path, detail: str) -> None:
        self.socket_path = socket_path
        self.detail = detail
        super().__init__(f"no appliance is running with data dir {socket_path.parent}: {detail}")


def check_socket_path(path: Path) -> None:
    """Raise ControlError when `path` is too long to be a Unix socket address."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ControlError(
            f"control socket path {path} is {size} bytes long; Unix sockets allow at most "
            f"{MAX_SOCKET_PATH_BYTES}: choose a shorter data dir"
        )


# ---------------------------------------------------------------------- server
class ControlServer:
    """Serves the control socket inside the appliance's loop: ``await start()`` … ``await close()``."""

    def __init__(
        self,
        path: Path,
        supervisor: Supervisor,
        info: Callable[[], Mapping[str, Any]],
        *,
        revoke: Revoker | None = None,
    ) -> None:
        self.path = path
        self._supervisor = supervisor
        self._info = info
        self._revoke = revoke
        self._server: asyncio.Server | None = None
        self._closing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind the socket (0600), replacing one left behind by an appliance that died; serving
        starts at once. Raises ControlError when another appliance answers on it."""
        check_socket_path(self.path)
        if self.path.exists() or self.path.is_symlink():
            if await _answers(self.path):
                raise ControlError(
                    f"another appliance is running with data dir {self.path.parent}: {self.path} answers"
                )
            self.path.unlink()
            log.info("control_socket_stale_removed", path=str(self.path))
        self._closing = False
        self._server = await asyncio.start_unix_server(
            self._accepted, path=str(self.path), limit=MAX_REQUEST_BYTES
        )
        os.chmod(self.path, 0o600)  # the data dir is 0700, so nobody else could reach it meanwhile
        log.info("control_socket_listening", path=str(self.path))

    async def close(self) -> None:
        """Stop serving, end open connections (waiting for their handlers) and remove the socket file."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing = True
        server.close()
        await server.wait_closed()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self.path.unlink(missing_ok=True)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # called synchronously as each connection is made, so close() knows every one of them
        if self._closing:
            writer.close()
            return
        self._writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer), name="control-connection")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the stream limit
                    await _send(writer, _refuse(f"request longer than {MAX_REQUEST_BYTES} bytes"))
                    return
                if not line:
                    return
                await _send(writer, await self.answer(line))
        except ConnectionError:
            return  # the client went away: nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()

    async def answer(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line."""
        try:
            request = json.loads(line)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            return _refuse(f"request is not JSON: {err}")
        if not isinstance(request, dict):
            return _refuse(f"request must be a JSON object, got {type(request).__name__}")
        cmd = request.get("cmd")
        if cmd == "status":
            return {
                "ok": True,
                "appliance": dict(self._info()),
                "collectors": [s.to_dict() for s in self._supervisor.status()],
            }
        if cmd == "collectors":
            return await self._collectors(request.get("action"), request.get("name"))
        if cmd == "revoke":
            return await self._revoke_agent(request.get("name"))
        return _refuse(f"unknown command {cmd!r} (expected one of: status, collectors, revoke)")

    async def _revoke_agent(self, name: object) -> dict[str, Any]:
        if not isinstance(name, str) or not name:
            return _refuse("revoke: an agent name is required")
        if self._revoke is None:
            return _refuse("revoke: this appliance serves no bus")
        try:
            ended = await self._revoke(name)
        except (BusError, StoreError) as err:
            return _refuse(f"revoke {name!r}: {err}")
        log.info("control_command", action="revoke", agent=name, calls_ended=ended)
        return {"ok": True, "agent": name, "calls_ended": ended}

    async def _collectors(self, action: object, name: object) -> dict[str, Any]:
        if action not in ACTIONS:
            return _refuse(f"collectors: action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if not isinstance(name, str) or not name:
            return _refuse(f"collectors {action}: a collector name is required")
        sup = self._supervisor
        command = {"start": sup.start_collector, "stop": sup.stop_collector, "restart": sup.restart_collector}
        try:
            status = await command[action](name)
        except UnknownCollectorError as err:
            return _refuse(str(err)) | {"not_found": True}  # nothing to act on: the CLI exits 1
        except CollectorError as err:
            log.info("control_command_refused", action=action, collector=name, reason=str(err))
            # already in the state asked for: nothing to act on (the CLI exits 1); else refused (2)
            return _refuse(str(err)) | (
                {"nothing_to_do": True} if getattr(err, "nothing_to_do", False) else {}
            )
        log.info("control_command", action=action, collector=name, state=status.state_text)
        return {"ok": True, "collector": status.to_dict()}


def _refuse(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


async def _send(writer: asyncio.StreamWriter, reply: Mapping[str, Any]) -> None:
    writer.write(json.dumps(reply).encode() + b"\n")
    await writer.drain()


async def _answers(path: Path) -> bool:
    """True when something accepts connections on the Unix socket at `path`."""
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:  # refused (nobody listens), not a socket, vanished
        return False
    writer.close()
    await writer.wait_closed()
    return True


# ---------------------------------------------------------------------- client
def request(path: Path, message: Mapping[str, Any], *, timeout_seconds: float = 10.0) -> dict[str, Any]:
    """Send one request to the control socket at `path` and return the reply (blocking; for the CLI).

    Raises NotRunningError when no appliance listens there, ControlError for any other failure to
    talk to it. A reply with ``"ok": false`` is returned, not raised.
    """
    check_socket_path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_seconds)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise NotRunningError(path, f"there is no control socket {path}") from None
        except ConnectionRefusedError:
            raise NotRunningError(
                path, f"{path} refuses connections (left behind by an appliance that did not stop cleanly)"
            ) from None
        except PermissionError:
            raise ControlError(
                f"{path}: permission denied (the control socket is 0600: run this as the appliance's user)"
            ) from None
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ControlError(f"{path}: the appliance closed the connection without answering")
                data += chunk
        except TimeoutError:
            raise ControlError(f"{path}: no answer within {timeout_seconds:g} s") from None
        except ConnectionError as err:
            raise ControlError(f"{path}: connection lost: {err.strerror or err}") from None
    try:
        reply = json.loads(data)
    except ValueError as err:
        raise ControlError(f"{path}: the reply is not JSON: {err}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: the reply is not a JSON object")
    return reply
