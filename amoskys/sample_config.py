"""The commented sample config (`amoskys config sample`), assembled from package data.

The core sections are ``amoskys/samples/<section>.toml``, in the order of ``CORE_SECTIONS``; then
comes each registered collector's ``sample.toml`` (its ``[collectors.<name>]`` section), in registry
order. One blank line separates two parts. Only importlib.resources reads them, so a zipapp works too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from amoskys.collectors import registry

CORE_SECTIONS = (
    "header",
    "appliance",
    "web",
    "bus",
    "store",
    "forwarders",
    "sources",
    "detections",
    "sinks",
    "collectors",
)


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


#: The agent's sample (`amoskys config sample --agent`, the root agent.toml): its own header, appliance
#: and web parts (an agent has no dashboard), the store and forwarders as the appliance's, no [bus] and no
#: [detections] (the appliance evaluates the agent's events), no [sinks] (an agent raises no alerts).
AGENT_SECTIONS = ("agent_header", "agent_appliance", "agent_web", "store", "forwarders", "collectors")


def agent_parts() -> list[str]:
    """The agent sample's parts, in order (a core part this build lacks is left out)."""
    root = resources.files("amoskys").joinpath("samples")
    core = [core_section(name) for name in AGENT_SECTIONS if root.joinpath(f"{name}.toml").is_file()]
    return core + [spec.sample() for spec in registry.discover().values()]


def assemble_agent() -> str:
    """The agent's sample: the parts above, each value the agent's default (amoskys.agent.defaults)."""
    from amoskys.agent import defaults

    text = "\n".join(part.strip("\n") + "\n" for part in agent_parts())
    return with_values(text, defaults())


def with_values(text: str, tables: Mapping[str, Any], prefix: str = "") -> str:
    """`text` (a sample) with the value of each key in `tables` (TOML-shaped) rewritten in its table;
    a key the sample does not hold is a LookupError (the sample would then not show that default)."""
    for key, value in tables.items():
        if isinstance(value, Mapping):
            text = with_values(text, value, f"{prefix}.{key}" if prefix else key)
            continue
        header = f"[{prefix}]\n"
        start = text.find(header)
        end = text.find("\n[", start + len(header)) if start >= 0 else -1
        end = len(text) if end < 0 else end
        section = text[start:end] if start >= 0 else ""
        line = re.search(rf"^{re.escape(key)} = .*$", section, flags=re.M)
        if line is None:
            raise LookupError(f"the sample has no key {key!r} in [{prefix}]")
        section = section[: line.start()] + f"{key} = {_toml_value(value)}" + section[line.end() :]
        text = text[:start] + section + text[end:]
    return text


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no TOML form for {value!r} here")
