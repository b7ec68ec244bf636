"""The live tests here use the collectors' test rigs (veth pairs, namespaced LANs, snmpd): their folders
join sys.path as they do when pytest collects those tests."""

from __future__ import annotations

import sys
from pathlib import Path

_COLLECTORS = Path(__file__).resolve().parents[2] / "collectors"
for _name in ("flow", "discovery", "snmp"):
    _path = str(_COLLECTORS / _name)
    if _path not in sys.path:
        sys.path.append(_path)
