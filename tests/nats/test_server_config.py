"""The shipped nats-server config (packaging/nats/nats-server.conf) is one nats-server accepts, with
JetStream on file storage, and its commented fsync choice is valid too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nats_harness import NATS_SERVER

CONF = Path(__file__).resolve().parents[2] / "packaging" / "nats" / "nats-server.conf"
PASSWORDS = {
    name: "x"
    for name in (
        "AMOSKYS_NATS_ADMIN_PASSWORD",
        "AMOSKYS_NATS_HUB_PASSWORD",
        "AMOSKYS_NATS_BOX1_PASSWORD",
        "AMOSKYS_NATS_BOX2_PASSWORD",
    )
}


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NATS_SERVER), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        env=os.environ | PASSWORDS,
        timeout=30,
    )


def test_the_shipped_server_config_is_valid_with_file_storage() -> None:
    text = CONF.read_text()
    assert 'store_dir: "/var/lib/nats/jetstream"' in text and "jetstream {" in text
    result = check(CONF)
    assert result.returncode == 0, result.stdout + result.stderr


def test_its_sync_interval_always_line_is_valid_when_uncommented(tmp_path: Path) -> None:
    text = CONF.read_text()
    assert "  # sync_interval: always\n" in text
    conf = tmp_path / "nats-server.conf"
    conf.write_text(text.replace("  # sync_interval: always\n", "  sync_interval: always\n"))
    (tmp_path / "accounts.conf").write_text((CONF.parent / "accounts.conf").read_text())
    result = check(conf)
    assert result.returncode == 0, result.stdout + result.stderr
