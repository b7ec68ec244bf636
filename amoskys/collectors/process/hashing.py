"""SHA-256 of executables, cached by (device, inode, size, mtime) so each binary is read once."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from amoskys.collectors.process.procfs import ExeKey


class ExeHashes:
    """A bounded LRU cache of executable digests, shared by the worker threads (hence the lock).

    A replaced binary gets a new inode or mtime, so a stale digest is never served for it.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1:
            raise ValueError(f"hash cache needs at least 1 entry, got {max_entries}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes  # 0: hashing is off
        self.hashed_files = 0
        self.hashed_bytes = 0
        self._lock = threading.Lock()
        self._digests: OrderedDict[ExeKey, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._digests)

    def get(self, key: ExeKey) -> bytes | None:
        with self._lock:
            digest = self._digests.get(key)
            if digest is not None:
                self._digests.move_to_end(key)
            return digest

    def put(self, key: ExeKey, digest: bytes) -> None:
        with self._lock:
            self._digests[key] = digest
            self._digests.move_to_end(key)
            while len(self._digests) > self.max_entries:
                self._digests.popitem(last=False)

    def digest_fd(self, fd: int, key: ExeKey) -> bytes | None:
        """Hash the open executable `fd` (always closed here) and cache it under `key`.

        Blocking: call it from a worker thread. None when reading fails (the caller marks
        ``exe_sha256`` unreadable).
        """
        try:
            with open(fd, "rb", closefd=True) as f:
                digest = hashlib.file_digest(f, "sha256").digest()
        except OSError:
            return None
        with self._lock:
            self.hashed_files += 1
            self.hashed_bytes += key[2]
        self.put(key, digest)
        return digest

    def digest_path(self, path: str) -> tuple[bytes | None, bool]:
        """(digest, readable) of the file at `path` (``/proc/<pid>/exe``), from the cache when its
        key is known. Blocking. A file over ``max_bytes`` is (None, True): skipped, not unreadable."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None, False
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None, False
        key: ExeKey = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = self.get(key)
        if digest is not None or st.st_size > self.max_bytes:
            os.close(fd)
            return digest, True
        digest = self.digest_fd(fd, key)
        return digest, digest is not None
