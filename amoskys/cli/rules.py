"""`amoskys rules check PATH…`: load Sigma rule files as the appliance would and say, for each rule,
whether it is evaluated and why not.

Without PATH it checks the config's `[detections] sigma_paths`.

Exit codes: 0 every rule loads; 1 some rule is unsupported (or no rule was found); 2 a file is not valid
YAML or not a valid Sigma rule (or a path is missing, or there is nothing to check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from amoskys.cli.common import SubParsers


def add_parser(sub: SubParsers) -> None:
    rules = sub.add_parser("rules", help="Sigma detection rules").add_subparsers(
        dest="rules_command", required=True, metavar="ACTION"
    )
    p = rules.add_parser(
        "check",
        help="load Sigma rule files and report each rule as loaded, unsupported (why) or invalid",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="a rule file or a directory of them (default: `[detections] sigma_paths` of the config)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--config", metavar="FILE", help="TOML config file whose sigma_paths to check when no PATH"
    )
    p.set_defaults(func=cmd_rules_check)


def cmd_rules_check(args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths
    if not paths:
        from amoskys.cli.common import load_config

        paths = [Path(p) for p in load_config(args).detections.sigma_paths]
        if not paths:
            print("amoskys: error: no PATH given and `[detections] sigma_paths` is empty", file=sys.stderr)
            return 2
    return check(paths, as_json=args.json)


def check(paths: list[Path], *, as_json: bool = False, out: TextIO | None = None) -> int:
    from amoskys.detections.sigma import check as report
    from amoskys.detections.sigma.engine import load_rules

    out = out or sys.stdout
    result = load_rules(paths)
    if as_json:
        out.write(json.dumps(report.as_json(result), indent=2) + "\n")
    else:
        out.write(report.as_text(result))
    return report.exit_code(result)
