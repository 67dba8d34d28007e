"""企业详情 — firm detail: energy by carrier, tce, intensity against last year, 亩均, compliance."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from provisioning._board import Board, bars, stats, table_panel, timeseries_panel
from provisioning._sqlparts import FROM_YEAR, KPI_CTE, KPI_YEAR, TO_YEAR, day_filter, firm_filter

__all__ = ["firm_detail"]


def firm_detail() -> dm.Dashboard:
    b = Board(
        uid="pp-firm-detail",
        title="企业详情",
        description="Firm detail: energy by carrier, standard coal, intensity against last year, "
        "亩均 indicators and compliance verdicts. Pick one firm (or several, summed).",
        tags=["firm", "manager"],
        time_from="now-1y",
    )
    b.add(
        stats(
            "能耗强度 vs 上年",
            "Energy per 10k CNY added value in the newest evaluated year, last year's, "
            "and the change (%); a fall of more than 4 % a year meets the provincial target.",
            f"""
        WITH {KPI_CTE},
        y AS (
          SELECT year, sum(energy_tce) / nullif(sum(added_value_10k_cny), 0) AS intensity
          FROM kpi GROUP BY year
        )
        SELECT cur.intensity AS "本年 tce/万元", prev.intensity AS "上年 tce/万元",
               100 * (cur.intensity / nullif(prev.intensity, 0) - 1) AS "变化 %"
        FROM y cur LEFT JOIN y prev ON prev.year = cur.year - 1
        WHERE cur.year = {KPI_YEAR}
        """,
            unit="none",
            w=12,
            decimals=3,
        )
    )
    b.add(
        stats(
            "综合能耗与碳排放",
            "Newest evaluated year: energy in tce (当量值 and 等价值) and CO2 in tonnes.",
            f"""
        WITH {KPI_CTE}
        SELECT sum(energy_tce) AS "当量值 tce", sum(energy_tce_equal_value) AS "等价值 tce",
               sum(carbon_tco2) AS "碳排放 tCO2"
        FROM kpi WHERE year = {KPI_YEAR}
        """,
            unit="none",
            w=12,
            decimals=1,
        )
    )
    b.add(
        timeseries_panel(
            "分品种能耗 (日)",
            "Daily consumption by energy carrier at the firm boundary "
            "(v_firm_energy_daily); each series in its own unit.",
            f"""
        SELECT day::timestamptz AS "time", carrier || ' (' || unit || ')' AS metric, sum(quantity) AS value
        FROM v_firm_energy_daily
        WHERE {firm_filter()} AND direction = 'import' AND {day_filter()}
        GROUP BY day, carrier, unit
        ORDER BY 1, 2
        """,
            w=24,
            bars_style=True,
        )
    )
    b.add(
        timeseries_panel(
            "用电负荷",
            "Active power of the firm's boundary electricity meters, averaged per interval "
            "(v_readings_15m joined with v_devices for the meter level), kW.",
            f"""
        SELECT $__timeGroupAlias(r.bucket, '$__interval'), sum(r.avg) AS "有功功率 kW"
        FROM v_readings_15m r
        JOIN v_devices d USING (device_pk)
        WHERE {firm_filter("r")} AND r.metric = 'active_power_kw'
          AND coalesce(d.meter_level, 1) = 1 AND $__timeFilter(r.bucket)
        GROUP BY 1
        ORDER BY 1
        """,
            unit="kwatt",
            w=12,
            interval="15m",
        )
    )
    b.add(
        bars(
            "综合能耗 (年)",
            "Energy per year in tonnes of standard coal: calorific-equivalent (当量值) and "
            "equal-value (等价值) electricity coefficient.",
            f"""
        WITH {KPI_CTE}
        SELECT year::text AS "年度 year", sum(energy_tce) AS "当量值 tce",
               sum(energy_tce_equal_value) AS "等价值 tce"
        FROM kpi WHERE year BETWEEN {FROM_YEAR} - 2 AND {TO_YEAR}
        GROUP BY year ORDER BY year
        """,
            w=12,
        )
    )
    b.add(
        table_panel(
            "亩均效益指标",
            "亩均 indicators per year: tax and added value per mu, energy intensity, score "
            "and class, with the rule set that produced them.",
            f"""
        WITH {KPI_CTE}
        SELECT year AS "年度 year", firm_id AS "企业 firm", class AS "类别 class", score AS "得分 score",
               mu_tax_10k_cny AS "亩均税收 万元/亩", mu_added_value_10k_cny AS "亩均增加值 万元/亩",
               added_value_10k_cny AS "增加值 万元", intensity_tce_per_10k_cny AS "能耗强度 tce/万元",
               intensity_change_pct AS "强度变化 %", rule_set AS "规则 rule set", rule_version AS "版本"
        FROM kpi WHERE year BETWEEN {FROM_YEAR} - 2 AND {TO_YEAR}
        ORDER BY year DESC, firm_id
        """,
            w=24,
        )
    )
    b.add(
        table_panel(
            "合规判定",
            "Smart-workshop and green-factory verdicts (v_compliance): pass, fail or "
            "insufficient data, per firm or workshop, yearly or monthly.",
            f"""
        SELECT year AS "年度 year", month AS "月 month", firm_id AS "企业 firm",
               coalesce(workshop_id, '—') AS "车间 workshop", scheme AS "方案 scheme",
               verdict AS "判定 verdict", score AS "得分 score", evaluated_at AS "评估时间"
        FROM v_compliance
        WHERE {firm_filter()} AND year BETWEEN {FROM_YEAR} - 1 AND {TO_YEAR}
        ORDER BY year DESC, month DESC NULLS FIRST, firm_id, scheme
        """,
            w=24,
        )
    )
    return b.build()
