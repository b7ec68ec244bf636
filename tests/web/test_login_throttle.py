"""The login throttle under concurrency (amoskys/web/auth.py): an attempt takes its slot before it
awaits anything, so concurrent guesses beyond the limit are refused unhashed; one address hashes one
password at a time; over-long fields are refused before hashing."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from amoskys.web import passwords
from amoskys.web.auth import ADDR_MAX_FAILURES, PAIR_MAX_FAILURES, PAIR_WINDOW_S

from support import eventually
from web_harness import Web


def _sample(web: Web, name: str, labels: dict[str, str] | None = None) -> float:
    return web.ctx.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def _burst(client: httpx.AsyncClient, names: list[str]) -> Counter[int]:
    answers = await asyncio.gather(
        *(
            client.post("/api/v1/login", json={"name": n, "password": f"guess-{i}"})
            for i, n in enumerate(names)
        )
    )
    return Counter(r.status_code for r in answers)


@pytest.mark.parametrize(
    ("names", "limit"),
    [(["admin"] * 60, PAIR_MAX_FAILURES), ([f"user-{i}" for i in range(60)], ADDR_MAX_FAILURES)],
    ids=["one-account", "many-accounts"],
)
async def test_concurrent_guesses_beyond_the_limit_are_refused_before_hashing(
    web: Web, names: list[str], limit: int
) -> None:
    checks = _sample(web, "amoskys_web_password_checks_total")
    answers = await _burst(web.client("198.51.100.8"), names)
    assert answers == {401: limit, 429: len(names) - limit}
    assert _sample(web, "amoskys_web_password_checks_total") - checks == limit
    assert _sample(web, "amoskys_web_logins_total", {"outcome": "throttled"}) == len(names) - limit
    assert not web.ctx.auth._tallies, "a throttle tally outlived its logins"


async def test_failures_stored_before_count_against_concurrent_guesses(web: Web) -> None:
    for _ in range(PAIR_MAX_FAILURES - 2):
        await web.ctx.store.state.record_login_failure(
            "pair:viewer@198.51.100.9",
            window_ns=PAIR_WINDOW_S * 10**9,
            max_failures=PAIR_MAX_FAILURES,
            lockout_ns=600 * 10**9,
        )
    answers = await _burst(web.client("198.51.100.9"), ["viewer"] * 10)
    assert answers == {401: 2, 429: 8}
    # the lock is stored: a later attempt is refused too
    assert (await _burst(web.client("198.51.100.9"), ["viewer"])) == {429: 1}


async def test_one_address_cannot_take_every_hashing_slot(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    real_verify = passwords.verify_password
    blocked: list[asyncio.Event] = []
    release = False

    async def verify(password: str, encoded: str) -> bool:
        if password == web.admin_password or release:
            return await real_verify(password, encoded)
        gate = asyncio.Event()
        blocked.append(gate)
        await gate.wait()  # this guess holds a hashing slot until the test lets it go
        return False

    monkeypatch.setattr(passwords, "verify_password", verify)
    attacker = web.client("198.51.100.10")
    guesses = asyncio.ensure_future(_burst(attacker, [f"user-{i}" for i in range(10)]))
    await eventually(lambda: blocked, what="the attacker's first hash to start")
    admin = web.client("192.0.2.50")
    r = await asyncio.wait_for(
        admin.post("/api/v1/login", json={"name": "admin", "password": web.admin_password}), timeout=30
    )
    assert r.status_code == 200
    assert len(blocked) == 1, "one address held more than one hashing slot"
    release = True
    for gate in blocked:
        gate.set()
    assert await guesses == {401: 10}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "n" * 65, "name: at most 64 characters (got 65)"),
        ("password", "p" * 1025, "password: at most 1024 characters (got 1025)"),
        ("password", "", "name and password are required"),
    ],
)
async def test_over_long_fields_are_refused_with_400_before_hashing(
    web: Web, field: str, value: str, message: str
) -> None:
    checks = _sample(web, "amoskys_web_password_checks_total")
    fields = {"name": "admin", "password": "p"} | {field: value}
    r = await web.client().post("/api/v1/login", json=fields)
    assert (r.status_code, r.json()) == (400, {"error": message})
    page = await web.client().post("/login", data=fields)
    assert page.status_code == 400 and message in page.text
    assert _sample(web, "amoskys_web_password_checks_total") == checks
    assert _sample(web, "amoskys_web_logins_total", {"outcome": "invalid"}) == 2
    longest = await web.client().post("/api/v1/login", json={"name": "admin", "password": "p" * 1024})
    assert longest.status_code == 401  # the longest allowed password is checked like any other
