"""The fleet stream (amoskys/nats/stream.py) against a real nats-server with JetStream."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.js import api
from nats_harness import nats_server

from amoskys.nats.stream import StreamConfigError, ensure_stream, subject_covers


@pytest.mark.parametrize(
    ("pattern", "subject", "covers"),
    [
        ("amoskys.>", "amoskys.site.>", True),
        ("amoskys.*.>", "amoskys.site.>", True),
        ("amoskys.site.>", "amoskys.site.>", True),
        ("amoskys.other.>", "amoskys.site.>", False),
        ("amoskys.site.*", "amoskys.site.>", False),
        ("amoskys.*.*.*.*", "amoskys.a.b.c.d", True),
        (">", "amoskys.site.>", True),
        ("amoskys", "amoskys.site.>", False),
    ],
)
def test_subject_covers(pattern: str, subject: str, covers: bool) -> None:
    assert subject_covers(pattern, subject) is covers


async def test_ensure_stream_creates_a_file_stream_with_dedup_and_direct_get(tmp_path: Path) -> None:
    async with nats_server(tmp_path) as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            state = await ensure_stream(
                js,
                "AMOSKYS",
                subjects_prefix="amoskys.s1",
                max_age_seconds=3600,
                max_bytes=1 << 20,
                duplicate_window_seconds=2,
            )
            assert state.created and state.allow_direct and state.duplicate_window_seconds == 2
            info = await js.stream_info("AMOSKYS")
            assert info.config.storage == api.StorageType.FILE
            assert info.config.subjects == ["amoskys.>"]
            assert info.config.max_age == 3600 and info.config.max_bytes == 1 << 20
            again = await ensure_stream(js, "AMOSKYS", subjects_prefix="amoskys.s2")
            assert not again.created  # an existing stream is used as it is
            assert again.duplicate_window_seconds == 2
        finally:
            await nc.close()


async def test_ensure_stream_refuses_a_stream_that_does_not_take_the_site(tmp_path: Path) -> None:
    async with nats_server(tmp_path) as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="OTHER", subjects=["amoskys.hq.>"], allow_direct=False)
            with pytest.raises(StreamConfigError, match=r"do not cover 'amoskys\.branch\.>'"):
                await ensure_stream(js, "OTHER", subjects_prefix="amoskys.branch")
            state = await ensure_stream(js, "OTHER", subjects_prefix="amoskys.hq")
            assert not state.allow_direct  # reported: readers fall back to STREAM.MSG.GET
        finally:
            await nc.close()
