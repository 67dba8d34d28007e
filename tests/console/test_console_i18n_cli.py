"""Message catalogue completeness and the `parkpulse users` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from console_testkit import World
from typer.testing import CliRunner

from console.cli import users_app
from console.i18n import LANGS, catalogue

TEMPLATES = Path(__file__).resolve().parents[2] / "console" / "templates"


def test_both_catalogues_have_the_same_keys_and_no_empty_label() -> None:
    zh, en = catalogue("zh-CN"), catalogue("en")
    assert set(zh) == set(en)
    assert all(v.strip() for v in zh.values()) and all(v.strip() for v in en.values())
    assert sum(1 for k in zh if zh[k] == en[k]) < len(zh) * 0.1  # really translated, not copied


def test_every_label_used_by_templates_and_code_exists_in_both_languages() -> None:
    used: set[str] = set()
    prefixes: set[str] = set()
    sources = list(TEMPLATES.glob("*.html")) + list((TEMPLATES.parent).glob("*.py"))
    for path in sources:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\bt\(\s*['"]([a-z0-9_]+(?:\.[a-z0-9_A-Z]+)+)['"]""", text))
        prefixes |= set(re.findall(r"""\bt\(\s*['"]([a-z_]+\.)['"]\s*~""", text))
    assert len(used) > 100, "label scan found too little: the regex broke"
    for lang in LANGS:
        missing = used - set(catalogue(lang))
        assert not missing, f"{lang}: {sorted(missing)}"
    # labels built from data values (t('state.' ~ a.state)) exist for every value the data can hold
    values = {
        "state.": ["firing", "acknowledged", "resolved", "open", "all"],
        "severity.": ["info", "warning", "critical"],
        "kind.": ["emission", "data_gap", "tamper", "threshold", "rate_of_change"],
        "action.": ["fired", "acknowledged", "resolved", "comment", "reopened", "updated"],
        "quality.": ["0", "1", "2", "3", "4"],
        "class.": ["A", "B", "C", "out_of_scope"],
        "verdict.": ["pass", "fail", "insufficient_data"],
        "scheme.": ["smart_workshop", "green_factory"],
        "role.": ["admin", "inspector", "park_manager", "operator"],
        "size.": ["above_scale", "below_scale"],
        "carrier.": ["electricity", "natural_gas", "steam", "water", "heat", "compressed_air"],
        "direction.": ["import", "export"],
        "health.": ["ok", "stale", "never", "online", "offline"],
        "gapkind.": ["seq", "data"],
        "devkind.": ["meter", "line", "cems", "sensor"],
    }
    assert prefixes <= set(values), f"new data-driven label prefix: {prefixes - set(values)}"
    for lang in LANGS:
        cat = catalogue(lang)
        for prefix, vals in values.items():
            assert all(prefix + v in cat for v in vals), (lang, prefix)


def test_catalogue_files_are_valid_json_data() -> None:
    for lang in LANGS:
        path = TEMPLATES.parent / "i18n" / f"{lang}.json"
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)


def _run(args: list[str], dsn: str, stdin: str = "") -> tuple[int, str]:
    res = CliRunner().invoke(users_app, args, input=stdin, env={"PARKPULSE_DATABASE_URL": dsn})
    return res.exit_code, res.output


def test_users_add_list_disable_enable_set_password(world: World) -> None:
    code, out = _run(
        [
            "add",
            "zhao",
            "--role",
            "inspector",
            "--park",
            world.p1,
            "--park",
            world.p2,
            "--name",
            "赵监察",
            "--password-stdin",
        ],
        world.dsn,
        "Kq4!-north-Wp8z\n",
    )
    assert code == 0, out
    code, out = _run(["list"], world.dsn)
    assert code == 0 and "zhao" in out and world.p2 in out
    with psycopg.connect(world.dsn) as conn:
        parks = conn.execute(
            "SELECT park_id FROM console_roles WHERE user_name = 'zhao' ORDER BY 1"
        ).fetchall()
        assert [p[0] for p in parks] == sorted([world.p1, world.p2])
        h = conn.execute("SELECT password_hash FROM console_users WHERE user_name = 'zhao'").fetchone()
        assert h and h[0].startswith("$argon2id$") and "Kq4!-north-Wp8z" not in h[0]
    code, out = _run(["set-password", "zhao", "--password-stdin"], world.dsn, "Tr6%-south-Bv3m\n")
    assert code == 0, out
    assert _run(["disable", "zhao"], world.dsn)[0] == 0
    with psycopg.connect(world.dsn) as conn:
        assert conn.execute("SELECT disabled FROM console_users WHERE user_name = 'zhao'").fetchone() == (
            True,
        )
    assert _run(["enable", "zhao"], world.dsn)[0] == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["add", "x1", "--role", "king"], "role"),
        (["add", "x1", "--role", "inspector", "--park", "no-such-park"], "park"),
        (["add", "x1", "--role", "park_manager"], "park"),
        (["add", "x1", "--role", "operator", "--firm", "nope"], "firm"),
        (["add", "Bad Name!", "--role", "admin"], "user"),
        (["add", "admin", "--role", "admin"], "user"),
    ],
)
def test_users_add_errors_name_the_field(world: World, args: list[str], field: str) -> None:
    code, out = _run([*args, "--password-stdin"], world.dsn, "Long-enough-pw-1\n")
    assert code == 2 and f"{field}:" in out, out


def test_short_password_refused_without_echoing_it(world: World) -> None:
    code, out = _run(["add", "x2", "--role", "admin", "--password-stdin"], world.dsn, "short1\n")
    assert code == 2 and "password:" in out and "short1" not in out
    code, out = _run(["set-password", "nobody", "--password-stdin"], world.dsn, "Long-enough-pw-1\n")
    assert code == 2 and "user:" in out
