"""`parkpulse notify …` through typer's CliRunner: channels from a file (secrets stored, never
shown), contacts and subscriptions with errors that name the field, deliveries and facts."""

from __future__ import annotations

from pathlib import Path

import psycopg
import yaml
from notify_standins import WECOM_KEY
from typer.testing import CliRunner

from notify.cli import app

runner = CliRunner()


def _park(db: str, park: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO parks (park_id, name) VALUES (%s, '园区')", (park,))
        conn.execute("INSERT INTO console_users (user_name, password_hash) VALUES ('li.wei', 'x')")


def test_channels_contacts_subscriptions(db: str, unique_id: str, tmp_path: Path) -> None:
    _park(db, unique_id)
    f = tmp_path / "wecom.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "id": "ops",
                "kind": "wecom",
                "config": {"url": "http://127.0.0.1:9/send"},
                "secrets": {"key": WECOM_KEY},
            }
        )
    )
    base = ["--database-url", db]
    r = runner.invoke(app, ["channels", "add", "-f", str(f), *base])
    assert r.exit_code == 0, r.output
    assert "channel ops (wecom) saved; secrets: key" in r.output and WECOM_KEY not in r.output
    again = runner.invoke(app, ["channels", "add", "-f", str(f), *base])
    assert again.exit_code == 1 and "id: a channel of this name exists" in again.output
    r = runner.invoke(app, ["channels", "list", "--json", *base])
    assert r.exit_code == 0 and '"secrets": [\n      "key"\n    ]' in r.output and WECOM_KEY not in r.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "id": "m",
                "kind": "email",
                "config": {"host": "h", "port": 0, "from_addr": "a@b"},
                "secrets": {"password": "pw-Secret-Xx12"},
            }
        )
    )
    r = runner.invoke(app, ["channels", "add", "-f", str(bad), *base])
    assert r.exit_code == 1 and "config.port" in r.output and "(got 0)" in r.output

    r = runner.invoke(
        app, ["contact", "--channel", "ops", "--label", "运维群", "--quiet", "22:00-07:00", *base]
    )
    assert r.exit_code == 0 and "contact 1 added" in r.output, r.output
    r = runner.invoke(app, ["contact", "--channel", "ops", "--user", "li.wei", "--language", "fr", *base])
    assert r.exit_code == 1 and "language: must be zh or en (got 'fr')" in r.output
    r = runner.invoke(app, ["contact", "--channel", "ops", "--label", "x", "--quiet", "25:00-07:00", *base])
    assert r.exit_code == 1 and "quiet: expected HH:MM-HH:MM" in r.output

    r = runner.invoke(
        app, ["subscribe", "--contact", "1", "--park", unique_id, "--kinds", "emission,tamper", *base]
    )
    assert r.exit_code == 0 and "subscription 1 added" in r.output, r.output
    r = runner.invoke(app, ["subscribe", "--role", "inspector", "--kinds", "emision", *base])
    assert r.exit_code == 1 and "kinds: each must be one of" in r.output and "'emision'" in r.output
    r = runner.invoke(app, ["subscribe", "--role", "janitor", *base])
    assert r.exit_code == 1 and "role: must be one of" in r.output
    r = runner.invoke(app, ["subscribe", "--role", "inspector", "--park", "nowhere", *base])
    assert r.exit_code == 1 and "park: no such park (got 'nowhere')" in r.output

    r = runner.invoke(app, ["deliveries", "--json", *base])
    assert r.exit_code == 0 and r.output.strip() == "[]"
    r = runner.invoke(app, ["channels", "remove", "ops", *base])
    assert r.exit_code == 0
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM notify_subscriptions").fetchone() == (0,)


def test_facts_lists_sources_and_verified_marks() -> None:
    r = runner.invoke(app, ["facts"])
    assert r.exit_code == 0 and "wecom.markdown_max_bytes" in r.output and "dingtalk.signature" in r.output
