"""Build the single-file appliance: a shiv zipapp holding amoskys and every runtime dependency.

    python scripts/build_pyz.py [--arch x86_64|aarch64] [--out dist/amoskys.pyz]

One file per CPU architecture, each carrying the CPython 3.11, 3.12 and 3.13 wheels (manylinux, glibc
>= 2.28) of the dependencies side by side: a native extension's file name carries its Python version
(``_core.cpython-312-x86_64-linux-gnu.so``), and an abi3 one is the same file for every version, so
the three install trees merge into one site-packages; any other file that differs between them stops
the build. Architectures cannot share a file: an abi3 extension (cryptography's ``_rust.abi3.so``) has
the same name on x86_64 and aarch64.

Versions are pinned to what the build's own environment (the dev venv) has installed, so every
target gets the versions the test suite ran against. Downloaded wheels and the merged third-party tree
are cached under build/pyz/ (git-ignored), keyed by the requirements, the pins and the targets:
a rebuild after a code change only re-packs amoskys itself.

At run time shiv extracts the tree once to $SHIV_ROOT (default ~/.shiv) under a directory named by
the build's content hash, so the .pyz itself may sit on a read-only file system.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "pyz"
PYTHONS = ("3.11", "3.12", "3.13")
#: manylinux tags accepted, newest first: glibc 2.28 or later (Debian 10+, Ubuntu 20.04+, RHEL 8+)
GLIBC = ("2_28", "2_27", "2_26", "2_25", "2_24", "2_17", "2_12", "2_5")
LEGACY = {"2_17": "manylinux2014", "2_12": "manylinux2010", "2_5": "manylinux1"}
PREAMBLE = ROOT / "scripts" / "pyz_preamble.py"


def platforms(arch: str) -> list[str]:
    tags = [f"manylinux_{g}_{arch}" for g in GLIBC]
    tags += [f"{LEGACY[g]}_{arch}" for g in GLIBC if g in LEGACY and (arch == "x86_64" or g == "2_17")]
    return tags


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"])


def pins() -> list[str]:
    """name==version of every distribution installed beside this interpreter, amoskys excepted."""
    found = {
        dist.metadata["Name"].lower(): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != "amoskys"
    }
    return [f"{name}=={version}" for name, version in sorted(found.items())]


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    subprocess.run(cmd, check=True)


def target_args(arch: str, python: str) -> list[str]:
    abi = "cp" + python.replace(".", "")
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python, "--abi", abi]
    args += ["--abi", "abi3", "--abi", "none"]
    for tag in platforms(arch):
        args += ["--platform", tag]
    return args


def third_party_site(arch: str) -> Path:
    """The merged site-packages of every dependency for `arch` (all PYTHONS), built once per key."""
    reqs, constraints = requirements(), pins()
    key = hashlib.sha256(json.dumps([reqs, constraints, PYTHONS, platforms(arch)]).encode()).hexdigest()[:16]
    merged = CACHE / f"site-{arch}-{key}"
    if merged.is_dir():
        return merged
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="tmp-") as tmp:
        work = Path(tmp)
        (work / "requirements.txt").write_text("\n".join(reqs) + "\n")
        (work / "constraints.txt").write_text("\n".join(constraints) + "\n")
        common = ["-r", str(work / "requirements.txt"), "-c", str(work / "constraints.txt")]
        # a dependency published only as source (nkeys) is built into a wheel here; a pure-Python one
        # (py3-none-any) then serves every target, and one with native code fails the download below
        local = CACHE / "wheels" / "built"
        if not (local / f".{key}").exists():
            pip("wheel", "--wheel-dir", str(local), *common)
            (local / f".{key}").touch()
        common += ["--find-links", str(local)]
        for python in PYTHONS:
            tag = f"cp{python.replace('.', '')}-{arch}"
            wheels = CACHE / "wheels" / tag
            stamp = wheels / f".{key}"
            if not stamp.exists():
                print(f"downloading wheels for {tag}", flush=True)
                pip("download", "--dest", str(wheels), *target_args(arch, python), *common)
                stamp.touch()
            tree = work / tag
            pip(
                "install", "--no-index", "--find-links", str(wheels), "--target", str(tree),
                "--no-compile", *target_args(arch, python), *common,
            )  # fmt: skip
            merge(tree, work / "site")
        # console scripts of the dependencies: the zipapp runs only amoskys
        shutil.rmtree(work / "site" / "bin", ignore_errors=True)
        try:
            (work / "site").rename(merged)
        except OSError:  # a concurrent build got there first: same key, same content
            if not merged.is_dir():
                raise
    for stale in CACHE.glob(f"site-{arch}-*"):  # trees of earlier pins: ~150 MB each
        if stale != merged:
            shutil.rmtree(stale, ignore_errors=True)
    return merged


def merge(tree: Path, into: Path) -> None:
    """Copy `tree` into `into`; a file present in both must be identical, except wheel metadata."""
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        dest = into / rel
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        elif not filecmp.cmp(path, dest, shallow=False) and not rel.parts[0].endswith(".dist-info"):
            raise SystemExit(f"build_pyz: {rel} differs between Python versions; one file cannot hold both")


def build(arch: str, out: Path) -> None:
    """Write the zipapp for `arch` to `out` (atomically: a reader never sees half a file)."""
    third_party = third_party_site(arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="tmp-") as tmp:
        site = Path(tmp) / "site-packages"
        shutil.copytree(third_party, site)
        # amoskys itself: pure Python, built from this tree with the venv's setuptools
        pip("install", "--no-deps", "--no-build-isolation", "--no-compile", "--target", str(site), str(ROOT))
        (site / "pyz-targets.json").write_text(json.dumps({"arch": arch, "pythons": list(PYTHONS)}))
        staged = Path(tmp) / out.name
        subprocess.run(
            [
                str(Path(sys.executable).parent / "shiv"),
                "--site-packages", str(site),
                "--entry-point", "amoskys.cli:main",
                "--python", "/usr/bin/env python3",
                "--preamble", str(PREAMBLE),
                "--reproducible",
                "--compressed",
                "--output-file", str(staged),
            ],
            check=True,
            env={"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        shutil.move(staged, out)
    print(f"built {out} ({out.stat().st_size / 1e6:.1f} MB): {arch}, CPython {', '.join(PYTHONS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=platform.machine(), choices=("x86_64", "aarch64"))
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "amoskys.pyz")
    args = parser.parse_args()
    build(args.arch, args.out.absolute())


if __name__ == "__main__":
    main()
