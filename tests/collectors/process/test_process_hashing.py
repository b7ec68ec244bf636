"""hashing.py: one read per executable version; a replaced file is hashed again; the cache is bounded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from amoskys.collectors.process.hashing import ExeHashes


def test_digest_is_cached_by_device_inode_size_and_mtime(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"version 1")
    hashes = ExeHashes(8, 1 << 20)
    assert hashes.digest_path(str(exe)) == (hashlib.sha256(b"version 1").digest(), True)
    assert hashes.digest_path(str(exe))[0] == hashlib.sha256(b"version 1").digest()
    assert hashes.hashed_files == 1
    replacement = tmp_path / "tool.new"
    replacement.write_bytes(b"version 2")
    os.replace(replacement, exe)  # a new inode: never served the old digest
    assert hashes.digest_path(str(exe)) == (hashlib.sha256(b"version 2").digest(), True)
    assert hashes.hashed_files == 2 and hashes.hashed_bytes == 18


def test_large_files_are_skipped_and_missing_ones_unreadable(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    hashes = ExeHashes(8, 1024)
    assert hashes.digest_path(str(big)) == (None, True)
    assert hashes.digest_path(str(tmp_path / "missing")) == (None, False)


def test_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    hashes = ExeHashes(2, 1 << 20)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode())
    keys = []
    for name in ("a", "b"):
        st = (tmp_path / name).stat()
        keys.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        hashes.digest_path(str(tmp_path / name))
    hashes.get(keys[0])  # a is now the most recent
    hashes.digest_path(str(tmp_path / "c"))
    assert len(hashes) == 2 and hashes.get(keys[0]) is not None and hashes.get(keys[1]) is None
