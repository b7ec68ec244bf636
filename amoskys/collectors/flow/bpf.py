"""Kernel packet filters: a tcpdump-style expression compiled to classic BPF by libpcap.

The expression is compiled by libpcap itself (``pcap_open_dead`` + ``pcap_compile`` through ctypes,
from Debian's ``libpcap0.8`` package), so it means exactly what it means to tcpdump; AMOSKYS never
writes filter bytecode by hand. :func:`attach` hands the program to a socket with
``SO_ATTACH_FILTER``: the capture attaches it before binding, so no unfiltered packet is queued.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from functools import cache

from amoskys.errors import AmoskysError

#: The shared object Debian's libpcap0.8 package installs (the name every Linux distribution uses).
LIBPCAP_SONAME = "libpcap.so.0.8"
LIBPCAP_PACKAGE = "libpcap0.8"
#: The names dlopen is asked for, in order: Debian's, then other distributions' (libpcap.so.1), then
#: the development symlink. dlopen searches the linker cache itself, so nothing runs ldconfig (as
#: ctypes.util.find_library would: a subprocess, on the event loop when a collector self-checks).
LIBPCAP_NAMES = (LIBPCAP_SONAME, "libpcap.so.1", "libpcap.so")
DLT_EN10MB = 1  # Ethernet: what an AF_PACKET SOCK_RAW socket sees on Ethernet-like interfaces
SNAPLEN = 262_144
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
SO_ATTACH_FILTER = 26
_INSN = struct.Struct("=HBBI")  # struct sock_filter / bpf_insn: code, jt, jf, k


class BpfError(AmoskysError):
    """A capture filter cannot be compiled: libpcap is missing, or the expression is invalid.

    ``expression`` is the filter text; ``missing_library`` is True when libpcap itself is absent.
    """

    def __init__(self, message: str, *, expression: str, missing_library: bool = False) -> None:
        super().__init__(message)
        self.expression = expression
        self.missing_library = missing_library


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


@cache
def _libpcap() -> ctypes.CDLL:
    """libpcap, loaded once; BpfError names the package when it is not installed."""
    for name in LIBPCAP_NAMES:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(_BpfProgram),
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint32,
        ]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        return lib
    raise BpfError(
        f"capture filters need libpcap ({LIBPCAP_SONAME}), which is not installed: "
        f"sudo apt-get install -y {LIBPCAP_PACKAGE}",
        expression="",
        missing_library=True,
    )


def libpcap_available() -> bool:
    """True when libpcap can be loaded (a filter can be compiled)."""
    try:
        _libpcap()
    except BpfError:
        return False
    return True


def compile_filter(expression: str, *, linktype: int = DLT_EN10MB) -> bytes:
    """The classic BPF program for ``expression`` as the bytes of a ``struct sock_filter`` array.

    Raises BpfError with libpcap's own message when the expression is invalid, or when libpcap is
    not installed.
    """
    try:
        lib = _libpcap()
    except BpfError as err:
        raise BpfError(str(err), expression=expression, missing_library=True) from err
    handle = lib.pcap_open_dead(linktype, SNAPLEN)
    if not handle:
        raise BpfError(f"libpcap could not open a handle to compile {expression!r}", expression=expression)
    program = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(program), expression.encode(), 1, PCAP_NETMASK_UNKNOWN):
            reason = (lib.pcap_geterr(handle) or b"unknown error").decode(errors="replace")
            raise BpfError(f"capture filter {expression!r}: {reason}", expression=expression)
        try:
            return ctypes.string_at(program.bf_insns, program.bf_len * _INSN.size)
        finally:
            lib.pcap_freecode(ctypes.byref(program))
    finally:
        lib.pcap_close(handle)


def instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    """The (code, jt, jf, k) instructions of a compiled program (for tests and debugging)."""
    return [_INSN.unpack_from(program, i) for i in range(0, len(program), _INSN.size)]


def attach(sock: socket.socket, program: bytes) -> None:
    """Attach a compiled program to ``sock`` (``SO_ATTACH_FILTER``; the kernel copies it)."""
    count = len(program) // _INSN.size
    insns = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } (padding before the pointer)
    fprog = struct.pack("HL", count, ctypes.addressof(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
