"""Run by the zipapp's bootstrap (shiv) before `amoskys`: refuse, with the reason, an interpreter or
CPU architecture the file holds no native extensions for, instead of failing later on an import.

shiv passes `site_packages` (the extracted tree, where build_pyz.py wrote pyz-targets.json)."""

import json
import platform
import sys
from pathlib import Path

_targets = json.loads((Path(site_packages) / "pyz-targets.json").read_text())  # type: ignore[name-defined]  # noqa: F821
_python = f"{sys.version_info.major}.{sys.version_info.minor}"
if sys.implementation.name != "cpython" or _python not in _targets["pythons"]:
    sys.exit(
        f"amoskys: error: this file runs on CPython {', '.join(_targets['pythons'])}, not "
        f"{sys.implementation.name} {_python} ({sys.executable}); run it with a supported python3"
    )
if platform.machine() != _targets["arch"]:
    sys.exit(
        f"amoskys: error: this file is built for {_targets['arch']}, this machine is "
        f"{platform.machine()}; use the amoskys-{platform.machine()}.pyz build"
    )
