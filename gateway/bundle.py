"""The gateway's offline bundle: every wheel the gateway needs, for one Python and platform, in one tar.gz.

    python -m gateway.bundle build [--out DIR] [--python PY]      (or deploy/gateway/build-bundle.sh)

builds, on a machine that reaches a package index, the project's wheel and the wheels of every
core dependency (the slim install: no `platform` extra) with `pip wheel`, then packs them with
`install.sh` (deploy/gateway/install-bundle.sh), `SHA256SUMS` of the wheels and `BUNDLE.json`
(version, Python tag, platform, wheels) into `parkpulse-gateway-VERSION-cpXY-PLATFORM.tar.gz`,
and writes the archive's own checksum beside it (`….tar.gz.sha256`, the `sha256sum` format).
On the edge box, with no network: `sha256sum -c X.tar.gz.sha256 && tar xzf X.tar.gz &&
X/install.sh /opt/parkpulse/venv` (pip runs with `--no-index --find-links`).

Only the standard library (and the kernel's error module, itself standard library only) is used
here, so any Python 3.11 that has pip can build a bundle from a source checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from parkpulse.errors import ParkPulseError  # standard library only, like this module

__all__ = ["Bundle", "BundleError", "build_bundle", "main", "sha256_file"]

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = Path("deploy") / "gateway" / "install-bundle.sh"
_TARGET_PROBE = (
    "import json, sys, sysconfig; print(json.dumps({'python_tag': f'cp{sys.version_info[0]}"
    "{sys.version_info[1]}', 'python': sys.version.split()[0], 'platform': sysconfig.get_platform()}))"
)


class BundleError(ParkPulseError):
    """The bundle could not be built (pip failed, the project tree is incomplete, a path is wrong)."""


@dataclass(frozen=True)
class Bundle:
    """A built bundle: the archive, its checksum file and what it holds."""

    archive: Path
    checksum_file: Path
    sha256: str
    version: str
    python_tag: str
    platform: str
    wheels: tuple[str, ...]


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _project_version(root: Path) -> str:
    pyproject = root / "pyproject.toml"
    try:
        doc = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        return str(doc["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise BundleError(f"{pyproject}: no [project] version ({exc})") from None


def _target(python: str) -> dict[str, str]:
    """Python tag, version and platform of the interpreter the bundle is built for."""
    try:
        out = subprocess.run([python, "-c", _TARGET_PROBE], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BundleError(f"--python: cannot run {python!r} ({exc})") from None
    info: dict[str, str] = json.loads(out.stdout)
    return info


def _copy_sources(root: Path, dest: Path) -> Path:
    """What setuptools needs to build the wheel (pyproject, README, every top-level package), copied
    so that the build writes its `build/` and `*.egg-info` there and never into the checkout."""
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for pkg in sorted(p.parent for p in root.glob("*/__init__.py")):
        if not pkg.name.startswith(".") and pkg.name != "tests":
            shutil.copytree(pkg, src / pkg.name, ignore=skip)
    return src


def _pip_wheel(python: str, src: Path, wheel_dir: Path) -> None:
    """The project's wheel and every dependency's, as this interpreter's pip resolves them."""
    cmd = [python, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir"]
    proc = subprocess.run([*cmd, str(wheel_dir), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BundleError(f"pip wheel failed (exit {proc.returncode}):\n{tail}")
    sdists = [p.name for p in wheel_dir.iterdir() if not p.name.endswith(".whl")]
    if sdists:
        raise BundleError(f"pip wheel left files that are not wheels: {', '.join(sorted(sdists))}")


def _write_metadata(stage: Path, version: str, target: dict[str, str]) -> tuple[str, ...]:
    wheels = tuple(sorted(p.name for p in (stage / "wheels").glob("*.whl")))
    sums = "".join(f"{sha256_file(stage / 'wheels' / w)}  wheels/{w}\n" for w in wheels)
    (stage / "SHA256SUMS").write_text(sums, encoding="utf-8")
    manifest = {"distribution": "parkpulse", "version": version, **target, "wheels": list(wheels)}
    (stage / "BUNDLE.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return wheels


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_bundle(out_dir: Path, *, python: str = sys.executable, root: Path = ROOT) -> Bundle:
    """Build the offline bundle of the gateway into `out_dir`; see the module's docstring."""
    script = root / INSTALL_SCRIPT
    if not script.is_file():
        raise BundleError(f"{script}: the install script is missing (a source checkout is needed)")
    version = _project_version(root)
    target = _target(python)
    name = f"parkpulse-gateway-{version}-{target['python_tag']}-{target['platform']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pp-bundle-") as tmp:
        stage = Path(tmp) / "bundle" / name
        (stage / "wheels").mkdir(parents=True)
        _pip_wheel(python, _copy_sources(root, Path(tmp)), stage / "wheels")
        shutil.copyfile(script, stage / "install.sh")
        (stage / "install.sh").chmod(0o755)
        wheels = _write_metadata(stage, version, target)
        archive = out_dir / f"{name}.tar.gz"
        partial = archive.with_name(archive.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(stage, arcname=name, filter=_reset)
        os.replace(partial, archive)
    digest = sha256_file(archive)
    checksum_file = archive.with_name(archive.name + ".sha256")
    checksum_file.write_text(f"{digest}  {archive.name}\n", encoding="utf-8")
    return Bundle(archive, checksum_file, digest, version, target["python_tag"], target["platform"], wheels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.bundle", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the offline bundle (needs a package index or a pip cache)")
    b.add_argument("--out", type=Path, default=Path("dist"), help="folder for the archive (default ./dist)")
    b.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter whose pip builds the wheels: same Python version and platform as the edge box",
    )
    args = parser.parse_args(argv)
    try:
        bundle = build_bundle(args.out, python=args.python)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{bundle.archive}  ({len(bundle.wheels)} wheels, {bundle.archive.stat().st_size / 1e6:.1f} MB)")
    print(f"{bundle.checksum_file}  sha256 {bundle.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
