"""Child process of test_crash.py: an agent's outbox forwarded to a bus, until it is killed.

    python tests/forwarders/forward_child.py OUTBOX_DB BUNDLE_DIR BUS_ADDRESS

Opens the outbox (the parent filled it), builds the bus forwarder as amoskys.wiring does from
`[forwarders.bus]`, and runs it with the store's writer. The parent SIGKILLs it at random points.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import structlog

from amoskys.config import BusForwarderConfig, ForwardersConfig, StoreConfig
from amoskys.metrics import Metrics
from amoskys.store import Store
from amoskys.wiring import build_forwarders

LIFETIME_S = 60.0  # never outlive a parent that forgot us


async def main(db: Path, bundle: Path, address: str) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    metrics = Metrics()
    store = await Store.open(db, StoreConfig(max_batch_wait_ms=2), metrics)
    config = ForwardersConfig(
        bus=BusForwarderConfig(
            enabled=True,
            identity=str(bundle),
            address=address,
            batch_events=250,
            batch_wait_ms=5,
            max_in_flight_batches=4,
            call_timeout_seconds=2.0,
        )
    )
    forwarders = await build_forwarders(config, store, metrics)
    writer = asyncio.create_task(store.run())
    try:
        async with asyncio.timeout(LIFETIME_S):
            await forwarders.run()
    finally:
        await store.close()
        await writer


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
