"""The proc connector socket: open, subscribe, receive without blocking, unsubscribe.

Needs root or CAP_NET_ADMIN (binding to the CN_IDX_PROC multicast group); since Linux 6.6 the
kernel also refuses subscribers outside the initial user and PID namespaces, and older kernels stay
silent for them — which is why the collector self-tests the socket before trusting it.
"""

from __future__ import annotations

import errno
import os
import random
import socket

from amoskys.collectors.process import parse

#: Largest datagram read at once: one proc_event is 76 bytes; the kernel sends one per datagram.
_RECV_BYTES = 4096


class ConnectorUnavailableError(OSError):
    """The proc connector cannot be used here; ``reason`` is what the collector's mode shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProcConnector:
    """One subscribed NETLINK_CONNECTOR socket. ``receive()`` never blocks."""

    def __init__(self, receive_buffer_bytes: int) -> None:
        self.receive_buffer_bytes = receive_buffer_bytes
        self.subscribe_ack = random.getrandbits(30)  # the kernel's Ack answers it + 1: we know our own
        self.overruns = 0
        self._sock: socket.socket | None = None

    def open(self) -> None:
        """Create, bind and subscribe; raises ConnectorUnavailableError with the reason."""
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            raise ConnectorUnavailableError("netlink is Linux-only")
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM, parse.NETLINK_CONNECTOR)
        except OSError as err:
            raise ConnectorUnavailableError(
                f"cannot create a NETLINK_CONNECTOR socket: {err.strerror or err}"
            ) from err
        try:
            self._set_buffer(sock)
            sock.bind((0, parse.CN_IDX_PROC))
            sock.setblocking(False)
            sock.send(parse.subscribe_message(parse.PROC_CN_MCAST_LISTEN, ack=self.subscribe_ack))
        except PermissionError as err:
            sock.close()
            raise ConnectorUnavailableError("netlink needs CAP_NET_ADMIN") from err
        except OSError as err:
            sock.close()
            raise ConnectorUnavailableError(
                f"proc connector subscribe failed: {err.strerror or err}"
            ) from err
        self._sock = sock

    def _set_buffer(self, sock: socket.socket) -> None:
        # SO_RCVBUFFORCE (CAP_NET_ADMIN) may exceed net.core.rmem_max; SO_RCVBUF is capped by it
        force = getattr(socket, "SO_RCVBUFFORCE", 33)
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, self.receive_buffer_bytes)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes)

    def fileno(self) -> int:
        if self._sock is None:
            raise RuntimeError("the proc connector socket is not open")
        return self._sock.fileno()

    def receive(self, max_datagrams: int) -> tuple[list[bytes], bool, bool]:
        """(datagrams read now, whether the kernel reported an overrun, whether the socket is empty).

        Reads until the socket is empty or `max_datagrams` were read. After an overrun the kernel
        reports no further one until its queue was once drained empty (NETLINK_S_CONGESTED), though
        it may keep dropping: the caller must treat gaps until then as part of the same overrun.
        """
        sock = self._sock
        if sock is None:
            return [], False, True
        out: list[bytes] = []
        overrun = False
        drained = False
        recv = sock.recv
        while len(out) < max_datagrams:
            try:
                out.append(recv(_RECV_BYTES))
            except BlockingIOError:
                drained = True
                break
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                overrun = True  # the kernel dropped messages; the socket goes on working
                self.overruns += 1
        return out, overrun, drained

    @property
    def buffer_bytes(self) -> int:
        """The receive buffer the kernel granted (twice what was asked, as Linux does)."""
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) if self._sock else 0

    def close(self) -> None:
        """Unsubscribe (the kernel only stops generating events on IGNORE) and close."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.send(parse.subscribe_message(parse.PROC_CN_MCAST_IGNORE))
        except OSError:
            pass  # closing anyway
        sock.close()


def describe_ack_error(code: int) -> str:
    """The reason to show when the kernel refused the subscription with errno `code`."""
    if code == errno.EPERM:
        return "the kernel refused the proc connector subscription (EPERM: not in the initial user/PID namespace)"
    name = errno.errorcode.get(code, str(code))
    return f"the kernel refused the proc connector subscription ({name}: {os.strerror(code)})"
