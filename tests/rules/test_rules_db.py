"""The database path: registry + COPY readings + rollups → `rules run` → contract-4 views,
and the same numbers from the CSV path (`kpi evaluate`) for the same inputs."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from rules_seed import device_pks, local, write_readings
from typer.testing import CliRunner

from parkpulse.registry import Device, Firm, Gateway, ParkFile, ParkInfo, Workshop, import_registry
from rules._csvio import read_kpi_inputs
from rules._evaluate import evaluate_year
from rules._ruleset import load_rule_set
from rules._service import run_once
from rules.cli import firms_app, kpi_app, rules_app

RS = load_rule_set("henan-2025")
FIRMS = [  # firm, land mu, (added value, tax, revenue, rd, employees, pollutant t, output units) 2025, 2024 AV
    ("fa", 100.0, (5000, 2000, 20000, 600, 200, 10, 1000), 4500),
    ("fb", 50.0, (1000, 300, 5000, 50, 100, 4, 500), 900),
    ("fc", 80.0, (800, 100, 3000, 20, 80, 5, 400), 820),
    ("fd", 60.0, (3000, 1500, 9000, 300, 150, 2, 700), 2800),
]
# yearly kWh and m3 (2024, 2025) per firm; fa has a flagged counter reset in 2025
ENERGY = {
    "fa": ((950_000.0, 1_000.0), (1_000_000.0, 1_200.0)),
    "fb": ((280_000.0, 0.0), (300_000.0, 0.0)),
    "fc": ((400_000.0, 5_000.0), (380_000.0, 5_500.0)),
    "fd": ((500_000.0, 0.0), (450_000.0, 0.0)),
}


def _park(park: str) -> ParkFile:
    firms = []
    for fid, land, _, _ in FIRMS:
        gw = Gateway(
            id=f"{park}-{fid}-g",
            devices=[
                Device(id="main", kind="meter", meter_level=1, carrier="electricity"),
                Device(id="gas", kind="meter", meter_level=1, carrier="natural_gas"),
            ],
        )
        firms.append(
            Firm(
                id=f"{park}-{fid}",
                name=fid,
                land_mu=land,
                production_start="2015-01-01",  # type: ignore[arg-type]
                workshops=[Workshop(id=f"{park}-{fid}-w1", name="一车间")],
                gateways=[gw],
            )
        )
    return ParkFile(park=ParkInfo(id=park, name="测试园区"), firms=firms)


def _seed(dsn: str, park: str) -> None:
    with psycopg.connect(dsn) as conn:
        import_registry(conn, _park(park))
        pks = device_pks(conn)
        rows = []
        reset_events = []
        for fid, _, _, _ in FIRMS:
            gw = f"{park}-{fid}-g"
            (e24, g24), (e25, g25) = ENERGY[fid]
            main, gas = pks[(gw, "main")], pks[(gw, "gas")]
            base = 10_000.0
            rows += [
                (main, 1, local(2024, 1, 1, 0, 0), base, 0),
                (main, 1, local(2024, 12, 31, 23, 45), base + e24, 0),
            ]
            if fid == "fa":
                # 2025: +600 000 by June 1st 10:00, then the meter resets to 5 and climbs to 400 000 by year end:
                # consumption = 600 000 + 5 (the step onto the new counter) + (400 000 - 5) = 1 000 000
                v_before = base + e24 + 600_000.0
                rows += [
                    (main, 1, local(2025, 6, 1, 10, 0), v_before, 0),
                    (main, 1, local(2025, 6, 1, 11, 0), 5.0, 0),
                    (main, 1, local(2025, 12, 31, 23, 45), 400_000.0, 0),
                ]
                reset_events.append((main, local(2025, 6, 1, 11, 0), v_before))
            else:
                rows.append((main, 1, local(2025, 12, 31, 23, 45), base + e24 + e25, 0))
            rows += [
                (gas, 20, local(2024, 1, 1, 0, 0), 0.0, 0),
                (gas, 20, local(2024, 12, 31, 23, 45), g24, 0),
                (gas, 20, local(2025, 12, 31, 23, 45), g24 + g25, 0),
            ]
        write_readings(conn, rows)
        for pk, ts, prev in reset_events:
            conn.execute(
                "INSERT INTO counter_events VALUES (%s, 1, %s, 'reset', %s, 5, %s)", (pk, ts, prev, prev)
            )
        conn.commit()


def _economics_files(tmp: Path, park: str) -> tuple[Path, Path]:
    hdr = (
        "企业编号 (firm_id),年度 (year),工业增加值(万元) (added_value_10k_cny),税收实际贡献(万元) (tax_10k_cny),"
        "主营业务收入(万元) (revenue_10k_cny),研发经费支出(万元) (rd_spend_10k_cny),年平均职工人数(人) (employees),"
        "主要污染物排放量(吨) (pollutant_t),产品产量(产品单位) (output_units)"
    )
    y25 = [hdr] + [f"{park}-{f},2025,{','.join(str(x) for x in v)}" for f, _, v, _ in FIRMS]
    y24 = [hdr] + [f"{park}-{f},2024,{av},{v[1]},{v[2]},{v[3]},{v[4]},{v[5]},{v[6]}" for f, _, v, av in FIRMS]
    (tmp / "e25.csv").write_text("\n".join(y25) + "\n", encoding="utf-8")
    (tmp / "e24.csv").write_text("\n".join(y24) + "\n", encoding="utf-8")
    return tmp / "e25.csv", tmp / "e24.csv"


def _kpi_files(tmp: Path, park: str) -> tuple[Path, Path]:
    cols = (
        "firm_id,year,name,park,land_mu,added_value_10k_cny,tax_10k_cny,revenue_10k_cny,rd_spend_10k_cny,"
        "employees,pollutant_t,output_units,above_scale,years_in_production"
    )
    lines = [cols]
    for f, land, v, av in FIRMS:
        lines.append(f"{park}-{f},2025,{f},{park},{land},{','.join(str(x) for x in v)},1,10.9993")
        lines.append(
            f"{park}-{f},2024,{f},{park},{land},{av},{v[1]},{v[2]},{v[3]},{v[4]},{v[5]},{v[6]},1,9.9986"
        )
    (tmp / "firms.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    energy = ["firm_id,year,carrier,quantity,unit"]
    for f, ((e24, g24), (e25, g25)) in ENERGY.items():
        # the same quantities in the units people write: MWh and 10^4 m3 for 2025
        energy += [f"{park}-{f},2024,electricity,{e24},kWh", f"{park}-{f},2025,electricity,{e25 / 1000},MWh"]
        if g24:
            energy.append(f"{park}-{f},2024,natural_gas,{g24},m3")
        if g25:
            energy.append(f"{park}-{f},2025,natural_gas,{g25 / 10000},10^4 m3")
    (tmp / "energy.csv").write_text("\n".join(energy) + "\n", encoding="utf-8")
    return tmp / "firms.csv", tmp / "energy.csv"


@pytest.fixture
def seeded(db: str, unique_id: str, tmp_path: Path) -> tuple[str, str]:
    _seed(db, unique_id)
    e25, e24 = _economics_files(tmp_path, unique_id)
    runner = CliRunner()
    for f, y in ((e25, 2025), (e24, 2024)):
        res = runner.invoke(firms_app, ["import", str(f), "--year", str(y), "--database-url", db])
        assert res.exit_code == 0, res.output + repr(res.exception)
    return db, unique_id


def test_database_path_equals_csv_path(seeded: tuple[str, str], tmp_path: Path) -> None:
    db, park = seeded
    run_id, n = run_once(db, RS, 2025)
    assert n == 4 and run_id > 0
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            """SELECT firm_id, energy_tce, energy_tce_equal_value, carbon_tco2, intensity_tce_per_10k_cny,
                      intensity_change_pct, mu_tax_10k_cny, score, class, rule_set, rule_version, explanation
               FROM v_firm_kpi_year WHERE year = 2025 ORDER BY firm_id"""
        ).fetchall()
        card = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT indicator, value, target, met FROM v_park_scorecard WHERE park_id = %s AND year = 2025",
                (park,),
            )
        }
    firms_csv, energy_csv = _kpi_files(tmp_path, park)
    csv_res = evaluate_year(RS, read_kpi_inputs(RS, firms_csv, energy_csv, 2025))
    by_id = {f.firm_id: f for f in csv_res.firms}
    assert [r[0] for r in rows] == sorted(by_id)
    for r in rows:
        c = by_id[r[0]]
        got = dict(
            zip(
                [
                    "energy_tce",
                    "energy_tce_equal_value",
                    "carbon_tco2",
                    "intensity_tce_per_10k_cny",
                    "intensity_change_pct",
                    "mu_tax_10k_cny",
                    "score",
                ],
                r[1:8],
                strict=True,
            )
        )
        for k, v in got.items():
            assert v == pytest.approx(getattr(c, k), rel=1e-9), (r[0], k)
        assert r[8] == c.klass and r[9] == "henan-2025" and r[10] == RS.version
        assert r[11]["text"] == c.explanation["text"]
    # fa: 1 000 000 kWh x 0.1229 = 122.9 tce; 1 200 m3 x 1.2143 = 1.45716 tce → 124.35716 tce (当量值)
    fa = next(r for r in rows if r[0].endswith("-fa"))
    assert fa[1] == pytest.approx(124.35716, rel=1e-12)
    # 2024: 950 000 x 0.1229 + 1 000 x 1.2143 = 116.755 + 1.2143 = 117.9693 tce over 4 500 → 0.0262154
    # 2025: 124.35716 / 5 000 = 0.024871432; change = (0.024871432 / 0.0262154 - 1) x 100 = -5.1267 %
    assert fa[5] == pytest.approx((124.35716 / 5000 / (117.9693 / 4500) - 1) * 100, rel=1e-9)
    for ind in ("mu_tax_10k_cny_per_mu", "energy_intensity_change_pct"):
        exp = next(s for s in csv_res.scorecard[park] if s.indicator == ind)
        assert card[ind][0] == pytest.approx(exp.value, rel=1e-9)
        assert card[ind][2] == exp.met
    # park 亩均税收: (2000 + 300 + 100 + 1500) / (100 + 50 + 80 + 60) = 3900 / 290 = 13.448 < 15
    assert (
        card["mu_tax_10k_cny_per_mu"][0] == pytest.approx(3900 / 290)
        and card["mu_tax_10k_cny_per_mu"][2] is False
    )


def test_kpi_cli_json_has_exactly_the_issue_keys(seeded: tuple[str, str], tmp_path: Path) -> None:
    _, park = seeded
    firms_csv, energy_csv = _kpi_files(tmp_path, park)
    res = CliRunner().invoke(
        kpi_app,
        [
            "evaluate",
            "--firms",
            str(firms_csv),
            "--energy",
            str(energy_csv),
            "--year",
            "2025",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    keys = [
        "firm_id",
        "energy_tce",
        "energy_tce_equal_value",
        "carbon_tco2",
        "intensity_tce_per_10k_cny",
        "intensity_change_pct",
        "mu_tax_10k_cny",
        "score",
        "class",
        "explanation",
    ]
    assert len(doc["firms"]) == 4 and all(list(f) == keys for f in doc["firms"])
    assert {s["indicator"] for s in doc["park"]["scorecard"]} >= {
        "mu_tax_10k_cny_per_mu",
        "energy_intensity_change_pct",
    }
    table = CliRunner().invoke(
        kpi_app,
        [
            "evaluate",
            "--firms",
            str(firms_csv),
            "--energy",
            str(energy_csv),
            "--year",
            "2025",
            "--format",
            "table",
        ],
    )
    assert table.exit_code == 0 and f"{park}-fa" in table.output


def test_views_have_the_contract_columns(db: str) -> None:
    expected = {
        "v_firm_kpi_year": [
            "park_id",
            "firm_id",
            "year",
            "rule_set",
            "rule_version",
            "energy_tce",
            "energy_tce_equal_value",
            "carbon_tco2",
            "added_value_10k_cny",
            "intensity_tce_per_10k_cny",
            "intensity_change_pct",
            "mu_tax_10k_cny",
            "mu_added_value_10k_cny",
            "score",
            "class",
            "explanation",
            "evaluated_at",
        ],
        "v_park_scorecard": ["park_id", "year", "indicator", "value", "target", "unit", "met", "source"],
        "v_compliance": [
            "park_id",
            "firm_id",
            "workshop_id",
            "year",
            "month",
            "scheme",
            "verdict",
            "score",
            "detail",
            "evaluated_at",
        ],
    }
    with psycopg.connect(db) as conn:
        for view, cols in expected.items():
            got = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                    (view,),
                )
            ]
            assert got == cols, view


def test_rerun_replaces_results_and_keeps_run_history(seeded: tuple[str, str]) -> None:
    db, _ = seeded
    run_once(db, RS, 2025)
    run_once(db, RS, 2025)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM v_firm_kpi_year WHERE year = 2025").fetchone() == (4,)
        assert conn.execute("SELECT count(*) FROM rule_runs WHERE year = 2025").fetchone() == (2,)
        green = conn.execute("SELECT count(*) FROM v_compliance WHERE scheme = 'green_factory'").fetchone()
        assert green == (4,)


def test_rules_run_cli_stores_and_lists_out_of_scope(seeded: tuple[str, str]) -> None:
    db, park = seeded
    with psycopg.connect(db) as conn:  # a firm started in 2024: < 2 years in production at the end of 2025
        conn.execute("UPDATE firms SET production_start = '2024-06-01' WHERE firm_id = %s", (f"{park}-fd",))
        conn.commit()
    res = CliRunner().invoke(rules_app, ["run", "--year", "2025", "--database-url", db])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "4 firms evaluated for 2025 with henan-2025" in res.output
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT class, score, explanation->>'text' FROM v_firm_kpi_year WHERE firm_id = %s",
            (f"{park}-fd",),
        ).fetchone()
    assert row is not None and row[0] == "out_of_scope" and row[1] is None
    assert "years in production < 2" in row[2]


def test_concurrent_runs_do_not_conflict(seeded: tuple[str, str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    db, _ = seeded
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: run_once(db, RS, 2025), range(2)))
    assert len({r[0] for r in results}) == 2
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM v_firm_kpi_year WHERE year = 2025").fetchone() == (4,)
