"""The entry point: what it sets up before any command runs."""

from __future__ import annotations

import subprocess
import sys

from amoskys.cli import quiet_grpc_core


def test_grpc_core_is_quiet_by_default_and_an_operators_values_win() -> None:
    env: dict[str, str] = {}
    quiet_grpc_core(env)
    assert env == {"GRPC_VERBOSITY": "ERROR", "GRPC_ENABLE_FORK_SUPPORT": "false"}
    env = {"GRPC_VERBOSITY": "INFO"}
    quiet_grpc_core(env)
    assert env["GRPC_VERBOSITY"] == "INFO"


def test_the_entry_point_sets_it_before_grpc_is_imported() -> None:
    code = (
        "import os, sys; from amoskys import cli; cli.main(['config', 'sample']) ;"
        "assert 'grpc' not in sys.modules or os.environ['GRPC_VERBOSITY'] == 'ERROR';"
        "import grpc; print(os.environ['GRPC_VERBOSITY'], os.environ['GRPC_ENABLE_FORK_SUPPORT'])"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.splitlines()[-1] == "ERROR false"
