"""The dependency rules of ARCHITECTURE.md, checked by parsing every import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"parkpulse", "ingest", "gateway", "rules", "console", "simulators", "deploy_tools", "demo"}
# package -> project packages it may import
ALLOWED = {
    "parkpulse": set(),
    "ingest": {"parkpulse"},
    "gateway": {"parkpulse"},
    "rules": {"parkpulse"},
    "console": {"parkpulse", "rules"},  # rules read models only, see ARCHITECTURE.md
    "simulators": set(),
    "deploy_tools": {"parkpulse"},
    "demo": PROJECT - {"demo"},  # the demo wires every service together
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found & PROJECT


def _violations(pkg: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / pkg).rglob("*.py")):
        for imp in _imports(path) - ALLOWED[pkg] - {pkg}:
            bad.append(f"{path.relative_to(ROOT)} imports {imp}")
    return bad


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_package_imports_only_what_it_may(pkg: str) -> None:
    if not (ROOT / pkg).is_dir():
        pytest.skip(f"{pkg}/ not written yet")
    assert _violations(pkg) == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    src.write_text("import ingest.service\nfrom gateway import spool\nimport os\n", encoding="utf-8")
    assert _imports(src) == {"ingest", "gateway"}
