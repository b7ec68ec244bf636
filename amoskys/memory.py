"""glibc malloc settings for a small resident set: two arenas, and freed start-up memory returned.

glibc gives each thread that allocates its own arena (up to 8 per core); grpc's threads, the executors'
and aiosqlite's each keep a partly used one. ``MALLOC_ARENA_MAX=2`` in the environment does the same
before the interpreter starts (``make run`` sets it); ``limit_arenas`` covers the service started
without it. Both are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    process = ctypes.CDLL(None)  # the symbols already loaded: the C library's among them (no file read)
    return process if hasattr(process, "mallopt") and hasattr(process, "malloc_trim") else None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas for the threads started from now on, unless the environment
    chose (MALLOC_ARENA_MAX). Returns whether the limit was set here."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> None:
    """Hand the heap's free pages back to the kernel (start-up leaves some behind); a blocking call
    that walks the heap: run it in a worker thread."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
