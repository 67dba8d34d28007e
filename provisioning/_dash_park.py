"""园区总览 — park overview: scorecard, energy and intensity trends, classes, open alerts."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from provisioning._board import Board, bars, stats, table_panel, timeseries_panel
from provisioning._sqlparts import FROM_YEAR, KPI_CTE, KPI_YEAR, PARK_FILTER, TO_YEAR, day_filter, firm_filter

__all__ = ["park_overview"]

# Click a firm to open its detail dashboard with the same park and time range.
FIRM_LINK = dm.DynamicConfigValue(
    id_val="links",
    value=[
        {
            "title": "企业详情 Firm detail",
            "url": "/d/pp-firm-detail?var-park=${park}&var-firm=${__value.raw}&${__url_time_range}",
        }
    ],
)


def park_overview() -> dm.Dashboard:
    b = Board(
        uid="pp-park-overview",
        title="园区总览",
        description="Park overview: the province's policy targets, energy and intensity trends, "
        "亩均 (per-mu) classes and open alerts for one park.",
        tags=["park", "manager"],
        time_from="now-2y",
    )
    b.add(
        stats(
            "企业数",
            "Firms selected that have an evaluated year (v_firm_kpi_year).",
            f'WITH {KPI_CTE}\nSELECT count(DISTINCT firm_id) AS "企业数" FROM kpi WHERE year = {KPI_YEAR}',
            w=4,
        )
    )
    b.add(
        stats(
            "综合能耗 (当量值)",
            "Total energy of the selected firms in the newest evaluated year, tonnes of "
            "standard coal equivalent (GB/T 2589 calorific-equivalent value).",
            f'WITH {KPI_CTE}\nSELECT sum(energy_tce) AS "综合能耗 tce" FROM kpi WHERE year = {KPI_YEAR}',
            unit="none",
            w=5,
            decimals=1,
        )
    )
    b.add(
        stats(
            "单位增加值能耗",
            "Energy per 10k CNY of industrial added value in the newest evaluated year, "
            "and its change against the year before (the province asks for a fall of more than 4 % a year).",
            f"""
        WITH {KPI_CTE},
        y AS (
          SELECT year, sum(energy_tce) / nullif(sum(added_value_10k_cny), 0) AS intensity
          FROM kpi GROUP BY year
        )
        SELECT cur.intensity AS "tce/万元",
               100 * (cur.intensity / nullif(prev.intensity, 0) - 1) AS "同比 %"
        FROM y cur LEFT JOIN y prev ON prev.year = cur.year - 1
        WHERE cur.year = {KPI_YEAR}
        """,
            unit="none",
            w=5,
            decimals=3,
        )
    )
    b.add(
        stats(
            "未关闭告警",
            "Open alerts (firing or acknowledged) by severity (v_alerts_open).",
            f"""
        SELECT count(*) FILTER (WHERE severity = 'critical') AS "严重 critical",
               count(*) FILTER (WHERE severity = 'warning') AS "警告 warning",
               count(*) FILTER (WHERE severity = 'info') AS "提示 info"
        FROM v_alerts_open
        WHERE {firm_filter(park_rows=True)}
        """,
            w=10,
            thresholds=((None, "green"), (1, "orange")),
        )
    )
    b.add(
        table_panel(
            "政策目标记分卡",
            "Scorecard of the province's action-plan targets for the newest year in range "
            "(v_park_scorecard): value, target, met or not, and the source of the target.",
            f"""
        SELECT indicator AS "指标 indicator", value AS "实际值 value", target AS "目标 target",
               unit AS "单位 unit",
               CASE WHEN met THEN '达标 met' WHEN met IS NULL THEN '—' ELSE '未达标 not met' END AS "达标 met",
               source AS "依据 source", year AS "年度 year"
        FROM v_park_scorecard
        WHERE {PARK_FILTER}
          AND year = (SELECT max(year) FROM v_park_scorecard WHERE {PARK_FILTER} AND year <= {TO_YEAR})
        ORDER BY indicator
        """,
            w=24,
            h=8,
        )
    )
    b.row("能耗 Energy")
    b.add(
        timeseries_panel(
            "日用电量",
            "Daily electricity bought by the selected firms (boundary meters only, "
            "v_firm_energy_daily, kWh).",
            f"""
        SELECT day::timestamptz AS "time", sum(quantity) AS "用电量 kWh"
        FROM v_firm_energy_daily
        WHERE {firm_filter()}
          AND carrier = 'electricity' AND direction = 'import' AND {day_filter()}
        GROUP BY day
        ORDER BY 1
        """,
            unit="kwatth",
            w=12,
            bars_style=True,
        )
    )
    b.add(
        timeseries_panel(
            "能耗强度趋势 (年)",
            "Energy intensity per year: tce per 10k CNY of added value for the "
            "selected firms together (v_firm_kpi_year).",
            f"""
        WITH {KPI_CTE}
        SELECT make_timestamptz(year, 1, 1, 0, 0, 0) AS "time",
               sum(energy_tce) / nullif(sum(added_value_10k_cny), 0) AS "能耗强度 tce/万元"
        FROM kpi
        WHERE year BETWEEN {FROM_YEAR} - 1 AND {TO_YEAR}
        GROUP BY year
        ORDER BY 1
        """,
            unit="none",
            w=12,
        )
    )
    b.row("亩均评价 Per-mu classes")
    b.add(
        bars(
            "亩均分类分布",
            "How many firms are in class A (优先发展), B (鼓励提升), C (倒逼转型) or out of "
            "scope in the newest evaluated year (v_firm_kpi_year).",
            f"""
        WITH {KPI_CTE}
        SELECT class AS "类别 class", count(*) AS "企业数 firms"
        FROM kpi WHERE year = {KPI_YEAR}
        GROUP BY class ORDER BY class
        """,
            w=8,
        )
    )
    b.add(
        table_panel(
            "企业分类与得分",
            "Per-firm 亩均 score and class for the newest evaluated year, with tax and "
            "added value per mu (10k CNY/mu).",
            f"""
        WITH {KPI_CTE}
        SELECT firm_id AS "企业 firm", class AS "类别 class", score AS "得分 score",
               mu_tax_10k_cny AS "亩均税收 万元/亩", mu_added_value_10k_cny AS "亩均增加值 万元/亩",
               intensity_tce_per_10k_cny AS "能耗强度 tce/万元", intensity_change_pct AS "强度变化 %"
        FROM kpi WHERE year = {KPI_YEAR}
        ORDER BY score DESC NULLS LAST, firm_id
        """,
            w=16,
        ).override_by_name("企业 firm", [FIRM_LINK])
    )
    b.row("告警 Alerts")
    b.add(
        table_panel(
            "未关闭告警",
            "Open alerts of the park, newest first (v_alerts_open). Acknowledge them in the console.",
            f"""
        SELECT opened_at AS "开始 opened", severity AS "级别 severity", kind AS "类型 kind",
               firm_id AS "企业 firm", device_id AS "设备 device", metric AS "指标 metric",
               value AS "值 value", limit_value AS "限值 limit", unit AS "单位 unit",
               state AS "状态 state", message_zh AS "说明"
        FROM v_alerts_open
        WHERE {firm_filter(park_rows=True)}
        ORDER BY opened_at DESC
        LIMIT 200
        """,
            w=24,
            h=9,
        )
    )
    return b.build()
