"""The collector registry: folders found by scanning the package, their config composed into [collectors]."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import amoskys.collectors as collectors_package
from amoskys.collectors import registry
from amoskys.collectors.base import CollectorConfig
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.registry import CollectorFolderError
from amoskys.config import Config, from_mapping
from amoskys.errors import ConfigError

SHIPPED = ["discovery", "flow", "heartbeat", "host", "process", "snmp"]

CONFIG = """
from amoskys.collectors.base import CollectorConfig

class {cls}(CollectorConfig, frozen=True):
    size: int = 3
"""
COLLECTOR = """
from amoskys.collectors.{folder}.config import {cls}

class Probe:
    name = "{name}"
    Config = {cls}
    mode = "test"

    def __init__(self, config, ctx):
        pass

    async def run(self):
        pass
"""


@pytest.fixture
def extra_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on the collectors package path whose folders the scan sees (uncached)."""
    monkeypatch.setattr(collectors_package, "__path__", [*collectors_package.__path__, str(tmp_path)])
    before = set(sys.modules)
    yield tmp_path
    for module in set(sys.modules) - before:
        if module.startswith("amoskys.collectors.zz"):
            del sys.modules[module]


def folder(root: Path, name: str, files: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for file, text in files.items():
        (root / name / file).write_text(text)


def test_the_shipped_collectors_are_found_by_scanning_the_package() -> None:
    specs = registry.discover()
    assert list(specs) == SHIPPED
    assert specs["flow"].package == "amoskys.collectors.flow" and specs["flow"].config_type is FlowConfig
    assert {name: cls.name for name, cls in registry.classes().items()} == {n: n for n in SHIPPED}
    # helper packages without a collector.py are not collectors
    assert all((Path(collectors_package.__path__[0]) / name / "collector.py").is_file() for name in specs)


def test_a_new_folder_is_registered_and_a_helper_package_is_not(extra_folders: Path) -> None:
    folder(
        extra_folders,
        "zzprobe",
        {
            "config.py": CONFIG.format(cls="ZzConfig"),
            "collector.py": COLLECTOR.format(folder="zzprobe", name="zzprobe", cls="ZzConfig"),
        },
    )
    folder(extra_folders, "zzhelper", {"util.py": "X = 1\n"})
    specs = registry.discover.__wrapped__()
    assert list(specs) == [*SHIPPED, "zzprobe"]
    spec = specs["zzprobe"]
    assert issubclass(spec.config_type, CollectorConfig) and spec.config_type().size == 3
    assert spec.load().name == "zzprobe"


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"collector.py": ""}, "has no config.py"),
        (
            {"collector.py": "", "config.py": "X = 1\n"},
            "config.py must define one CollectorConfig subclass, found 0",
        ),
        (
            {"collector.py": "", "config.py": CONFIG.format(cls="A") + CONFIG.format(cls="B")},
            "config.py must define one CollectorConfig subclass, found 2",
        ),
    ],
)
def test_a_folder_that_breaks_the_contract_is_named(
    extra_folders: Path, files: dict[str, str], problem: str
) -> None:
    folder(extra_folders, "zzbroken", files)
    with pytest.raises(CollectorFolderError) as info:
        registry.discover.__wrapped__()
    assert str(info.value) == f"collector folder 'zzbroken': {problem}"


def test_a_collector_class_must_carry_the_folder_name_and_its_config(extra_folders: Path) -> None:
    folder(
        extra_folders,
        "zzmisnamed",
        {
            "config.py": CONFIG.format(cls="ZzConfig"),
            "collector.py": COLLECTOR.format(folder="zzmisnamed", name="other", cls="ZzConfig"),
        },
    )
    spec = registry.discover.__wrapped__()["zzmisnamed"]
    with pytest.raises(CollectorFolderError, match="must define one class with name = 'zzmisnamed', found 0"):
        spec.load()


def test_collectors_config_is_composed_from_each_folders_struct() -> None:
    config = from_mapping({"collectors": {"flow": {"max_flows": 7}, "max_fast_failures": 2}})
    flow = config.collectors.section(FlowConfig)
    assert isinstance(flow, FlowConfig) and flow.max_flows == 7
    assert config.collectors.max_fast_failures == 2
    assert config.collectors.section_named("heartbeat") == registry.discover()["heartbeat"].config_type()
    assert Config().collectors.section(FlowConfig) == FlowConfig()


def test_config_errors_keep_the_full_key_path_through_a_collectors_struct() -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({"collectors": {"flow": {"ring_size_mib": 0}}})
    assert info.value.path == "collectors.flow.ring_size_mib"
    assert str(info.value).startswith("collectors.flow.ring_size_mib: Expected `int` >= 1")


def test_an_unknown_collector_table_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({"collectors": {"flwo": {"interface": "eth0"}}})
    assert str(info.value) == (
        "collectors.flwo: unknown collector (known: discovery, flow, heartbeat, host, process, snmp)"
    )
    assert info.value.path == "collectors.flwo"
