"""Many concurrent publishers on long-lived mTLS channels, in one process (used by bench_bus.py).

    python benchmarks/publishers.py BUNDLES_DIR ADDRESS BATCHES_EACH BATCH_SIZE
Connects every publisher, prints "connected", waits for a line on stdin, publishes, then prints one
JSON line: publishers, events, seconds, errors, retries.
"""

import asyncio
import json
import sys
import time
from pathlib import Path

from amoskys.bus.client import BusClient, PublisherIdentity
from amoskys.errors import BusError
from amoskys.loadgen import SyntheticEvents


async def main(identities: list[PublisherIdentity], address: str, batches: int, size: int) -> None:
    clients = [BusClient(i, address) for i in identities]
    gens = [SyntheticEvents(i.name) for i in identities]
    await asyncio.gather(*(c.publish_raw(g.make(1)[1]) for c, g in zip(clients, gens, strict=True)))
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    errors = 0

    async def run(c: BusClient, g: SyntheticEvents) -> None:
        nonlocal errors
        for _ in range(batches):
            try:
                await c.publish_raw(g.make(size)[1])
            except BusError:
                errors += 1

    t0 = time.monotonic()
    await asyncio.gather(*(run(c, g) for c, g in zip(clients, gens, strict=True)))
    took = time.monotonic() - t0
    retries = sum(c.stats.retries for c in clients)
    for c in clients:
        await c.close()
    print(
        json.dumps(
            {
                "publishers": len(clients),
                "events": len(clients) * batches * size,
                "seconds": took,
                "errors": errors,
                "retries": retries,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    a = sys.argv
    ids = [PublisherIdentity.from_bundle(d) for d in sorted(Path(a[1]).iterdir())]
    asyncio.run(main(ids, a[2], int(a[3]), int(a[4])))
