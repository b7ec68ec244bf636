"""Where an appliance or agent keeps its files: data dir resolution and the layout inside it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from amoskys.errors import DataDirError

Mode = Literal["appliance", "agent"]


def resolve_data_dir(
    flag: str | None, configured: str, env: Mapping[str, str], *, mode: Mode = "appliance"
) -> tuple[Path, str]:
    """Resolve the data dir (DESIGN §5b) and say which rule chose it.

    --data-dir > AMOSKYS_DATA_DIR > config file > $STATE_DIRECTORY (systemd) > /var/lib/amoskys when
    root > the per-user default ($XDG_STATE_HOME/amoskys, else ~/.local/state/amoskys). Agent mode uses
    its own directory ("amoskys-agent") so it never shares the appliance's.
    """
    name = "amoskys" if mode == "appliance" else "amoskys-agent"
    if flag:
        return Path(flag).expanduser().absolute(), "--data-dir"
    if env.get("AMOSKYS_DATA_DIR"):
        return Path(env["AMOSKYS_DATA_DIR"]).expanduser().absolute(), "AMOSKYS_DATA_DIR"
    if configured:
        return Path(configured).expanduser().absolute(), "config appliance.data_dir"
    if env.get("STATE_DIRECTORY"):
        # systemd may pass several, colon-separated; the first is ours
        return Path(env["STATE_DIRECTORY"].split(":")[0]) / ("" if mode == "appliance" else name), (
            "STATE_DIRECTORY"
        )
    if os.geteuid() == 0:
        return Path("/var/lib") / name, "root default"
    state_home = env.get("XDG_STATE_HOME") or ""
    if state_home:
        return Path(state_home) / name, "per-user default ($XDG_STATE_HOME)"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "state" / name, "per-user default (~/.local/state)"


@dataclass(frozen=True)
class Layout:
    """The files inside one data dir."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def db(self) -> Path:
        return self.root / "events.db"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def control_socket(self) -> Path:
        return self.root / "control.sock"

    def ensure(self) -> None:
        """Create the data dir (0700), tighten an existing one (and its pki dir) to 0700, or raise
        DataDirError saying why it cannot be used."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            _tighten(self.root)
            self.pki.mkdir(mode=0o700, exist_ok=True)
            _tighten(self.pki)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise DataDirError(
                f"data dir {self.root} cannot be used: {err.strerror or err}", path=str(self.root)
            ) from err


def _tighten(path: Path) -> None:
    """Make the directory `path` 0700 (systemd's StateDirectory= and a plain mkdir leave 0755, and
    the store's files would be one `cd` away from every local user); raise DataDirError naming the
    fix when it is not ours to chmod."""
    st = path.stat()
    if st.st_mode & 0o777 == 0o700:
        return
    try:
        path.chmod(0o700)
    except PermissionError as err:
        raise DataDirError(
            f"data dir {path} is mode {st.st_mode & 0o777:04o} and cannot be made 0700 "
            f"({err.strerror}): it is owned by uid {st.st_uid}, amoskys runs as uid {os.geteuid()}; "
            f"fix: chown -R {os.geteuid()} {path} (or chmod 0700 it as its owner)",
            path=str(path),
        ) from err
