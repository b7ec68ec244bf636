"""One stamper per process: everything `amoskys run` writes in one life carries one boot_id — the
events the store writes about itself (LossReports) as well as its collectors' events."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest

from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.paths import Layout
from amoskys.store import Store, integrity

from .helpers import flow_records, running, small_config
from support import wait_for


def _own_events(db: Path) -> list[tuple[str, str, str]]:
    """(source, boot_id, kind) of every stored event, read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [
            tuple(row) for row in conn.execute("SELECT source, boot_id, kind FROM events ORDER BY store_seq")
        ]
    finally:
        conn.close()


@pytest.mark.e2e
def test_every_event_of_one_process_life_carries_one_boot_id(appliance_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    layout = Layout(data)
    layout.root.mkdir(mode=0o700, parents=True)
    # a side file whose database is gone: the store reports the loss itself (reason db_missing) at open
    integrity.write_high_water(integrity.side_file(layout.db), integrity.HighWater("vanished", 7, 7))

    app = appliance_factory(data_dir=data)
    app.wait_ready()

    def written() -> list[tuple[str, str, str]] | None:
        rows = _own_events(layout.db)
        kinds = {kind for _, _, kind in rows}
        return rows if {"loss", "heartbeat"} <= kinds else None

    wait_for(written, timeout=30, what="the store's LossReport and a collector's heartbeat")
    app.signal(signal.SIGTERM)
    assert app.wait_exit(timeout=15) == 0

    rows = _own_events(layout.db)
    kinds = {kind for _, _, kind in rows}
    assert {"loss", "heartbeat"} <= kinds, rows
    assert len({source for source, _, _ in rows}) == 1, rows  # all the appliance's own
    boots = {boot for _, boot, _ in rows}
    assert len(boots) == 1, f"one process life wrote {len(boots)} boot ids: {sorted(boots)}"


async def test_the_store_stamps_what_it_reports_with_the_stamper_it_was_given(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    mark = integrity.HighWater("vanished", 7, 7)
    await asyncio.to_thread(integrity.write_high_water, integrity.side_file(db), mark)
    stamper = EnvelopeStamper("edge-1")  # the process's one stamper, as app.py hands it over
    store = await Store.open(db, small_config(), Metrics(), stamper=stamper)
    async with running(store):
        await store.submit(flow_records(stamper, 3), local=True)  # a collector's events
        rows = await store.events()
    assert [r.kind for r in rows] == ["loss", "flow", "flow", "flow"]
    assert {(r.source, r.boot_id) for r in rows} == {("edge-1", stamper.boot_id)}
    assert [r.source_seq for r in rows] == [1, 2, 3, 4]  # one gap-free sequence, too
