"""Many concurrent publishers on long-lived mTLS channels, in one process (used by bench_bus.py).

    python benchmarks/publishers.py BUNDLES_DIR ADDRESS BATCHES_EACH BATCH_SIZE READY_FILE GO_FILE
Prints one JSON line: publishers, events, seconds, errors.
"""

import asyncio
import json
import sys
import time
from pathlib import Path

from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.loadgen import SyntheticEvents


async def main(bundles: Path, address: str, batches: int, size: int, ready: Path, go: Path) -> None:
    identities = [PublisherIdentity.from_bundle(d) for d in sorted(bundles.iterdir())]
    clients = [BusClient(i, address) for i in identities]
    gens = [SyntheticEvents(i.name) for i in identities]
    # connect every channel first (one tiny batch each), then wait for the go signal
    await asyncio.gather(*(c.publish_raw(g.make(1)[1]) for c, g in zip(clients, gens, strict=True)))
    ready.write_text("connected")
    while not go.exists():
        await asyncio.sleep(0.05)
    errors = 0

    async def run(c: BusClient, g: SyntheticEvents) -> None:
        nonlocal errors
        for _ in range(batches):
            try:
                await c.publish_raw(g.make(size)[1])
            except Exception:  # noqa: BLE001 - a benchmark counts failures, whatever they are
                errors += 1

    t0 = time.monotonic()
    await asyncio.gather(*(run(c, g) for c, g in zip(clients, gens, strict=True)))
    took = time.monotonic() - t0
    retries = sum(c.stats.retries for c in clients)
    for c in clients:
        await c.close()
    print(json.dumps({"publishers": len(clients), "events": len(clients) * batches * size, "seconds": took,
                      "errors": errors, "retries": retries}))


if __name__ == "__main__":
    a = sys.argv
    asyncio.run(main(Path(a[1]), a[2], int(a[3]), int(a[4]), Path(a[5]), Path(a[6])))
