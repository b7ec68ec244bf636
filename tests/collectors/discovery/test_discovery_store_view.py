"""The events discovery publishes keep the store's `devices` view right (new, ip-changed, gone, back)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from amoskys.collectors.discovery.inventory import ARP_SWEEP, DHCP, Inventory
from amoskys.collectors.discovery.oui import OuiRegistry
from amoskys.events import EnvelopeStamper
from amoskys.store.schema import migrate
from amoskys.store.views import ViewBatch

NS = 1_000_000_000
MAC = bytes.fromhex("b827eb000061")


def test_the_devices_view_follows_a_device_through_its_changes(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path)
    migrate(conn, str(path))
    stamper = EnvelopeStamper("box")
    inv = Inventory(
        OuiRegistry({24: {0xB827EB: "Raspberry Pi Foundation"}}), gone_after_ns=60 * NS, interface="br0"
    )
    seq = 0

    def commit(events: list) -> tuple:
        nonlocal seq
        batch = ViewBatch()
        for envelope in events:
            stamper.stamp(envelope, ts_ns=envelope.ts_ns)
            seq += 1
            batch.add(seq, envelope)
        with conn:
            for sql, rows in batch.statements():
                conn.executemany(sql, rows)
        return conn.execute(
            "SELECT ip, vendor, hostname, interface, first_seen_ns, last_seen_ns, present, last_change FROM devices"
        ).fetchall()

    assert commit(inv.observe(1 * NS, MAC, ARP_SWEEP, ip="10.0.0.11")) == [
        ("10.0.0.11", "Raspberry Pi Foundation", "", "br0", 1 * NS, 1 * NS, 1, "new")
    ]
    assert commit(inv.observe(2 * NS, MAC, DHCP, hostname="kitchen-pi")) == [
        ("10.0.0.11", "Raspberry Pi Foundation", "kitchen-pi", "br0", 1 * NS, 2 * NS, 1, "seen")
    ]
    [row] = commit(inv.observe(3 * NS, MAC, ARP_SWEEP, ip="10.0.0.21"))
    assert row[0] == "10.0.0.21" and row[-1] == "ip_changed"
    [row] = commit(inv.expire(100 * NS))
    assert row[-2:] == (0, "gone") and row[5] == 3 * NS
    [row] = commit(inv.observe(200 * NS, MAC, ARP_SWEEP, ip="10.0.0.21"))
    assert row[-2:] == (1, "seen") and row[4] == 1 * NS and row[5] == 200 * NS
