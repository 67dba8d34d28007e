"""The emission limits file is copied into the database (emission_limits / v_emission_limits) with
every figure's source: exactly the file's figures, stale rows removed, idempotent — by the sync
function, by `parkpulse alerts limits sync` and by the engine when it starts. Real PostgreSQL;
the engine test uses the session's private Mosquitto."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import yaml
from typer.testing import CliRunner

from alerts import AlertEngine, AlertSettings, load_rules, sync_limits
from alerts.cli import app
from parkpulse.services import MosquittoBroker

SHIPPED_LIMITS = Path(load_rules().limits.path)
SHIPPED_RULES = Path(load_rules().source)
runner = CliRunner()


def _view(dsn: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute("SELECT * FROM v_emission_limits")
        cols = [d.name for d in cur.description or []]
        return {(r[0], r[1], r[2], r[3]): dict(zip(cols, r, strict=True)) for r in cur.fetchall()}


def _expected(
    limits_doc: dict[str, Any], rules_doc: dict[str, Any]
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """What the view must hold, worked out from the YAML documents themselves (not from the loader)."""
    ref = {st: r for r in limits_doc["reference_o2"] for st in r["source_types"]}
    em = [r for r in rules_doc["rules"] if r["kind"] == "emission" and r.get("enabled", True)]
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for st, r in ref.items():
        out[("reference_o2", "reference-o2", st, "o2_pct")] = {
            "limit_mg_m3": None,
            "reference_o2_pct": r["o2_ref_pct"],
            "source": r["source"],
            "standard": r.get("standard"),
            "verified": r.get("verified", False),
            "rule_ids": [x["id"] for x in em],
        }
    for ls in limits_doc["limit_sets"]:
        for st, per in ls["limits"].items():
            for m, v in per.items():
                users = [
                    x["id"]
                    for x in em
                    if ls["id"] in x["params"]["limit_tables"].values() and m in x["params"]["pollutants"]
                ]
                out[("limit_set", ls["id"], st, m)] = {
                    "limit_mg_m3": v,
                    "reference_o2_pct": ref[st]["o2_ref_pct"],
                    "source": ls["source"],
                    "standard": ls.get("standard"),
                    "verified": ls.get("verified", False),
                    "rule_ids": users,
                    "limit_table": ls["table"],
                }
    for ov in limits_doc.get("overrides", []):
        for st in ov["source_types"]:
            for m, v in ov["limits"].items():
                users = [
                    x["id"]
                    for x in em
                    if ov["id"] in x["params"].get("overrides", []) and m in x["params"]["pollutants"]
                ]
                out[("override", ov["id"], st, m)] = {
                    "limit_mg_m3": v,
                    "reference_o2_pct": ref[st]["o2_ref_pct"],
                    "source": ov["source"],
                    "standard": ov.get("standard"),
                    "verified": ov.get("verified", False),
                    "rule_ids": users,
                    "cities": ov.get("cities"),
                    "limit_table": None,
                }
    return out


def _assert_view_is(
    dsn: str, limits_doc: dict[str, Any], rules_doc: dict[str, Any]
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    view = _view(dsn)
    expected = _expected(limits_doc, rules_doc)
    assert set(view) == set(expected)
    for key, want in expected.items():
        got = view[key]
        assert {k: got[k] for k in want} == want, key
        assert got["active"] == bool(want["rule_ids"])
        assert (
            got["limits_version"] == limits_doc["version"] and got["rule_set_version"] == rules_doc["version"]
        )
    return view


def test_alerts_sync_writes_exactly_the_files_figures_with_sources(db: str) -> None:
    limits_doc = yaml.safe_load(SHIPPED_LIMITS.read_text(encoding="utf-8"))
    rules_doc = yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8"))
    with psycopg.connect(db) as conn:
        res = sync_limits(conn, load_rules())
    view = _assert_view_is(db, limits_doc, rules_doc)
    assert res.rows == len(view) == res.inserted and res.deleted == 0
    # GB 13271-2014 Tables 1–3 for all three fuels, each figure active (the shipped rule picks among them)
    # table → fuel → particulate / SO2 / NOx (/ Hg for coal), mg/m³
    want = {
        ("gb13271-2014-table1", "Table 1"): {
            "coal": (80, 400, 400, 0.05),
            "oil": (60, 300, 400),
            "gas": (30, 100, 400),
        },
        ("gb13271-2014-table2", "Table 2"): {
            "coal": (50, 300, 300, 0.05),
            "oil": (30, 200, 250),
            "gas": (20, 50, 200),
        },
        ("gb13271-2014-table3", "Table 3"): {
            "coal": (30, 200, 200, 0.05),
            "oil": (30, 100, 200),
            "gas": (20, 50, 150),
        },
    }
    metrics = ("particulate_mg_m3", "so2_mg_m3", "nox_mg_m3", "hg_mg_m3")
    for (set_id, table), per_fuel in want.items():
        for fuel, figures in per_fuel.items():
            for metric, value in zip(metrics, figures, strict=False):
                row = view[("limit_set", set_id, f"{fuel}_boiler", metric)]
                assert (row["limit_mg_m3"], row["limit_table"]) == (value, table), (set_id, fuel, metric)
                assert row["reference_o2_pct"] == (9.0 if fuel == "coal" else 3.5)
                assert row["verified"] is False and "GB 13271-2014" in row["source"] and row["applies_when"]
        assert ("limit_set", set_id, "gas_boiler", "hg_mg_m3") not in view  # Hg is limited for coal only
    hg = view[("limit_set", "gb13271-2014-table1", "coal_boiler", "hg_mg_m3")]
    assert hg["pollutant"] == "hg" and hg["active"] is False  # listed, not evaluated: no catalogue metric
    nox = view[("limit_set", "gb13271-2014-table2", "gas_boiler", "nox_mg_m3")]
    assert nox["limit_mg_m3"] == 200 and nox["reference_o2_pct"] == 3.5 and nox["pollutant"] == "nox"
    assert "GB 13271-2014" in nox["standard"] and nox["edition"] == "2014" and nox["verified"] is False
    assert "GB 13271-2014" in nox["reference_o2_source"] and nox["parks"] is None and nox["active"]
    assert nox["applies_when"] == "stack age class new (新建)"
    t3 = view[("limit_set", "gb13271-2014-table3", "gas_boiler", "nox_mg_m3")]
    assert "2+26 city (mee-2018-2plus26) from 2018-10-01" in t3["applies_when"]
    emission_rule = next(r for r in rules_doc["rules"] if r["kind"] == "emission")
    assert nox["min_valid_minutes"] == emission_rule["params"]["min_valid_minutes"]
    assert nox["limits_file"] == str(SHIPPED_LIMITS)
    # the shipped override is applied by the emission rule, in 郑州 only
    ov = view[("override", "zhengzhou-ultra-low-nox", "gas_boiler", "nox_mg_m3")]
    assert ov["limit_mg_m3"] == 30 and ov["active"] is True and ov["rule_ids"] == ["emission-gb13271"]
    assert ov["cities"] == ["郑州"] and ov["limit_table"] is None and "city 郑州" in ov["applies_when"]


def test_alerts_sync_removes_stale_rows_and_is_idempotent(db: str, tmp_path: Path) -> None:
    with psycopg.connect(db) as conn:
        sync_limits(conn, load_rules())
        # a row from an older limits file, never in the current one
        conn.execute(
            "INSERT INTO emission_limits (entry, limit_id, source_type, metric, limit_mg_m3, reference_o2_pct, source, "
            "limits_version, rule_set_version, limits_file) VALUES ('limit_set', 'old-set', 'coal_boiler', "
            "'so2_mg_m3', 400, 9, 'old source', 0, 0, 'old.yaml')"
        )
        conn.commit()
    # a changed file: NOx tightened, SO2 dropped, the override applied by the emission rule in one park
    limits_doc = yaml.safe_load(SHIPPED_LIMITS.read_text(encoding="utf-8"))
    limits_doc["version"] = 2
    gas = limits_doc["limit_sets"][0]["limits"]["gas_boiler"]
    gas["nox_mg_m3"] = 350
    del gas["so2_mg_m3"]
    limits_doc["overrides"][0]["parks"] = ["zz-park"]
    rules_doc = yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8"))
    lp, rp = tmp_path / "limits.yaml", tmp_path / "rules.yaml"
    lp.write_text(yaml.safe_dump(limits_doc, allow_unicode=True), encoding="utf-8")
    rp.write_text(yaml.safe_dump(rules_doc, allow_unicode=True), encoding="utf-8")
    rs = load_rules(rp, lp)
    with psycopg.connect(db) as conn:
        res = sync_limits(conn, rs)
    assert res.deleted == 2 and res.inserted == 0  # old-set row and the dropped SO2 limit
    view = _assert_view_is(db, limits_doc, rules_doc)
    assert ("limit_set", "old-set", "coal_boiler", "so2_mg_m3") not in view
    assert ("limit_set", "gb13271-2014-table1", "gas_boiler", "so2_mg_m3") not in view
    assert view[("limit_set", "gb13271-2014-table1", "gas_boiler", "nox_mg_m3")]["limit_mg_m3"] == 350
    ov = view[("override", "zhengzhou-ultra-low-nox", "gas_boiler", "nox_mg_m3")]
    assert ov["active"] and ov["rule_ids"] == ["emission-gb13271"] and ov["parks"] == ["zz-park"]
    assert ov["limits_file"] == str(lp)
    # again: nothing new, nothing removed, the same figures
    with psycopg.connect(db) as conn:
        again = sync_limits(conn, rs)
    assert (again.rows, again.inserted, again.deleted) == (res.rows, 0, 0)
    after = _view(db)
    strip = {k: {c: v for c, v in row.items() if c != "synced_at"} for k, row in view.items()}
    assert {k: {c: v for c, v in row.items() if c != "synced_at"} for k, row in after.items()} == strip


def test_alerts_limits_sync_cli(db: str, tmp_path: Path) -> None:
    r = runner.invoke(app, ["limits", "sync", "--database-url", db], terminal_width=300)
    assert r.exit_code == 0, r.output
    n = len(_view(db))
    assert f"{n} rows ({n} new, 0 updated, 0 stale removed)" in r.output
    # a broken limits file: the field and value are named, the database is left as it was
    bad = tmp_path / "limits.yaml"
    text = SHIPPED_LIMITS.read_text(encoding="utf-8")
    table2_gas = "gas_boiler: {particulate_mg_m3: 20, so2_mg_m3: 50, nox_mg_m3: 200}"
    assert text.count(table2_gas) == 1
    bad.write_text(text.replace(table2_gas, table2_gas.replace("200", "-5")), encoding="utf-8")
    r = runner.invoke(app, ["limits", "sync", "--limits", str(bad), "--database-url", db], terminal_width=300)
    assert r.exit_code == 1 and "limit_sets[1].limits.gas_boiler.nox_mg_m3" in r.output and "-5" in r.output
    assert _view(db)[("limit_set", "gb13271-2014-table2", "gas_boiler", "nox_mg_m3")]["limit_mg_m3"] == 200


def test_alerts_engine_syncs_limits_when_it_starts(db: str, broker: MosquittoBroker, unique_id: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO emission_limits (entry, limit_id, source_type, metric, limit_mg_m3, reference_o2_pct, source, "
            "limits_version, rule_set_version, limits_file) VALUES ('override', 'gone', 'gas_boiler', "
            "'nox_mg_m3', 10, 3.5, 'removed source', 0, 0, 'old.yaml')"
        )
    settings = AlertSettings(
        database_url=db, mqtt_url=broker.url, park=unique_id, group=f"alerts-{unique_id}"
    )

    async def start_and_stop() -> None:
        async with AlertEngine(settings):
            pass

    asyncio.run(start_and_stop())
    _assert_view_is(
        db,
        yaml.safe_load(SHIPPED_LIMITS.read_text(encoding="utf-8")),
        yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8")),
    )
