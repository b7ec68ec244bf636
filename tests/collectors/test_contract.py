"""Every collector folder: registered, with a config section, and its README, its sample.toml and its
Config struct agree key by key and default by default."""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

import amoskys.collectors
from amoskys.collectors import registry as collector_registry
from amoskys.collectors.base import CollectorConfig
from amoskys.config import CollectorsConfig

COLLECTORS_DIR = Path(amoskys.collectors.__file__).parent
FOLDERS = sorted(p.name for p in COLLECTORS_DIR.iterdir() if (p / "collector.py").is_file())
README_SECTIONS = ("What it collects", "Configuration", "Events", "Metrics", "Privileges", "Troubleshooting")


def readme_config_table(text: str) -> dict[str, Any]:
    """The `| `key` | `default` | meaning |` rows of the README's Configuration section."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Any] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        key, default = cells[0].strip("`"), cells[1].strip("`")
        rows[key] = tomllib.loads(f"v = {default}")["v"]
    return rows


def test_there_is_at_least_one_collector() -> None:
    assert "heartbeat" in FOLDERS


def test_every_folder_is_registered_and_has_a_config_section() -> None:
    classes = collector_registry.classes()
    assert sorted(classes) == FOLDERS
    hints = typing.get_type_hints(CollectorsConfig)
    for name, cls in classes.items():
        assert cls.name == name
        assert cls.__module__ == f"amoskys.collectors.{name}.collector"
        assert issubclass(cls.Config, CollectorConfig)
        assert cls.Config.__struct_config__.frozen and cls.Config.__struct_config__.forbid_unknown_fields
        assert hints[name] is cls.Config, f"CollectorsConfig.{name} must be a {cls.Config.__name__}"
        assert getattr(CollectorsConfig(), name) == cls.Config()


@pytest.mark.parametrize("name", FOLDERS)
def test_sample_toml_is_exactly_the_collector_section_with_the_struct_defaults(name: str) -> None:
    spec = collector_registry.discover()[name]
    sample = tomllib.loads(spec.sample())
    assert sample == {"collectors": {name: msgspec.to_builtins(spec.config_type())}}, (
        f"{name}/sample.toml must be one [collectors.{name}] table holding every key of "
        f"{spec.config_type.__name__} with its default"
    )


@pytest.mark.parametrize("name", FOLDERS)
def test_readme_config_table_and_struct_agree(name: str) -> None:
    cls = collector_registry.classes()[name]
    defaults = msgspec.to_builtins(cls.Config())
    readme = (COLLECTORS_DIR / name / "README.md").read_text()
    table = readme_config_table(readme)
    assert list(table) == list(defaults), f"{name}/README.md config keys differ from the struct"
    assert table == defaults, f"{name}/README.md config defaults differ from the struct"
    for heading in README_SECTIONS:
        assert f"\n## {heading}\n" in readme, f"{name}/README.md lacks a '## {heading}' section"


def test_collector_config_errors_name_the_key_path() -> None:
    from amoskys.config import from_mapping
    from amoskys.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        from_mapping({"collectors": {"heartbeat": {"interval_seconds": 0}}})
    assert info.value.path == "collectors.heartbeat.interval_seconds"
    with pytest.raises(ConfigError) as info:
        from_mapping({"collectors": {"heartbeat": {"intervall_seconds": 5}}})
    assert info.value.path == "collectors.heartbeat.intervall_seconds" and "unknown key" in str(info.value)
    with pytest.raises(ConfigError, match="restart_max_seconds"):
        from_mapping({"collectors": {"restart_initial_seconds": 10, "restart_max_seconds": 5}})
