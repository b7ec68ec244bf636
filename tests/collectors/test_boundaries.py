"""No core module names a collector: adding one is adding a folder (import analysis of every module)."""

from __future__ import annotations

import ast
from pathlib import Path

import amoskys
from amoskys.collectors import registry

PACKAGE_DIR = Path(amoskys.__file__).parent
COLLECTORS = set(registry.names())


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` in `path` names (submodules of a from-import too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def collector_named(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["amoskys", "collectors"] and len(parts) > 2 and parts[2] in COLLECTORS:
        return parts[2]
    return None


def owner(path: Path, package_dir: Path = PACKAGE_DIR) -> str | None:
    """The collector folder `path` belongs to, or None for a core module."""
    parts = path.relative_to(package_dir).parts
    return parts[1] if len(parts) > 2 and parts[0] == "collectors" and parts[1] in COLLECTORS else None


def violations(package_dir: Path = PACKAGE_DIR) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if path.relative_to(package_dir).parts[0] == "proto":
            continue  # generated code
        mine = owner(path, package_dir)
        for module in sorted(imported_modules(path)):
            named = collector_named(module)
            if named is not None and named != mine:
                found.append(f"{path.relative_to(package_dir).as_posix()} imports {module}")
    return found


def test_the_analysis_sees_collectors_and_their_imports() -> None:
    assert {"discovery", "flow", "heartbeat", "host", "process", "snmp"} <= COLLECTORS
    flow_collector = PACKAGE_DIR / "collectors" / "flow" / "collector.py"
    assert "amoskys.collectors.flow.config" in imported_modules(flow_collector)
    assert owner(flow_collector) == "flow" and owner(PACKAGE_DIR / "config.py") is None


def test_no_core_module_and_no_other_collector_imports_a_collector() -> None:
    assert violations() == []


def test_a_module_importing_another_folders_collector_is_caught(tmp_path: Path) -> None:
    files = {
        "config.py": "from amoskys.collectors.flow.config import FlowConfig\n",
        "web/pages.py": "def f():\n    import amoskys.collectors.snmp.cli\n",
        "collectors/flow/collector.py": "from amoskys.collectors.flow import parse\n",
        "collectors/discovery/collector.py": "from amoskys.collectors import flow, taps\n",
        "collectors/taps.py": "from amoskys.collectors.base import CollectorConfig\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert violations(tmp_path) == [
        "collectors/discovery/collector.py imports amoskys.collectors.flow",
        "config.py imports amoskys.collectors.flow.config",
        "config.py imports amoskys.collectors.flow.config.FlowConfig",
        "web/pages.py imports amoskys.collectors.snmp.cli",
    ]
