"""The control socket of a running appliance (DESIGN §5b): server side and a small blocking client.

A Unix stream socket in the data dir, mode 0600, speaking newline-delimited JSON: one request object
per line, one reply object per line. Every action goes through the appliance's one ControlService
(amoskys.control_service), audited with the actor ``cli:<unix user>`` of the connecting process (its
uid from SO_PEERCRED). Requests:

- ``{"cmd": "status"}`` → ``{"ok": true, "appliance": {...}, "collectors": [{...}, ...]}``
- ``{"cmd": "collectors", "action": "start"|"stop"|"restart", "name": NAME}``
  → ``{"ok": true, "collector": {...}}``
- ``{"cmd": "revoke", "name": NAME}``: records the revocation, and the bus refuses the agent from the
  next call on and ends its calls in progress before answering
  ``{"ok": true, "agent": NAME, "newly_revoked": BOOL, "calls_ended": N}`` (N is null when `perform`
  runs in the CLI on a stopped data dir: the appliance refuses the agent from its next start)
- ``{"cmd": "enrolled", "name", "role", "public_key": HEX, "cert_serial"}`` (the CLI wrote the
  bundle) → ``{"ok": true, "agent": NAME}``
- ``{"cmd": "users_add", "name", "role", "password", "replace": BOOL}`` → ``{"ok": true, "user": NAME,
  "added": BOOL}`` (False: replaced). The password crosses the socket in clear: only its owner's uid
  and root can connect, and those can read the store anyway; the appliance hashes it off the loop.
- ``{"cmd": "users_remove", "name"}``, ``{"cmd": "users_passwd", "name", "password"}``
  → ``{"ok": true, "user": NAME, "sessions_ended": N}``
- ``{"cmd": "tokens_issue", "user", "days", "label", "role": ROLE|null}``
  → ``{"ok": true, "token": SECRET, "id": PUBLIC_ID, "user": NAME, "role": ROLE}``
- ``{"cmd": "tokens_revoke", "id": PUBLIC_ID}`` → ``{"ok": true, "id": ..., "user": NAME, "revoked": N}``
- ``{"cmd": "enrol_token", "name", "role", "ttl_seconds", "ca_fingerprint": HEX}`` → ``{"ok": true,
  "token": SECRET, "expires_ns": N}`` (a one-time enrolment token; the appliance keeps only its hash)

Any refusal is ``{"ok": false, "error": "<message for the operator>"}``, with ``"not_found": true``
when the thing named does not exist, ``"nothing_to_do": true`` when it is already in the state asked
for (both: nothing to act on, the CLI exits 1). A collector action its state does not allow
(stop on a stopped or disabled one, start on a running one, ...) or a start that ends with the
collector disabled again ("did not start: disabled: needs CAP_NET_RAW") is such a refusal (see
amoskys.supervisor): the CLI exits 2 with that line. The CLI on a stopped data dir answers the same
requests itself with `perform` over a local ControlService, so both paths reply alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from amoskys.control_service import (
    Actor,
    BadRequestError,
    ControlService,
    UnknownActionError,
    UnknownAgentError,
    UnknownTokenError,
    UnknownUserError,
)
from amoskys.errors import BusError, CollectorError, ControlError, StoreError
from amoskys.store.errors import StateConflictError
from amoskys.supervisor import UnknownCollectorError

log = structlog.get_logger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
#: sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
ACTIONS = ("start", "stop", "restart")
COMMANDS = (
    "status",
    "collectors",
    "revoke",
    "enrolled",
    "users_add",
    "users_remove",
    "users_passwd",
    "tokens_issue",
    "tokens_revoke",
    "enrol_token",
)
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


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
def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    _, uid, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return int(uid)


def _bind_unix(path: Path) -> socket.socket:
    """A Unix stream socket bound at `path`, made 0600 before it listens (the data dir is 0700 too)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
    except BaseException:
        sock.close()
        raise
    return sock


class ControlServer:
    """Serves the control socket inside the appliance's loop: ``await start()`` … ``await close()``."""

    def __init__(self, path: Path, service: ControlService, info: Callable[[], Mapping[str, Any]]) -> None:
        self.path = path
        self._service = service
        self._info = info
        self._server: asyncio.Server | None = None
        self._closing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind the socket (0600), replacing one left behind by an appliance that died; serving
        starts at once. Raises ControlError when another appliance answers on it."""
        check_socket_path(self.path)
        path = self.path
        if await asyncio.to_thread(lambda: path.exists() or path.is_symlink()):
            if await _answers(path):
                raise ControlError(
                    f"another appliance is running with data dir {path.parent}: {path} answers"
                )
            await asyncio.to_thread(path.unlink)
            log.info("control_socket_stale_removed", path=str(path))
        self._closing = False
        sock = await asyncio.to_thread(_bind_unix, path)  # asyncio's path= stats it on the loop
        try:
            self._server = await asyncio.start_unix_server(self._accepted, sock=sock, limit=MAX_REQUEST_BYTES)
        except BaseException:
            sock.close()
            raise
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
        await asyncio.to_thread(self.path.unlink, missing_ok=True)

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
            uid = peer_uid(writer.get_extra_info("socket"))
            actor = await asyncio.to_thread(Actor.unix_user, uid)  # a passwd lookup (NSS): off the loop
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the stream limit
                    await _send(writer, _refuse(f"request longer than {MAX_REQUEST_BYTES} bytes"))
                    return
                if not line:
                    return
                await _send(writer, await self.answer(line, actor))
        except ConnectionError:
            return  # the client went away: nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()

    async def answer(self, line: bytes, actor: Actor) -> dict[str, Any]:
        """The reply to one request line from `actor`."""
        try:
            request = json.loads(line)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            return _refuse(f"request is not JSON: {err}")
        if not isinstance(request, dict):
            return _refuse(f"request must be a JSON object, got {type(request).__name__}")
        if request.get("cmd") == "status":
            sup = self._service.supervisor
            return {
                "ok": True,
                "appliance": dict(self._info()),
                "collectors": [s.to_dict() for s in sup.status()] if sup is not None else [],
            }
        return await perform(self._service, actor, request)


async def perform(service: ControlService, actor: Actor, request: Mapping[str, Any]) -> dict[str, Any]:
    """Do one state-changing request through `service` as `actor` and return the reply (the socket's,
    and the CLI's on a stopped data dir). Refusals are replies, never raised."""
    cmd = request.get("cmd")
    try:
        return await _perform(service, actor, cmd, request)
    except (UnknownCollectorError, UnknownAgentError, UnknownUserError, UnknownTokenError) as err:
        return _refuse(str(err)) | {"not_found": True}  # nothing to act on: the CLI exits 1
    except CollectorError as err:
        log.info("control_command_refused", cmd=cmd, reason=str(err))
        # already in the state asked for: nothing to act on (the CLI exits 1); else refused (2)
        return _refuse(str(err)) | ({"nothing_to_do": True} if getattr(err, "nothing_to_do", False) else {})
    except (BadRequestError, UnknownActionError, StateConflictError) as err:
        return _refuse(str(err))
    except (BusError, StoreError) as err:
        return _refuse(f"{cmd}: {err}")


def _text(request: Mapping[str, Any], key: str, cmd: object) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{cmd}: {key!r} is required (a non-empty string)")
    return value


async def _perform(
    service: ControlService, actor: Actor, cmd: object, r: Mapping[str, Any]
) -> dict[str, Any]:
    if cmd == "collectors":
        action = r.get("action")
        if action not in ACTIONS:
            return _refuse(f"collectors: action must be one of {', '.join(ACTIONS)}, got {action!r}")
        status = await service.collector(actor, str(action), _text(r, "name", f"collectors {action}"))
        return {"ok": True, "collector": status.to_dict()}
    if cmd == "revoke":
        done = await service.revoke_agent(actor, _text(r, "name", cmd))
        return {
            "ok": True,
            "agent": done.agent,
            "newly_revoked": done.newly_revoked,
            "calls_ended": done.calls_ended,
        }
    if cmd == "enrolled":
        try:
            key = bytes.fromhex(_text(r, "public_key", cmd))
        except ValueError:
            raise BadRequestError("enrolled: 'public_key' must be hex") from None
        name = _text(r, "name", cmd)
        await service.record_enrolment(actor, name, _text(r, "role", cmd), key, _text(r, "cert_serial", cmd))
        return {"ok": True, "agent": name}
    if cmd == "users_add":
        name = _text(r, "name", cmd)
        added = await service.add_user(
            actor, name, _text(r, "role", cmd), _text(r, "password", cmd), replace=r.get("replace") is True
        )
        return {"ok": True, "user": name, "added": added}
    if cmd == "users_remove":
        name = _text(r, "name", cmd)
        return {"ok": True, "user": name, "sessions_ended": await service.remove_user(actor, name)}
    if cmd == "users_passwd":
        name = _text(r, "name", cmd)
        ended = await service.set_password(actor, name, _text(r, "password", cmd))
        return {"ok": True, "user": name, "sessions_ended": ended}
    if cmd == "tokens_issue":
        days, role = r.get("days"), r.get("role")
        if not isinstance(days, int) or isinstance(days, bool):
            raise BadRequestError("tokens_issue: 'days' must be a whole number")
        if role is not None and not isinstance(role, str):
            raise BadRequestError("tokens_issue: 'role' must be a string or null")
        label = r.get("label", "")
        token, row = await service.issue_token(
            actor, _text(r, "user", cmd), days, label=label if isinstance(label, str) else "", role=role
        )
        return {"ok": True, "token": token, "id": row.public_id, "user": row.user, "role": row.role}
    if cmd == "tokens_revoke":
        public_id = _text(r, "id", cmd)
        row, revoked = await service.revoke_token(actor, public_id)
        return {"ok": True, "id": public_id, "user": row.user, "revoked": revoked}
    if cmd == "enrol_token":
        ttl = r.get("ttl_seconds")
        if not isinstance(ttl, int) or isinstance(ttl, bool):
            raise BadRequestError("enrol_token: 'ttl_seconds' must be a whole number")
        try:
            fingerprint = bytes.fromhex(_text(r, "ca_fingerprint", cmd))
        except ValueError:
            raise BadRequestError("enrol_token: 'ca_fingerprint' must be hex") from None
        token, expires_ns = await service.issue_enrol_token(
            actor, _text(r, "name", cmd), _text(r, "role", cmd), ttl, fingerprint
        )
        return {"ok": True, "token": token, "expires_ns": expires_ns}
    return _refuse(f"unknown command {cmd!r} (expected one of: {', '.join(COMMANDS)})")


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
