"""Every dashboard panel and variable query runs against a seeded real PostgreSQL.

The seeding writes a small park the way the services do: the registry through
`parkpulse.registry.import_registry`, three days of readings through COPY into `readings` plus
`rollup_dirty` and `pp_refresh_rollups()`, counter events, device status and data gaps as ingest
records them, KPI / scorecard / compliance rows in the rules result tables (migration 0200),
alerts through `pp_alert_fire` (migration 0300) and the emission limits through the alert engine's
own sync (`alerts.sync_limits`, migration 0303), and the shipped tariffs through the costs sync
and assignment (`costs.sync_tariffs`, `costs.assign_tariff`, migration 0500). The SQL of each panel is expanded as Grafana's
PostgreSQL datasource does (provisioning.sqlmacros documents the rules) and must return rows of
the shape the panel type needs. No panel is skipped: the test counts them.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts import load_rules, sync_limits
from costs import Assignment, assign_tariff, load_tariffs, sync_tariffs
from parkpulse.registry import Cluster as ClusterModel
from parkpulse.registry import Device, Firm, Gateway, ParkFile, ParkInfo, Workshop, import_registry
from provisioning.dashboards import DEFAULT_OUT, iter_panels
from provisioning.panelcheck import check_dashboards, load_dashboards, resolve_variables
from provisioning.sqlmacros import MacroError, TimeRange, Variable, expand, interpolate_variables

CONTRACT_VIEWS = {
    "v_devices",
    "v_readings",
    "v_readings_15m",
    "v_readings_1h",
    "v_readings_1d",
    "v_counter_daily",
    "v_energy_daily",
    "v_firm_energy_daily",
    "v_device_last_seen",
    "v_gateway_status",
    "v_data_gaps",
    "v_alerts",
    "v_alerts_open",
    "v_firm_kpi_year",
    "v_park_scorecard",
    "v_compliance",
    "v_emission_limits",
    "v_emission_hours",
    "v_firm_cost_daily",
    "v_firm_cost_monthly",
    "v_firm_tou_register_check",
    "v_firm_capacity_charge_monthly",
    # the costs contract's bounded functions (those views' rows for a range of days)
    "pp_firm_cost_daily",
    "pp_firm_cost_monthly",
}
PARK = "hz-park"
FIRMS = ("f-steel", "f-textile")
OFFICE = "f-office"  # a firm with economic data and results but no gateway yet


def _park() -> ParkFile:
    def firm(fid: str, name: str, cems: bool) -> Firm:
        devices = [
            Device(id="m-main", kind="meter", meter_level=1, carrier="electricity", poll_interval_s=300),
            Device(
                id="m-sub",
                kind="meter",
                meter_level=2,
                carrier="electricity",
                poll_interval_s=300,
                workshop=f"{fid}-w1",
            ),
            Device(id="gas-1", kind="meter", meter_level=1, carrier="natural_gas", poll_interval_s=300),
            Device(id="line-1", kind="line", workshop=f"{fid}-w1", poll_interval_s=60),
        ]
        if cems:
            devices.append(
                Device(
                    id="cems-1",
                    kind="cems",
                    source_type="gas_boiler",
                    fuel="gas",
                    age_class="existing",
                    poll_interval_s=60,
                )
            )
        return Firm(
            id=fid,
            name=name,
            cluster="c-equip",
            land_mu=80,
            size_class="above_scale",
            workshops=[Workshop(id=f"{fid}-w1", name="一车间", smart_declared=True)],
            gateways=[Gateway(id=f"{fid}-gw1", devices=devices)],
        )

    return ParkFile(
        park=ParkInfo(id=PARK, name="测试园区", name_en="Test park", province="浙江"),
        clusters=[ClusterModel(id="c-equip", name="装备制造")],
        firms=[
            firm(FIRMS[0], "钢构公司", True),
            firm(FIRMS[1], "纺织公司", False),
            Firm(id=OFFICE, name="软件园公司", land_mu=12, size_class="below_scale"),
        ],
    )


def _readings(
    end: datetime, metric_ids: dict[str, int], pks: dict[tuple[str, str], int]
) -> list[tuple[Any, ...]]:
    """Three days ending at `end`: meters every 5 min, lines and CEMS every minute."""
    rows: list[tuple[Any, ...]] = []
    start = end - timedelta(days=3)
    for (_fid, dev), pk in pks.items():
        step = 60 if dev in ("line-1", "cems-1") else 300
        n = int((end - start).total_seconds() // step)
        kwh = gas = good = reject = 0.0
        for i in range(n + 1):
            ts = start + timedelta(seconds=i * step)
            hour = ts.hour + ts.minute / 60
            load = 400 + 300 * max(0.0, math.sin((hour - 6) / 24 * 2 * math.pi))
            if dev in ("m-main", "m-sub"):
                power = load if dev == "m-main" else load / 3
                kwh += power * step / 3600
                out = [("elec_import_kwh", kwh), ("active_power_kw", power)]
                if dev == "m-main":
                    out.append(("elec_export_kwh", 0.05 * kwh))
                if (_fid, dev) == (FIRMS[0], "m-main"):
                    # per-tariff registers of a meter whose period table is wrong: all on flat
                    out += [(f"elec_import_kwh_{p}", 0.0) for p in ("sharp", "peak", "valley")]
                    out.append(("elec_import_kwh_flat", kwh))
            elif dev == "gas-1":
                gas += 0.3 * step / 60
                out = [("gas_volume_m3", gas)]
            elif dev == "line-1":
                state = 4 if (i // 60) % 24 == 3 else (3 if i % 97 == 0 else 2)
                if state == 2:
                    good += 9.0
                    reject += 0.2 if i % 5 == 0 else 0.0
                out = [
                    ("machine_state", state),
                    ("good_count", good),
                    ("reject_count", reject),
                    ("ideal_rate_pcs_h", 600.0),
                ]
            else:  # cems-1: NOx above the gas-boiler limit during the last six hours
                nox = 240.0 if ts > end - timedelta(hours=6) else 120.0 + 10 * math.sin(i / 30)
                out = [("nox_mg_m3", nox), ("so2_mg_m3", 12.0), ("particulate_mg_m3", 4.0), ("o2_pct", 3.5)]
            quality = 3 if (dev == "cems-1" and i % 50 == 0) else 0
            rows.extend((pk, metric_ids[m], ts, float(v), quality) for m, v in out)
    return rows


def _seed(dsn: str, end: datetime) -> None:
    with psycopg.connect(dsn) as conn:
        import_registry(conn, _park())
        conn.commit()
        _seed_tariffs(conn)
        metric_ids: dict[str, int] = dict(conn.execute("SELECT name, metric_id FROM metrics").fetchall())
        pks = {
            (f, d): pk
            for pk, f, d in conn.execute(
                "SELECT device_pk, firm_id, device_id FROM v_devices WHERE park_id = %s", (PARK,)
            ).fetchall()
        }
        rows = _readings(end, metric_ids, pks)
        months = {datetime(r[2].year, r[2].month, 1, tzinfo=UTC) for r in rows}
        for m in sorted(months):
            conn.execute("SELECT pp_ensure_partition(%s)", (m,))
        with conn.cursor().copy("COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        conn.execute(
            "INSERT INTO rollup_dirty (bucket) SELECT DISTINCT date_bin('15 minutes', ts, '2000-01-01') "
            "FROM readings"
        )
        # What ingest records beside the readings.
        conn.execute("""
            INSERT INTO device_status (device_pk, last_ts, received_at, last_quality, readings)
            SELECT device_pk, max(ts), now(), 0, count(*) FROM readings GROUP BY device_pk""")
        reset_at = end - timedelta(days=1, hours=5)
        conn.execute(
            "INSERT INTO counter_events (device_pk, metric_id, ts, event, prev, value, correction) "
            "VALUES (%s, %s, %s, 'replaced', 1000, 5, 995)",
            (pks[(FIRMS[0], "m-main")], metric_ids["elec_import_kwh"], reset_at),
        )
        conn.execute(
            "INSERT INTO data_gaps (gateway_id, device_id, metric, start_ts, end_ts, count, reason, source) "
            "VALUES (%s, 'cems-1', 'nox_mg_m3', %s, %s, 12, 'read timeout', 'gateway')",
            (f"{FIRMS[0]}-gw1", end - timedelta(hours=30), end - timedelta(hours=29)),
        )
        conn.execute(
            "INSERT INTO gateway_status (gateway_id, state, version, spool_depth, last_seq) "
            "SELECT gateway_id, 'online', '0.1.0', 0, 42 FROM gateways"
        )
        conn.commit()
        conn.execute("SELECT pp_refresh_rollups()")
        conn.commit()
        _seed_results(conn, end)
        conn.commit()


def _seed_tariffs(conn: psycopg.Connection) -> None:
    """The shipped tariffs file (costs/data/tariffs.yaml) synced as `parkpulse tariffs sync` does; the
    two metered firms on its two-part time-of-use tariff (demand basis) and its gas price."""
    tf = load_tariffs()
    sync_tariffs(conn, tf)
    elec = next(t for t in tf.tariffs if t.carrier == "electricity")
    gas = next(t for t in tf.tariffs if t.carrier == "natural_gas")
    since = min(v.valid_from for v in elec.versions)
    for fid in FIRMS:
        assign_tariff(conn, Assignment(fid, elec.id, since, voltage_class="kv1_10", capacity_basis="demand"))
        assign_tariff(conn, Assignment(fid, gas.id, min(v.valid_from for v in gas.versions)))
    conn.commit()


def _seed_results(conn: psycopg.Connection, end: datetime) -> None:
    """Rules results (migration 0200 tables), alerts (0300's pp_alert_fire) and the emission limits
    the alert engine writes when it starts (its shipped limits file)."""
    sync_limits(conn, load_rules())
    y = end.year
    for k, (fid, cls, score) in enumerate(
        ((FIRMS[0], "A", 86.5), (FIRMS[1], "C", 48.0), (OFFICE, "out_of_scope", None))
    ):
        for year, tce, av in ((y - 2, 5200.0 + k * 900, 41000.0), (y - 1, 4900.0 + k * 950, 42500.0)):
            conn.execute(
                """INSERT INTO firm_kpi_results (firm_id, year, park_id, rule_set, rule_version, energy_tce,
                     energy_tce_equal_value, carbon_tco2, added_value_10k_cny, intensity_tce_per_10k_cny,
                     intensity_change_pct, mu_tax_10k_cny, mu_added_value_10k_cny, score, class)
                   VALUES (%s, %s, %s, 'zj-mu-2024', '1', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    fid,
                    year,
                    PARK,
                    tce,
                    tce * 2.3,
                    tce * 2.6,
                    av,
                    tce / av,
                    -4.5,
                    21.0 - k * 12,
                    510.0 - k * 200,
                    score,
                    cls,
                ),
            )
    for ind, value, target, unit, met in (
        ("mu_tax_10k_cny", 16.2, 15.0, "万元/亩", True),
        ("intensity_change_pct", -3.1, -4.0, "%", False),
        ("smart_coverage_pct", 50.0, 60.0, "%", False),
    ):
        conn.execute(
            """INSERT INTO park_scorecard_results (park_id, year, indicator, rule_set, rule_version, value,
                 target, unit, met, source) VALUES (%s, %s, %s, 'zj-mu-2024', '1', %s, %s, %s, %s, %s)""",
            (PARK, y - 1, ind, value, target, unit, met, "浙江省行动方案 (test seed)"),
        )
    for fid in FIRMS:
        for scheme, ws, verdict in (
            ("smart_workshop", f"{fid}-w1", "pass"),
            ("green_factory", None, "insufficient_data"),
        ):
            conn.execute(
                """INSERT INTO compliance_results (park_id, firm_id, workshop_id, year, month, scheme, rule_set,
                     rule_version, verdict, score) VALUES (%s, %s, %s, %s, NULL, %s, 'std', '1', %s, %s)""",
                (PARK, fid, ws, y - 1, scheme, verdict, 72.0),
            )
    fired: tuple[tuple[str, str, str, str | None, str, float | None, float | None], ...] = (
        ("emission-nox", "emission", "critical", "nox_mg_m3", "cems-1", 240.0, 200.0),
        ("data-gap", "data_gap", "warning", None, "cems-1", None, None),
    )
    for rule, kind, sev, metric, dev, fired_value, limit in fired:
        conn.execute(
            "SELECT pp_alert_fire(%s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{}'::jsonb)",
            (
                rule,
                kind,
                sev,
                PARK,
                FIRMS[0],
                f"{FIRMS[0]}-gw1",
                dev,
                metric,
                f"{FIRMS[0]}-gw1/{dev}/{metric}",
                fired_value,
                limit,
                "mg/m3" if metric else None,
                "测试告警",
                "test alert",
            ),
        )


_RANGE_RE = re.compile(r"now-(\d+)([hdy])")


def _range(d: dict[str, Any], end: datetime) -> TimeRange:
    m = _RANGE_RE.fullmatch(d["time"]["from"])
    assert m, f"{d['uid']}: time.from {d['time']['from']!r} not understood by the test"
    n, unit = int(m.group(1)), m.group(2)
    delta = {"h": timedelta(hours=n), "d": timedelta(days=n), "y": timedelta(days=365 * n)}[unit]
    return TimeRange(end - delta, end)


@pytest.fixture
def seeded(db: str) -> tuple[str, datetime]:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    _seed(db, end)
    return db, end + timedelta(minutes=1)


def _all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, p) for name, d in load_dashboards().items() for p in iter_panels(d)]


def test_deploy_every_panel_returns_rows_of_its_shape(seeded: tuple[str, datetime]) -> None:
    dsn, end = seeded
    dashboards = load_dashboards(DEFAULT_OUT)
    assert len(dashboards) == 6
    n_targets = sum(len(p["targets"]) for _, p in _all_panels())
    with psycopg.connect(dsn) as conn:
        conn.read_only = True
        checked = []
        for name, d in dashboards.items():
            for firms in (None, [FIRMS[0]]):  # "All" and one chosen firm
                chosen = {"park": [PARK], **({"firm": firms} if firms else {})}
                checked_here = list(check_dashboards(conn, {name: d}, _range(d, end), chosen))
                checked.extend(checked_here)
    assert len(checked) == 2 * n_targets, "a panel target was not run"
    failures = [f"{r.dashboard} / {r.panel}: {r.problems}\n{r.sql}" for r in checked if r.problems]
    assert not failures, "\n\n".join(failures)
    empty = [f"{r.dashboard} / {r.panel} ({r.columns})" for r in checked if r.rows == 0]
    assert not empty, "panels without rows on the seeded park:\n" + "\n".join(empty)


def test_deploy_variables_list_the_seeded_park_and_firms(seeded: tuple[str, datetime]) -> None:
    dsn, end = seeded
    with psycopg.connect(dsn) as conn:
        for name, d in load_dashboards().items():
            names = [v["name"] for v in d["templating"]["list"]]
            assert names[:2] == ["park", "firm"], name
            assert names[2:] == (["shift_kwh"] if name == "energy-cost.json" else []), name
            v = resolve_variables(conn, d, _range(d, end), {"park": [PARK]})
            assert v["park"].values == (PARK,)
            assert set(v["firm"].values) == {*FIRMS, OFFICE} and v["firm"].include_all and v["firm"].multi


def test_deploy_panels_read_only_contract_views() -> None:
    """FROM / JOIN targets are contract views (or the costs contract's functions) or the query's own
    CTEs, never tables."""
    bad = []
    for name, p in _all_panels():
        for t in p["targets"]:
            sql = t["rawSql"]
            ctes = set(re.findall(r"(?:WITH|,)\s*(\w+)(?:\([^)]*\))?\s+AS\s*\(", sql, flags=re.I))
            for rel in re.findall(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)", sql, flags=re.I):
                if rel.lower() not in CONTRACT_VIEWS | {c.lower() for c in ctes}:
                    bad.append(f"{name} / {p['title']}: {rel}")
    assert not bad, bad


def test_deploy_macro_expansion_follows_grafana() -> None:
    tr = TimeRange(datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC), datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC))
    v = {
        "park": Variable("park", ("o'park",)),
        "firm": Variable("firm", ("a", "b"), multi=True, include_all=True),
    }
    sql = (
        "SELECT $__timeGroupAlias(ts, '5m'), $__time(t2), $__timeEpoch(t3) FROM x WHERE $__timeFilter(ts) "
        "AND park_id = '$park' AND firm_id IN ($firm) AND f IN (${firm:csv}) AND $__unixEpochFilter(e) "
        "AND a > $__timeFrom() AND b < $__timeTo() AND g = $__unixEpochGroupAlias(e, '1h') AND i = '$__interval'"
    )
    out = expand(sql, v, tr, interval="15m")
    assert out == (
        'SELECT floor(extract(epoch from ts)/300)*300 AS "time", t2 AS "time", extract(epoch from t3) AS "time" '
        "FROM x WHERE ts BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z' "
        "AND park_id = 'o''park' AND firm_id IN ('a','b') AND f IN (a,b) AND e >= 1492750877 AND e <= 1492751177 "
        "AND a > '2017-04-21T05:01:17Z' AND b < '2017-04-21T05:06:17Z' AND g = floor((e)/3600)*3600 AS \"time\" "
        "AND i = '15m'"
    )
    with pytest.raises(MacroError, match=r"\$nope"):
        interpolate_variables("SELECT $nope", v, tr)
    with pytest.raises(MacroError, match="timeGroup"):
        expand("SELECT $__timeGroup(ts)", v, tr)
    with pytest.raises(MacroError, match="not a Grafana PostgreSQL macro"):
        expand("SELECT $__bogus(ts)", v, tr)


def test_deploy_dashboards_record_grafana_build_and_datasource() -> None:
    for name, d in load_dashboards().items():
        req = {r["id"]: r["version"] for r in d["__requires"]}
        assert req["grafana"].startswith("11.6"), name
        assert "grafana-postgresql-datasource" in req
        assert re.search(r"[\u4e00-\u9fff]", d["title"]), f"{name}: title must be Chinese"
        assert d["description"] and d["uid"].startswith("pp-")
        for p in iter_panels(d):
            assert p["datasource"]["uid"] == "parkpulse-pg", (name, p["title"])
            assert p.get("description"), (name, p["title"])
            assert re.search(r"[\u4e00-\u9fff]", p["title"]), (name, p["title"])
    ids = [p["id"] for _, p in _all_panels()]
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_deploy_provisioning_points_at_the_dashboards() -> None:
    import yaml

    root = Path(DEFAULT_OUT).parent
    ds = yaml.safe_load((root / "provisioning/datasources/parkpulse.yaml").read_text())
    (pg,) = ds["datasources"]
    assert pg["uid"] == "parkpulse-pg" and pg["type"] == "grafana-postgresql-datasource"
    assert pg["jsonData"]["database"] and "${" in pg["secureJsonData"]["password"]
    dp = yaml.safe_load((root / "provisioning/dashboards/parkpulse.yaml").read_text())
    (prov,) = dp["providers"]
    assert "/dashboards" in prov["options"]["path"] and prov["folderUid"] == "parkpulse"
    json.dumps(ds)


def test_deploy_checker_catches_wrong_shapes(seeded: tuple[str, datetime]) -> None:
    """The shape rules are not vacuous: broken panels of each type are reported."""
    dsn, end = seeded

    def dash(*panels: tuple[str, str, str]) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(
            (DEFAULT_OUT / "park-overview.json").read_text()
        )  # its variables, range
        d["panels"] = [
            {
                "type": kind,
                "title": title,
                "targets": [{"rawSql": sql, "format": "time_series" if kind == "timeseries" else "table"}],
            }
            for kind, title, sql in panels
        ]
        return d

    broken = dash(
        ("timeseries", "no time", "SELECT 1 AS value FROM v_devices WHERE park_id = '$park'"),
        (
            "timeseries",
            "unsorted",
            "SELECT * FROM (VALUES (now(), 1.0), (now() - interval '1 day', 2.0)) AS t(\"time\", value)",
        ),
        ("timeseries", "text value", "SELECT now() AS \"time\", 'x'::text AS label, 1 AS value"),
        ("stat", "no number", "SELECT park_id FROM v_devices WHERE park_id = '$park' LIMIT 1"),
        ("barchart", "number first", "SELECT 1 AS n, 2 AS m"),
        ("table", "bad sql", "SELECT nope FROM v_devices"),
        ("stat", "all null", "SELECT NULL::float AS v"),
    )
    with psycopg.connect(dsn) as conn:
        results = {
            r.panel: r for r in check_dashboards(conn, {"x": broken}, _range(broken, end), {"park": [PARK]})
        }
    assert "no 'time' column" in results["no time"].problems[0]
    assert results["unsorted"].problems == ["rows are not sorted by time"]
    assert "extra non-numeric columns ['label']" in results["text value"].problems[0]
    assert "without a numeric column" in results["no number"].problems[0]
    assert "text or time x column" in results["number first"].problems[0]
    assert "UndefinedColumn" in results["bad sql"].problems[0]
    assert results["all null"].problems == ["every value is NULL"]


@pytest.mark.timescale
def test_deploy_panels_on_real_timescaledb() -> None:
    """The same check on the TimescaleDB path (continuous aggregates), when a server is given."""
    import os
    import uuid

    from parkpulse.db import migrate, server_dsn

    url = os.environ.get("PARKPULSE_TEST_TIMESCALE_URL")
    if not url:
        pytest.skip("PARKPULSE_TEST_TIMESCALE_URL is not set (no TimescaleDB on this machine)")
    dsn = server_dsn(url, f"pp_deploy_ts_{uuid.uuid4().hex[:8]}")
    try:
        migrate(dsn, prefer="timescale")
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        _seed(dsn, end)
        with psycopg.connect(dsn) as conn:
            checked = list(
                check_dashboards(
                    conn, load_dashboards(), TimeRange(end - timedelta(days=400), end), {"park": [PARK]}
                )
            )
        assert checked and not [r for r in checked if r.problems or r.rows == 0]
    finally:
        with psycopg.connect(server_dsn(url, "postgres"), autocommit=True) as admin:
            admin.execute(
                f'DROP DATABASE IF EXISTS "{psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]}" WITH (FORCE)'
            )


def test_deploy_check_cli_runs_every_panel(seeded: tuple[str, datetime]) -> None:
    from typer.testing import CliRunner

    from provisioning.grafana_cli import app

    dsn, _ = seeded
    res = CliRunner().invoke(
        app, ["check", "--database-url", dsn, "--park", PARK, "--days", "3"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    assert res.output.count(" ok ") == len([t for _, p in _all_panels() for t in p["targets"]])
    res = CliRunner().invoke(app, ["check", "--database-url", dsn, "--park", "no-such-park"])
    assert res.exit_code == 2 and "no-such-park" in res.output


def _panel_rows(conn: psycopg.Connection, title: str, end: datetime) -> list[tuple[Any, ...]]:
    d = load_dashboards()["environment.json"]
    (panel,) = [p for p in iter_panels(d) if p["title"] == title]
    variables = resolve_variables(conn, d, _range(d, end), {"park": [PARK]})
    sql = expand(panel["targets"][0]["rawSql"], variables, _range(d, end), "1h")
    return conn.execute(sql.encode()).fetchall()


def _judge_emissions(dsn: str, end: datetime) -> None:
    """What the alert engine does every few minutes: judge each stack-hour against its own limit."""
    import asyncio

    from alerts._periodic import PeriodicEvaluator
    from alerts._tracker import Tracker

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await PeriodicEvaluator(load_rules(), Tracker(), PARK).emissions(conn, end)

    asyncio.run(run())


def test_deploy_environment_limits_come_from_the_alert_engines_file(
    tmp_path: Path, seeded: tuple[str, datetime]
) -> None:
    """The limit line is the limit the alert engine judged each stack-hour by (v_emission_hours): a
    stack's own, from its fuel and age class and the park's special limits, not one per source type."""
    dsn, end = seeded
    stack = f"{FIRMS[0]} cems-1"
    _judge_emissions(dsn, end)
    with psycopg.connect(dsn) as conn:
        rows = _panel_rows(conn, "氮氧化物 NOx 小时均值 vs 限值", end)
        # an existing gas boiler outside a 2+26 city: GB 13271-2014 Table 1, NOx 400 mg/m³
        assert {v for _, m, v in rows if m == f"{stack} 限值"} == {400.0}
        # measured at 3.5 % O2 on a gas boiler (reference 3.5 %): the converted value is the measured one
        assert max(v for _, m, v in rows if m == f"{stack} 折算浓度") == pytest.approx(240.0)
        so2 = _panel_rows(conn, "二氧化硫 SO2 小时均值 vs 限值", end)
        assert {v for _, m, v in so2 if m == f"{stack} 限值"} == {100.0}  # Table 1, gas, SO2
        valid = _panel_rows(conn, "CEMS 数据有效性", end)
        assert valid and all(0 < r[4] <= r[3] for r in valid), valid
        # the park is declared under special limits: hours judged from then on use Table 3 (NOx 150)
        conn.execute(
            "UPDATE parks SET special_limits_apply = true, special_limits_basis = 'test: 2+26 notice', "
            "special_limits_since = '2018-10-01' WHERE park_id = %s",
            (PARK,),
        )
        conn.execute("DELETE FROM alert_emission_hours")
        conn.commit()
    _judge_emissions(dsn, end)
    with psycopg.connect(dsn) as conn:
        rows = _panel_rows(conn, "氮氧化物 NOx 小时均值 vs 限值", end)
        assert {v for _, m, v in rows if m == f"{stack} 限值"} == {150.0}
        basis = conn.execute(
            "SELECT DISTINCT limit_basis FROM v_emission_hours WHERE metric = 'nox_mg_m3'"
        ).fetchall()
        assert len(basis) == 1 and "Table 3" in basis[0][0] and "150" in basis[0][0]
        sources = _panel_rows(conn, "排放限值与来源", end)
        gas_nox = {r[2] for r in sources if r[0] == "gas_boiler" and r[1] == "nox_mg_m3"}
        assert {400.0, 200.0, 150.0} <= gas_nox  # Tables 1–3 listed with their sources
