"""The ECS file sink: alerts as ECS JSON Lines (amoskys.ecs), fsynced before the cursor moves,
rotated by size to path.1 .. path.keep, with no line lost or doubled under load."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from amoskys.config import EcsFileSinkConfig, SinksConfig

from .harness import AlertStore, alert, alert_store, running_sinks
from support import eventually


def ecs_sink(path: Path, **keys: Any) -> SinksConfig:
    return SinksConfig(ecs_file=(EcsFileSinkConfig(name="ecs", path=str(path), **keys),))


def files(path: Path) -> list[Path]:
    """The live file and its rotations, oldest first."""
    rotations = sorted(path.parent.glob(f"{path.name}.*"), key=lambda p: -int(p.suffix[1:]))
    return [*rotations, *([path] if path.exists() else [])]


def documents(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in files(path) for line in f.read_bytes().splitlines()]


async def caught_up(alerts: AlertStore) -> None:
    await eventually(lambda: alerts.sample("amoskys_forwarder_lag_events", sink="ecs") == 0, what="caught up")


async def test_alerts_become_ecs_documents(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts.ecs.json"  # its folder is made
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        async with running_sinks(alerts, ecs_sink(path, min_level="medium")):
            ids = await alerts.publish(alert(0, level="critical"), alert(1, level="low"))
            await eventually(lambda: path.exists() and path.read_bytes().count(b"\n") == 1, what="a line")
            await caught_up(alerts)
    [doc] = documents(path)
    assert doc["event"]["id"] == ids[0]
    assert doc["event"]["kind"] == "alert" and doc["event"]["dataset"] == "amoskys.alert"
    assert doc["rule"] == {"id": "amoskys.exec_from_tmp", "name": "Execution from /tmp"}
    assert (doc["event"]["severity"], doc["log"]["level"]) == (5, "critical")
    assert doc["tags"] == ["attack.execution", "attack.t1059"]
    assert doc["host"] == {"name": "box-1"} and doc["observer"]["name"] == "box-1"
    assert doc["labels"] == {"exe": "/tmp/x0", "pid": "1000"}
    assert doc["message"] == "alert 0: /tmp/x0 ran"
    assert path.stat().st_mode & 0o777 == 0o640
    assert alerts.sample("amoskys_sink_alerts_total", sink="ecs", outcome="filtered") == 1


async def test_the_file_rotates_under_load_and_no_line_is_lost_or_doubled(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    max_bytes = 200_000  # a batch (at most 100 alerts, ~1 KB each) always fits: every file stays under it
    config = ecs_sink(path, max_bytes=max_bytes, keep=100)
    async with alert_store(tmp_path / "db.sqlite") as alerts:

        async def publisher(n: int) -> list[str]:
            out: list[str] = []
            for i in range(0, 500, 25):
                out += await alerts.publish(*(alert(n * 1000 + i + j) for j in range(25)))
            return out

        async with running_sinks(alerts, config):
            published = await asyncio.gather(*(publisher(n) for n in range(4)))
            await caught_up(alerts)
        # stopped in the middle of a stream of alerts, then started again: what was not acked is
        # written again (at least once), nothing is left out
        async with running_sinks(alerts, config):
            more = asyncio.create_task(publisher(4))
            await eventually(
                lambda: alerts.sample("amoskys_forwarder_lag_events", sink="ecs") > 0, what="work"
            )
        async with running_sinks(alerts, config):
            published.append(await more)
            await caught_up(alerts)
    ids = [event_id for batch in published for event_id in batch]
    got = [doc["event"]["id"] for doc in documents(path)]
    assert set(got) == set(ids) and len(ids) == 2500  # every alert
    assert len(got) - len(set(got)) <= 100  # at most the one batch in flight at the stop, twice
    assert sorted(got[:2000]) == sorted(ids[:2000])  # the first 2000 once each (in store order: below)
    sequences = [doc["event"]["sequence"] for doc in documents(path)]
    assert sequences[:2000] == sorted(sequences[:2000])
    total = sum(f.stat().st_size for f in files(path))
    assert len(files(path)) >= max(2, total // max_bytes)  # rotated as it filled
    assert all(f.stat().st_size <= max_bytes for f in files(path))
    for f in files(path):
        assert f.read_bytes().endswith(b"\n")
    rotations = alerts.sample("amoskys_sink_ecs_file_rotations_total", sink="ecs")
    assert rotations == len(files(path)) - 1


async def test_only_keep_rotated_files_remain_holding_the_newest_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        async with running_sinks(alerts, ecs_sink(path, max_bytes=4096, keep=2)):
            ids = []
            for i in range(30):  # one by one: a batch each, a few to a file
                ids += await alerts.publish(alert(i))
                await caught_up(alerts)
    assert [p.name for p in files(path)] == ["alerts.json.2", "alerts.json.1", "alerts.json"]
    got = [doc["event"]["id"] for doc in documents(path)]
    assert got == ids[-len(got) :]  # the newest ones, in order; the older files were deleted
    assert len(got) < 30  # some went with the deleted files
    assert alerts.sample("amoskys_sink_ecs_file_rotations_total", sink="ecs") >= 3


async def test_a_torn_last_line_is_cut_and_writing_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_bytes(b'{"event":{"id":"whole"}}\n{"event":{"id":"torn-by-a-cr')
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        async with running_sinks(alerts, ecs_sink(path)):
            ids = await alerts.publish(alert(0))
            await caught_up(alerts)
    assert [doc["event"]["id"] for doc in documents(path)] == ["whole", *ids]


async def test_an_unwritable_path_is_retried_and_every_alert_written_once_it_heals(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")
    path = blocker / "alerts.json"
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        async with running_sinks(alerts, ecs_sink(path)) as forwarders:
            ids = await alerts.publish(*(alert(i) for i in range(5)))
            status = await eventually(
                lambda: [s for s in forwarders.status() if s["retries"] >= 2], what="the sink retrying"
            )
            assert str(blocker) in status[0]["reason"]
            ids += await alerts.publish(alert(5))
            blocker.unlink()
            await eventually(lambda: path.exists() and len(documents(path)) == 6, what="every alert written")
            await caught_up(alerts)
    assert [doc["event"]["id"] for doc in documents(path)] == ids
