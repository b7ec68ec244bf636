"""MAC vendors from the IEEE registry as Debian's ieee-data ships it (oui.csv, mam.csv, oui36.csv).

The three files hold the MA-L (24-bit), MA-M (28-bit) and MA-S (36-bit) assignments; a lookup tries
the longest prefix first. A MAC whose locally-administered bit is set (randomized by phones and
laptops, or made up for virtual machines) has no vendor.
"""

from __future__ import annotations

import csv
from pathlib import Path

#: Bits of each registry's prefix, by the file name next to oui.csv.
_REGISTRIES = (("oui36.csv", 36), ("mam.csv", 28), ("oui.csv", 24))
PACKAGE = "ieee-data"


def locally_administered(mac: bytes) -> bool:
    """True when the MAC's U/L bit is set: not assigned by the IEEE (randomized or virtual)."""
    return bool(mac) and bool(mac[0] & 0x02)


def format_mac(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``."""
    return mac.hex(":")


class OuiRegistry:
    """Vendor names by MAC prefix; empty (every lookup "") when the files are missing."""

    def __init__(self, prefixes: dict[int, dict[int, str]] | None = None) -> None:
        #: bits → {prefix value → organization name}
        self.prefixes = prefixes or {}

    def __len__(self) -> int:
        return sum(len(table) for table in self.prefixes.values())

    @classmethod
    def load(cls, oui_csv: str | Path) -> OuiRegistry:
        """Read `oui_csv` and, beside it, mam.csv and oui36.csv when present (blocking: call it in a thread).

        Raises OSError when `oui_csv` itself cannot be read.
        """
        path = Path(oui_csv)
        prefixes: dict[int, dict[int, str]] = {}
        for name, bits in _REGISTRIES:
            file = path if name == "oui.csv" else path.with_name(name)
            if name != "oui.csv" and not file.is_file():
                continue
            prefixes[bits] = _read(file)
        return cls(prefixes)

    def vendor(self, mac: bytes) -> str:
        """The organization the MAC's prefix is assigned to; "" when unknown or locally administered."""
        if len(mac) != 6 or locally_administered(mac):
            return ""
        value = int.from_bytes(mac, "big")
        for bits in (36, 28, 24):
            table = self.prefixes.get(bits)
            if table:
                name = table.get(value >> (48 - bits))
                if name:
                    return name
        return ""


def _read(file: Path) -> dict[int, str]:
    table: dict[int, str] = {}
    with file.open(newline="", encoding="utf-8", errors="replace") as handle:
        for row in csv.reader(handle):
            if len(row) < 3 or row[0] == "Registry":
                continue
            try:
                table[int(row[1], 16)] = row[2].strip()
            except ValueError:
                continue
    return table
