"""The proc connector's wire format, decoded with ``struct``: pure, bytes in, records out.

A datagram from a NETLINK_CONNECTOR socket bound to the CN_IDX_PROC group holds netlink messages
(``struct nlmsghdr``), each carrying a ``struct cn_msg`` whose payload is one ``struct proc_event``
(linux/cn_proc.h)::

    nlmsghdr  len u32, type u16, flags u16, seq u32, pid u32                          16 bytes
    cn_msg    idx u32, val u32, seq u32, ack u32, len u16, flags u16                  20 bytes
    proc_event what u32, cpu u32, timestamp_ns u64, then a union by `what`:
      fork  parent_pid, parent_tgid, child_pid, child_tgid                     (4 x s32)
      exec  process_pid, process_tgid                                          (2 x s32)
      exit  process_pid, process_tgid, exit_code u32, exit_signal u32, parent_pid, parent_tgid
      none  (the ack of a subscription) err u32

``cn_msg.seq`` counts messages per CPU (``proc_event.cpu``), so a gap in it is a lost message;
``timestamp_ns`` is the kernel's CLOCK_MONOTONIC. ``exit_code`` is the raw wait status.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

PROC_EVENT_NONE = 0x00000000
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_FORK = struct.Struct("=iiii")
_EXEC = struct.Struct("=ii")
_EXIT = struct.Struct("=iiIIii")
_ACK = struct.Struct("=I")
_ERRNO = struct.Struct("=i")
_HEADERS = _NLMSGHDR.size + _CN_MSG.size
_NLMSG_ALIGN = 4
#: The whole of the usual datagram in one unpack: nlmsghdr, cn_msg, proc_event head, 6 union words.
_USUAL = struct.Struct("=IHHIIIIIIHHIIQiiiiii")
_USUAL_EVENT_BYTES = _EVENT_HEAD.size + 24


class ParseError(ValueError):
    """A datagram that is not a well-formed proc connector message (truncated, bad lengths)."""


class Fork(NamedTuple):
    cpu: int
    seq: int
    ts_ns: int  # CLOCK_MONOTONIC
    parent_tgid: int
    child_pid: int
    child_tgid: int


class Exec(NamedTuple):
    cpu: int
    seq: int
    ts_ns: int
    pid: int
    tgid: int


class Exit(NamedTuple):
    cpu: int
    seq: int
    ts_ns: int
    pid: int
    tgid: int
    status: int  # the raw wait status (see decode_status)
    parent_tgid: int  # 0 on kernels older than 4.18


class Ack(NamedTuple):
    """The kernel's answer to a (un)subscribe message; ``err`` is an errno, 0 for success."""

    cpu: int
    seq: int
    ack: int
    err: int


class Other(NamedTuple):
    """An event this collector does not use (uid, gid, sid, comm, ptrace, coredump): it still
    carries a sequence number, so it still counts for gap detection."""

    cpu: int
    seq: int
    ts_ns: int
    what: int


class NetlinkError(NamedTuple):
    """An NLMSG_ERROR message; ``errno`` is positive (0 is a plain ack)."""

    errno: int


class Overrun(NamedTuple):
    """An NLMSG_OVERRUN message: the kernel dropped data."""


Record = Fork | Exec | Exit | Ack | Other | NetlinkError | Overrun


def subscribe_message(op: int = PROC_CN_MCAST_LISTEN, *, ack: int = 0, port_id: int = 0) -> bytes:
    """The datagram that (un)subscribes a bound socket: ``PROC_CN_MCAST_LISTEN`` or ``_IGNORE``.

    The legacy 4-byte payload asks for every event type (kernels before 6.6 know only this form).
    The kernel's Ack answers ``ack + 1`` (its ``seq`` is the per-CPU counter on recent kernels).
    """
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, ack & 0xFFFFFFFF, len(payload), 0)
    header = _NLMSGHDR.pack(_HEADERS + len(payload), NLMSG_DONE, 0, 0, port_id)
    return header + cn + payload


def parse_datagram(data: bytes | bytearray | memoryview) -> list[Record]:
    """Every record in one datagram; messages of other connectors are skipped.

    Raises ParseError when a length field points outside the datagram or a message is too short for
    what it claims to be.
    """
    if len(data) == _USUAL.size:
        record = _parse_usual(data)
        if record is not None:
            return [record]
    view = memoryview(data)
    records: list[Record] = []
    offset = 0
    end = len(view)
    while end - offset >= _NLMSGHDR.size:
        length, msg_type, _flags, _seq, _port = _NLMSGHDR.unpack_from(view, offset)
        if length < _NLMSGHDR.size or length > end - offset:
            raise ParseError(
                f"netlink message at offset {offset} claims {length} bytes; {end - offset} remain"
            )
        body = offset + _NLMSGHDR.size
        if msg_type == NLMSG_ERROR:
            if length < _NLMSGHDR.size + _ERRNO.size:
                raise ParseError(f"NLMSG_ERROR of {length} bytes has no error code")
            (code,) = _ERRNO.unpack_from(view, body)
            records.append(NetlinkError(-code))
        elif msg_type == NLMSG_OVERRUN:
            records.append(Overrun())
        elif msg_type == NLMSG_DONE:
            record = _parse_cn_msg(view[body : offset + length])
            if record is not None:
                records.append(record)
        offset += (length + _NLMSG_ALIGN - 1) & ~(_NLMSG_ALIGN - 1)
    return records


def _parse_usual(data: bytes | bytearray | memoryview) -> Record | None:
    """The fast path: one datagram holding one whole proc event, as the kernel sends it (76 bytes).
    None when it is anything else (the general path then decides)."""
    (length, msg_type, _f, _s, _p, idx, val, seq, ack, cn_len, _cf, what, cpu, ts, a, b, c, d, _e, f) = (
        _USUAL.unpack_from(data)
    )
    if (
        length != _USUAL.size
        or msg_type != NLMSG_DONE
        or idx != CN_IDX_PROC
        or val != CN_VAL_PROC
        or cn_len != _USUAL_EVENT_BYTES
    ):
        return None
    if what == PROC_EVENT_FORK:
        return Fork(cpu, seq, ts, b, c, d)
    if what == PROC_EVENT_EXEC:
        return Exec(cpu, seq, ts, a, b)
    if what == PROC_EVENT_EXIT:
        return Exit(cpu, seq, ts, a, b, c & 0xFFFFFFFF, f)
    if what == PROC_EVENT_NONE:
        return Ack(cpu, seq, ack, a & 0xFFFFFFFF)
    return Other(cpu, seq, ts, what)


def _parse_cn_msg(view: memoryview) -> Record | None:
    if len(view) < _CN_MSG.size:
        raise ParseError(
            f"connector message of {len(view)} bytes is shorter than its {_CN_MSG.size}-byte header"
        )
    idx, val, seq, ack, length, _flags = _CN_MSG.unpack_from(view, 0)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
        return None
    if length > len(view) - _CN_MSG.size:
        raise ParseError(f"proc event claims {length} bytes; the message holds {len(view) - _CN_MSG.size}")
    event = view[_CN_MSG.size : _CN_MSG.size + length]
    if len(event) < _EVENT_HEAD.size:
        raise ParseError(
            f"proc event of {len(event)} bytes is shorter than its {_EVENT_HEAD.size}-byte header"
        )
    what, cpu, ts_ns = _EVENT_HEAD.unpack_from(event, 0)
    data = _EVENT_HEAD.size
    try:
        if what == PROC_EVENT_EXEC:
            pid, tgid = _EXEC.unpack_from(event, data)
            return Exec(cpu, seq, ts_ns, pid, tgid)
        if what == PROC_EVENT_FORK:
            _parent_pid, parent_tgid, child_pid, child_tgid = _FORK.unpack_from(event, data)
            return Fork(cpu, seq, ts_ns, parent_tgid, child_pid, child_tgid)
        if what == PROC_EVENT_EXIT:
            pid, tgid, status, _signal, _parent_pid, parent_tgid = _EXIT.unpack_from(event, data)
            return Exit(cpu, seq, ts_ns, pid, tgid, status, parent_tgid)
        if what == PROC_EVENT_NONE:
            (err,) = _ACK.unpack_from(event, data)
            return Ack(cpu, seq, ack, err)
    except struct.error as err:
        raise ParseError(f"proc event 0x{what:x} of {len(event)} bytes is truncated: {err}") from None
    return Other(cpu, seq, ts_ns, what)


def decode_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, terminating signal) from a raw wait status; exactly one of them is set.

    ``exit(3)`` is status 0x300 → (3, None); death by SIGKILL is status 9 → (None, 9) (bit 0x80 marks
    a core dump).
    """
    signal = status & 0x7F
    if signal == 0:
        return (status >> 8) & 0xFF, None
    return None, signal
