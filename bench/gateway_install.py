"""Benchmark: the gateway-only install against today's full install (issue 14).

    python -m bench.gateway_install [--runs 11] [--keep DIR]

Measured in one run, on this machine:

- slim: the offline bundle of `gateway.bundle` built from this checkout, installed by its own
  `install.sh` into a fresh virtualenv (pip with `--no-index`);
- full (the baseline): a fresh virtualenv with the same project wheel and the `platform` extra,
  i.e. what one `pip install parkpulse` brought onto an edge box before the split (resolved through
  this machine's pip configuration: its index, mirror or cache).

Figures: the installed size of each virtualenv (bytes on disk, `du`-style, the venv's own pip and
setuptools included in both), the number of distributions, the install time, and the start-up time
of `parkpulse-gateway validate -c deploy/gateway/example.yaml` (median wall and CPU time of `--runs`
process runs each, slim and full interleaved, after one warm-up run; on a loaded machine the CPU
figure is the steadier one). Ratios are slim / full. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from gateway.bundle import build_bundle

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "gateway" / "example.yaml"


def _disk_bytes(folder: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks, like `du`), each hard link counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _distributions(venv: Path) -> int:
    return len(list(venv.glob("lib/python*/site-packages/*.dist-info")))


def _startup_medians(venvs: dict[str, Path], runs: int, cwd: Path) -> dict[str, tuple[float, float]]:
    """Median wall and CPU (user + system) seconds of `validate` per venv; runs interleaved so that
    the load of a shared machine falls on both alike."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    cmds = {
        name: [str(v / "bin" / "parkpulse-gateway"), "validate", "-c", str(EXAMPLE)]
        for name, v in venvs.items()
    }
    for cmd in cmds.values():
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=cwd)  # warm the file cache
    wall: dict[str, list[float]] = {name: [] for name in venvs}
    cpu: dict[str, list[float]] = {name: [] for name in venvs}
    for _ in range(runs):
        for name, cmd in cmds.items():
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=cwd)
            wall[name].append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in venvs}


def _install_slim(bundle_archive: Path, work: Path) -> tuple[Path, float]:
    with tarfile.open(bundle_archive) as tar:
        tar.extractall(work / "unpacked", filter="data")
    (folder,) = (work / "unpacked").iterdir()
    venv = work / "slim"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PYTHON=sys.executable, https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    t0 = time.perf_counter()
    subprocess.run([str(folder / "install.sh"), str(venv)], check=True, capture_output=True, env=env)
    return venv, time.perf_counter() - t0


def _install_full(project_wheel: Path, work: Path) -> tuple[Path, float]:
    venv = work / "full"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{project_wheel}[platform]"],
        check=True,
        capture_output=True,
    )
    return venv, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=11, help="start-up runs per install (median)")
    ap.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pp-bench-install-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        bundle = build_bundle(work / "dist", python=sys.executable)
        build_s = time.perf_counter() - t0
        print(
            f"bundle: {bundle.archive.name}, {len(bundle.wheels)} wheels, "
            f"{bundle.archive.stat().st_size / 1e6:.1f} MB, built in {build_s:.1f} s",
            flush=True,
        )
        slim, slim_install_s = _install_slim(bundle.archive, work)
        project_wheel = next((work / "unpacked").glob("*/wheels/parkpulse-*.whl"))
        full, full_install_s = _install_full(project_wheel, work)
        startup = _startup_medians({"slim": slim, "full": full}, args.runs, work)
        rows = {}
        for name, venv, install_s in (("slim", slim, slim_install_s), ("full", full, full_install_s)):
            rows[name] = {
                "size_mb": _disk_bytes(venv) / 1e6,
                "distributions": _distributions(venv),
                "install_s": install_s,
                "startup_s": startup[name][0],
                "startup_cpu_s": startup[name][1],
            }
            r = rows[name]
            print(
                f"{name}: {r['size_mb']:.1f} MB installed, {r['distributions']} distributions, "
                f"installed in {r['install_s']:.1f} s; `validate` start-up median "
                f"{r['startup_s'] * 1000:.0f} ms wall, {r['startup_cpu_s'] * 1000:.0f} ms CPU",
                flush=True,
            )
        size_ratio = rows["slim"]["size_mb"] / rows["full"]["size_mb"]
        startup_ratio = rows["slim"]["startup_s"] / rows["full"]["startup_s"]
        cpu_ratio = rows["slim"]["startup_cpu_s"] / rows["full"]["startup_cpu_s"]
        print(
            f"slim / full: size {size_ratio:.2f}, start-up {startup_ratio:.2f} wall, {cpu_ratio:.2f} CPU",
            flush=True,
        )
        result = {
            "bundle_mb": round(bundle.archive.stat().st_size / 1e6, 1),
            "bundle_wheels": len(bundle.wheels),
            "slim_size_mb": round(rows["slim"]["size_mb"], 1),
            "full_size_mb": round(rows["full"]["size_mb"], 1),
            "size_ratio": round(size_ratio, 3),
            "slim_distributions": rows["slim"]["distributions"],
            "full_distributions": rows["full"]["distributions"],
            "slim_startup_ms": round(rows["slim"]["startup_s"] * 1000, 1),
            "full_startup_ms": round(rows["full"]["startup_s"] * 1000, 1),
            "startup_ratio": round(startup_ratio, 3),
            "slim_startup_cpu_ms": round(rows["slim"]["startup_cpu_s"] * 1000, 1),
            "full_startup_cpu_ms": round(rows["full"]["startup_cpu_s"] * 1000, 1),
            "startup_cpu_ratio": round(cpu_ratio, 3),
            "slim_install_s": round(slim_install_s, 1),
            "full_install_s": round(full_install_s, 1),
        }
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
