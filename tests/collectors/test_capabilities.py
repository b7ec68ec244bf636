"""Capabilities from /proc/self/status: what self_check() relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from amoskys.collectors import capabilities

STATUS = "Name:\tamoskys\nCapInh:\t0000000000000000\nCapEff:\t{mask}\nCapBnd:\t000001ffffffffff\n"


def test_parse_names_each_bit() -> None:
    assert capabilities.parse_cap_eff(STATUS.format(mask="0000000000002000")) == {"CAP_NET_RAW"}
    assert capabilities.parse_cap_eff(STATUS.format(mask="0000000000003000")) == {
        "CAP_NET_RAW",
        "CAP_NET_ADMIN",
    }
    assert capabilities.parse_cap_eff(STATUS.format(mask="0000000000000000")) == frozenset()
    assert capabilities.parse_cap_eff(STATUS.format(mask="000001ffffffffff")) == set(
        capabilities.CAPABILITIES
    )


def test_no_proc_means_no_capabilities(tmp_path: Path) -> None:
    assert capabilities.effective_capabilities(tmp_path / "missing") == frozenset()


def test_this_process_reads_its_own_set() -> None:
    mine = capabilities.effective_capabilities()
    assert capabilities.has_capability("CAP_NET_RAW") == ("CAP_NET_RAW" in mine)


def test_unknown_capability_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown capability 'NET_RAW'"):
        capabilities.has_capability("NET_RAW")
