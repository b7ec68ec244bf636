"""The descriptor budget: the bus gets what the store, collectors, control socket and web port leave."""

from __future__ import annotations

import resource

import pytest

from amoskys import fd_budget
from amoskys.errors import ConfigError


def test_the_bus_gets_what_the_other_parts_leave() -> None:
    b = fd_budget.plan(limit=1024, raised_from=1024, open_at_start=20, collectors=6, configured_bus=0)
    fixed = 20 + fd_budget.HEADROOM_FDS + fd_budget.STORE_FDS + 6 * fd_budget.COLLECTOR_FDS
    fixed += fd_budget.CONTROL_FDS
    assert b.web_connections == (1024 - fixed) // 4
    assert b.bus_connections == 1024 - fixed - b.web_connections
    assert b.bus_from == "derived"
    assert fixed + b.web_connections + b.bus_connections == b.limit


def test_a_high_limit_caps_the_derived_bus_and_the_web_port() -> None:
    b = fd_budget.plan(limit=1 << 20, raised_from=1024, open_at_start=20, collectors=6, configured_bus=0)
    assert b.web_connections == fd_budget.WEB_MAX_CONNECTIONS
    assert b.bus_connections == fd_budget.BUS_DEFAULT_MAX_CONNECTIONS
    configured = fd_budget.plan(
        limit=1 << 20, raised_from=1024, open_at_start=20, collectors=6, configured_bus=20_000
    )
    assert configured.bus_connections == 20_000 and configured.bus_from == "config"


def test_a_configured_bus_limit_beyond_the_budget_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"bus\.max_connections: 5000 is more than the \d+ descriptors"):
        fd_budget.plan(limit=1024, raised_from=1024, open_at_start=20, collectors=6, configured_bus=5000)


def test_a_limit_too_low_to_share_is_refused_saying_how_much_is_needed() -> None:
    with pytest.raises(ConfigError, match=r"RLIMIT_NOFILE\) is 256: the appliance needs at least \d+"):
        fd_budget.plan(limit=256, raised_from=256, open_at_start=20, collectors=6, configured_bus=0)


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lower = min(soft, 512)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
        before, now = fd_budget.raise_soft_limit()
        assert before == lower
        assert now == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert now == (hard if hard != resource.RLIM_INFINITY else fd_budget.UNLIMITED_TARGET)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_fds_counts_this_processes_descriptors() -> None:
    before = fd_budget.open_fds()
    with open(__file__, "rb"), open(__file__, "rb"):
        assert fd_budget.open_fds() == before + 2
