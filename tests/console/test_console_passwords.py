"""The password policy (issue 9: `aaaaaaaaaa` and `password12` were accepted): length, not the
user name, not one repeated character, not in the shipped list of common passwords; applied by
`parkpulse users add` and `users set-password`, with the reason and without echoing the password."""

from __future__ import annotations

import psycopg
import pytest
from console_testkit import World
from typer.testing import CliRunner

from console.accounts import add_user, set_password
from console.cli import users_app
from console.errors import AccountError


def _run(args: list[str], dsn: str, stdin: str) -> tuple[int, str]:
    res = CliRunner().invoke(users_app, args, input=stdin, env={"PARKPULSE_DATABASE_URL": dsn})
    return res.exit_code, res.output


WEAK = [
    ("aaaaaaaaaa", "different characters"),
    ("password12", "common password"),
    ("Password123!", "common password"),
    ("P@ssw0rd2026", "common password"),
    ("qwertyuiop", "common password"),
    ("1234567890", "common password"),
    ("abababababab", "different characters"),
    ("zhaoyun-2026!", "user name"),
    ("ZHAOYUN12345", "user name"),
    ("nuyoahz-xyz!", None),  # the reversed name inside a longer password is fine
    ("hijklmnopqrs", "sequence"),
    ("short-1", "at least 10"),
]


@pytest.mark.parametrize(("password", "reason"), WEAK)
def test_cli_refuses_weak_passwords_saying_why(world: World, password: str, reason: str | None) -> None:
    code, out = _run(["add", "zhaoyun", "--role", "admin", "--password-stdin"], world.dsn, password + "\n")
    if reason is None:
        assert code == 0, out
        return
    assert code == 2 and "password:" in out and reason in out, out
    assert password not in out
    with psycopg.connect(world.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM console_users WHERE user_name = 'zhaoyun'").fetchone() == (
            0,
        )


def test_set_password_applies_the_policy(world: World) -> None:
    code, out = _run(["set-password", "insp1", "--password-stdin"], world.dsn, "password12\n")
    assert code == 2 and "common password" in out and "password12" not in out
    code, out = _run(["set-password", "insp1", "--password-stdin"], world.dsn, "insp1-is-my-name\n")
    assert code == 2 and "user name" in out
    with psycopg.connect(world.dsn) as conn:
        with pytest.raises(AccountError, match="different characters"):
            set_password(conn, "insp1", "z" * 12)
        with pytest.raises(AccountError, match="password"):
            add_user(conn, "li", "li" * 6, "admin")
    code, out = _run(["set-password", "insp1", "--password-stdin"], world.dsn, "Rv7&-moon-Xcq3p\n")
    assert code == 0, out


def test_control_characters_in_cli_fields_are_named_not_a_traceback(world: World) -> None:
    code, out = _run(
        ["add", "ma", "--role", "admin", "--name", "Ma\x00Li", "--password-stdin"],
        world.dsn,
        "Rv7&-moon-Xcq3p\n",
    )
    assert code == 2 and "name:" in out and "control characters" in out and "Traceback" not in out, out
    code, out = _run(["set-password", "in\x00sp1", "--password-stdin"], world.dsn, "Rv7&-moon-Xcq3p\n")
    assert code == 2 and "user:" in out and "Traceback" not in out, out
    code, out = _run(["disable", "in\x00sp1"], world.dsn, "")
    assert code == 2 and "user:" in out, out


def test_the_shipped_list() -> None:
    from console._passwords import check_password_policy, common_passwords

    words = common_passwords()
    assert 200 <= len(words) <= 2000 and all(w == w.casefold() and w.strip() == w for w in words)
    assert {"password", "qwerty", "123456789", "iloveyou", "woaini1314"} <= words
    assert check_password_policy("Kx7#-east-Pvq2w", "insp1") is None
