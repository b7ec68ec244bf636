"""The commented sample config (`amoskys config sample`), assembled from package data.

The core sections are ``amoskys/samples/<section>.toml``, in the order of ``CORE_SECTIONS``; then
comes each registered collector's ``sample.toml`` (its ``[collectors.<name>]`` section), in registry
order. One blank line separates two parts. Only importlib.resources reads them, so a zipapp works too.
"""

from __future__ import annotations

from importlib import resources

from amoskys.collectors import registry

CORE_SECTIONS = ("header", "appliance", "web", "bus", "store", "collectors")


def core_section(name: str) -> str:
    """The text of ``amoskys/samples/<name>.toml``."""
    return resources.files("amoskys").joinpath("samples").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def parts() -> list[str]:
    """Every part of the sample, in order: the core sections, then one per registered collector."""
    core = [core_section(name) for name in CORE_SECTIONS]
    return core + [spec.sample() for spec in registry.discover().values()]


def assemble() -> str:
    """The whole sample: every key, commented, with its default."""
    return "\n".join(part.strip("\n") + "\n" for part in parts())
