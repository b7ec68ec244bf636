"""The sample config: assembled from amoskys/samples/ and each collector's sample.toml, it holds every
key of `Config` with its default and a comment, and the repository root's amoskys.toml is that file."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from amoskys import sample_config
from amoskys.collectors import registry
from amoskys.collectors.base import CollectorConfig
from amoskys.config import CollectorsPolicy, Config, from_mapping

ROOT = Path(__file__).resolve().parents[1]


def as_toml(struct: msgspec.Struct) -> Any:
    """A config struct as tomllib reads its sample: msgspec.to_builtins, with arrays as lists."""

    def lists(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: lists(item) for key, item in value.items()}
        if isinstance(value, tuple | list):
            return [lists(item) for item in value]
        return value

    return lists(msgspec.to_builtins(struct))


def leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every non-table value of parsed TOML (or to_builtins output), by dotted key path."""
    found: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            found |= leaves(value, path)
        else:
            found[path] = value
    return found


def uncommented_keys(text: str) -> list[str]:
    """The key lines of a TOML text whose previous line is not a comment."""
    lines = text.splitlines()
    return [
        line
        for i, line in enumerate(lines)
        if line.strip() and not line.startswith(("#", "[")) and (i == 0 or not lines[i - 1].startswith("#"))
    ]


PARTS = [f"samples/{name}.toml" for name in sample_config.CORE_SECTIONS] + [
    f"collectors/{name}/sample.toml" for name in registry.names()
]


def part_text(part: str) -> str:
    """One file the sample is assembled from, by its path in the package."""
    kind, name = part.split("/")[:2]
    if kind == "samples":
        return sample_config.core_section(name.removesuffix(".toml"))
    return registry.discover()[name].sample()


def test_root_amoskys_toml_is_the_assembled_sample() -> None:
    root = (ROOT / "amoskys.toml").read_text(encoding="utf-8")
    assert root == sample_config.assemble(), (
        "amoskys.toml at the repository root differs from the assembled sample: run make sample-config"
    )


def test_the_sample_holds_every_key_with_its_default() -> None:
    data = tomllib.loads(sample_config.assemble())
    shipped, defaults = leaves(data), leaves(as_toml(Config()))
    assert sorted(defaults.keys() - shipped.keys()) == [], "keys missing from the sample"
    assert sorted(shipped.keys() - defaults.keys()) == [], "keys in the sample that Config does not have"
    differ = {
        key: (shipped[key], defaults[key])
        for key in defaults
        if (type(shipped[key]), shipped[key]) != (type(defaults[key]), defaults[key])
    }
    assert differ == {}, "sample value (as written) and Config default differ"
    assert from_mapping(data, source="sample") == Config()


@pytest.mark.parametrize("name", [n for n in sample_config.CORE_SECTIONS if n != "header"])
def test_a_core_section_file_is_its_table_with_the_struct_defaults(name: str) -> None:
    # [collectors] holds only the restart policy: each collector's table comes from its own folder
    struct = CollectorsPolicy() if name == "collectors" else getattr(Config(), name)
    data = tomllib.loads(sample_config.core_section(name))
    assert data == {name: as_toml(struct)}, f"samples/{name}.toml differs from the struct"


def test_the_header_is_comments_only() -> None:
    header = sample_config.core_section("header")
    assert header.strip() and all(line.startswith("#") for line in header.splitlines())


@pytest.mark.parametrize("part", PARTS)
def test_every_key_in_a_sample_part_is_commented(part: str) -> None:
    assert uncommented_keys(part_text(part)) == [], f"{part}: keys without a comment line above"


def test_every_key_of_the_assembled_sample_is_commented() -> None:
    assert uncommented_keys(sample_config.assemble()) == []


def test_the_comment_check_sees_a_bare_key() -> None:
    assert uncommented_keys("[web]\n# where\nlisten = 1\ntls = 2\n") == ["tls = 2"]
    assert uncommented_keys("enabled = true\n") == ["enabled = true"]


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Replace the registry with collector folders made here: `registered(name=sample text or None)`."""
    monkeypatch.syspath_prepend(str(tmp_path))
    packages: list[str] = []

    def register(**samples: str | None) -> None:
        specs = {}
        for name, sample in samples.items():
            package = f"amoskys_sample_probe_{name}"
            (tmp_path / package).mkdir()
            (tmp_path / package / "__init__.py").write_text("")
            if sample is not None:
                (tmp_path / package / "sample.toml").write_text(sample)
            packages.append(package)
            specs[name] = registry.CollectorSpec(name, package, CollectorConfig)
        monkeypatch.setattr(registry, "discover", lambda: specs)

    yield register
    for package in packages:
        sys.modules.pop(package, None)


def test_a_collector_folder_without_sample_toml_is_named(registered: Callable[..., None]) -> None:
    registered(alpha="# A.\n[collectors.alpha]\n# Start it.\nenabled = true\n", gadget=None)
    with pytest.raises(
        registry.CollectorFolderError, match=r"collector folder 'gadget': has no sample\.toml"
    ):
        sample_config.assemble()


def test_collector_sections_are_the_registered_samples_in_registry_order(
    registered: Callable[..., None],
) -> None:
    beta = "# B.\n[collectors.beta]\n# Start it.\nenabled = false\n"
    alpha = "# A.\n[collectors.alpha]\n# Start it.\nenabled = true\n"
    registered(beta=beta, alpha=alpha)
    assembled = sample_config.assemble()
    assert assembled.startswith(sample_config.core_section("header"))
    assert assembled.endswith(f"\n\n{beta}\n{alpha}")
    assert tomllib.loads(assembled)["collectors"] == {
        **as_toml(CollectorsPolicy()),
        "beta": {"enabled": False},
        "alpha": {"enabled": True},
    }


def test_config_sample_command_prints_the_assembled_sample() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amoskys", "config", "sample"], capture_output=True, text=True, check=True
    )
    assert out.stdout == sample_config.assemble()
