"""Attack: hundreds of concurrent wrong-password logins from one address. The throttle used to be
checked before the hashing queue and failures recorded after it, so every concurrent guess was
evaluated and the real admin, logging in from elsewhere, waited behind all of them. Now at most the
limit is evaluated, the rest are refused without hashing, and the admin gets in at once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx
import pytest

from amoskys.web.auth import ADDR_MAX_FAILURES, PAIR_MAX_FAILURES

from support import RunningAppliance

pytestmark = [pytest.mark.e2e]

WORKERS = 200  # concurrent attacker connections, each sending guess after guess
MIN_GUESSES = 200
ADMIN_BOUND_S = 2.0


async def _metric(client: httpx.AsyncClient, name: str) -> float | None:
    text = (await client.get("/metrics")).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def _admin_login(app: RunningAppliance) -> tuple[int, float]:
    """Log in as admin from 127.0.0.2 (another source address than the attacker's): status, seconds."""
    password = (app.data_dir / "admin-password").read_text().strip()
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, base_url=app.web_url, timeout=60) as admin:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await admin.post("/api/v1/login", json={"name": "admin", "password": password})
        return r.status_code, loop.time() - t0


@pytest.mark.parametrize(
    ("accounts", "limit"),
    [("one", PAIR_MAX_FAILURES), ("many", ADDR_MAX_FAILURES)],
    ids=["one-account", "many-accounts"],
)
async def test_concurrent_guesses_beyond_the_limit_are_refused_unhashed_and_the_admin_gets_in(
    appliance_factory, accounts: str, limit: int
) -> None:
    app = appliance_factory()
    await asyncio.to_thread(app.wait_ready)
    statuses: Counter[int] = Counter()
    answered = asyncio.Event()
    admin_done = asyncio.Event()
    sent = 0

    async with httpx.AsyncClient(
        base_url=app.web_url,
        limits=httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS),
        timeout=120,
    ) as attacker:
        checks_before = await _metric(attacker, "amoskys_web_password_checks_total")

        async def guesser() -> None:
            nonlocal sent
            while not (admin_done.is_set() and sent >= MIN_GUESSES):
                i, sent = sent, sent + 1
                name = "admin" if accounts == "one" else f"user-{i}"
                r = await attacker.post("/api/v1/login", json={"name": name, "password": f"guess-{i}"})
                statuses[r.status_code] += 1
                answered.set()

        flood = [asyncio.create_task(guesser()) for _ in range(WORKERS)]
        try:
            await asyncio.wait_for(answered.wait(), timeout=120)  # the flood is on
            status, took = await _admin_login(app)
            admin_done.set()
            await asyncio.wait_for(asyncio.gather(*flood), timeout=300)
        finally:
            for task in flood:
                task.cancel()
        checks_after = await _metric(attacker, "amoskys_web_password_checks_total")

    seen = f"answers {dict(statuses)}; the admin's login from 127.0.0.2: {status} in {took:.2f} s"
    assert statuses[401] == limit, f"{statuses[401]} guesses were evaluated (limit {limit}): {seen}"
    assert set(statuses) == {401, 429}, seen
    assert status == 200, f"the admin's login from 127.0.0.2 got {status}"
    assert took < ADMIN_BOUND_S, f"the admin's login took {took:.2f} s during the flood"
    assert checks_before is not None and checks_after is not None, "no amoskys_web_password_checks_total"
    checks = checks_after - checks_before
    assert checks == limit + 1, f"{checks} passwords hashed: {limit} guesses and the admin's expected"
