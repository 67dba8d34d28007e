"""The dependency rules of docs/architecture.md, checked by parsing every import.

The allowed imports come from the components table of that page, so the document and the tree
cannot drift apart: a package the table does not name, a row whose folder is gone, or an import
the row does not allow all fail here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
_ROW = re.compile(r"^\| `([a-z_]+)/` \|.*\| ([^|]*) \|\s*$")


def _table(text: str) -> dict[str, set[str]]:
    """folder -> project packages it may import, from the components table."""
    rules: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            rules[m.group(1)] = set(re.findall(r"`([a-z_]+)`", m.group(2)))
    return rules


ALLOWED = _table(DOC.read_text(encoding="utf-8"))
PROJECT = set(ALLOWED)


def _packages() -> set[str]:
    """Top-level folders of the repository that are Python packages."""
    return {p.parent.name for p in ROOT.glob("*/__init__.py") if not p.parent.name.startswith(".")}


def _imports(path: Path, project: set[str]) -> set[str]:
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
    return found & project


def _violations(pkg: str, allowed: dict[str, set[str]]) -> list[str]:
    bad = []
    for path in sorted((ROOT / pkg).rglob("*.py")):
        for imp in _imports(path, set(allowed)) - allowed[pkg] - {pkg}:
            bad.append(f"{path.relative_to(ROOT)} imports {imp}")
    return bad


def test_the_table_names_every_package_and_nothing_else() -> None:
    assert ALLOWED, "docs/architecture.md has no components table"
    assert _packages() == PROJECT, "docs/architecture.md and the tree disagree on the packages"
    for pkg, may in ALLOWED.items():
        assert may <= PROJECT, f"{pkg}: may import unknown packages {may - PROJECT}"


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_package_imports_only_what_it_may(pkg: str) -> None:
    assert (ROOT / pkg).is_dir(), f"{pkg}/ is in docs/architecture.md but not in the tree"
    assert _violations(pkg, ALLOWED) == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    src.write_text("import ingest.service\nfrom gateway import spool\nimport os\n", encoding="utf-8")
    assert _imports(src, PROJECT) == {"ingest", "gateway"}


def test_the_table_parser_reads_folders_and_imports() -> None:
    doc = (
        "| folder | what | may import |\n|---|---|---|\n"
        "| `alpha/` | a | — |\n| `beta/` | b, with `code` in prose | `alpha` |\n| `gamma/` | c | `alpha`, `beta` |\n"
    )
    assert _table(doc) == {"alpha": set(), "beta": {"alpha"}, "gamma": {"alpha", "beta"}}


def test_a_moved_package_fails(tmp_path: Path) -> None:
    """A package renamed in the tree but not in the table is caught by the comparison above."""
    table = dict(ALLOWED)
    table.pop("demo")
    assert _packages() != set(table)


def test_nothing_cites_a_document_outside_the_repository() -> None:
    outside = re.compile(r"ARCHITECTURE\.md|shared/reference|\.\./shared|contract [0-9]")
    hits = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if (
            rel.parts[0] in {".git", ".venv", "var", "test-artifacts", "parkpulse.egg-info"}
            or not path.is_file()
        ):
            continue
        if path.suffix not in {
            ".py",
            ".md",
            ".sql",
            ".toml",
            ".yaml",
            ".yml",
            ".sh",
            ".json",
            ".txt",
            ".cfg",
        }:
            continue
        if path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if outside.search(line):
                hits.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert hits == []
