"""能源与碳排放 — energy and carbon across the park's firms."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from provisioning._board import Board, bars, table_panel, timeseries_panel
from provisioning._sqlparts import FROM_YEAR, KPI_CTE, KPI_YEAR, TO_YEAR, day_filter, firm_filter

__all__ = ["energy_carbon"]


def energy_carbon() -> dm.Dashboard:
    b = Board(
        uid="pp-energy-carbon",
        title="能源与碳排放",
        description="Energy and carbon: daily consumption per firm and carrier, electricity bought "
        "and fed back, yearly tce and CO2, and meter readings flagged as suspect.",
        tags=["energy", "carbon", "manager"],
        time_from="now-90d",
    )
    b.add(
        timeseries_panel(
            "企业日用电量",
            "Electricity bought per firm per day (boundary meters, kWh).",
            f"""
        SELECT day::timestamptz AS "time", firm_id AS metric, sum(quantity) AS value
        FROM v_firm_energy_daily
        WHERE {firm_filter()}
          AND carrier = 'electricity' AND direction = 'import' AND {day_filter()}
        GROUP BY day, firm_id
        ORDER BY 1, 2
        """,
            unit="kwatth",
            w=12,
        )
    )
    b.add(
        timeseries_panel(
            "购电与上网电量",
            "Electricity imported and exported (e.g. rooftop PV fed to the grid) per "
            "day, all selected firms, kWh.",
            f"""
        SELECT day::timestamptz AS "time",
               sum(quantity) FILTER (WHERE direction = 'import') AS "购电 import",
               coalesce(sum(quantity) FILTER (WHERE direction = 'export'), 0) AS "上网 export"
        FROM v_firm_energy_daily
        WHERE {firm_filter()} AND carrier = 'electricity' AND {day_filter()}
        GROUP BY day
        ORDER BY 1
        """,
            unit="kwatth",
            w=12,
        )
    )
    b.add(
        table_panel(
            "能源品种结构",
            "Consumption by carrier over the time range: total, number of boundary "
            "meters, and days with a suspect counter step.",
            f"""
        SELECT carrier AS "品种 carrier", direction AS "方向 direction", unit AS "单位 unit",
               sum(quantity) AS "合计 total", max(meters) AS "计量表 meters",
               count(*) FILTER (WHERE suspect) AS "可疑天数 suspect days"
        FROM v_firm_energy_daily
        WHERE {firm_filter()} AND {day_filter()}
        GROUP BY carrier, direction, unit
        ORDER BY carrier, direction
        """,
            w=12,
        )
    )
    b.add(
        bars(
            "碳排放 (按企业)",
            "CO2 per firm in the newest evaluated year (tonnes), from the grid emission "
            "factor and fuel coefficients of the rule set.",
            f"""
        WITH {KPI_CTE}
        SELECT firm_id AS "企业 firm", carbon_tco2 AS "碳排放 tCO2"
        FROM kpi WHERE year = {KPI_YEAR}
        ORDER BY carbon_tco2 DESC NULLS LAST
        """,
            w=12,
        )
    )
    b.add(
        timeseries_panel(
            "综合能耗与碳排放 (年)",
            "Yearly totals of the selected firms: energy (tce) and CO2 (t).",
            f"""
        WITH {KPI_CTE}
        SELECT make_timestamptz(year, 1, 1, 0, 0, 0) AS "time",
               sum(energy_tce) AS "综合能耗 tce", sum(carbon_tco2) AS "碳排放 tCO2"
        FROM kpi WHERE year BETWEEN {FROM_YEAR} - 3 AND {TO_YEAR}
        GROUP BY year
        ORDER BY 1
        """,
            w=12,
            bars_style=True,
        )
    )
    b.add(
        table_panel(
            "计量异常",
            "Meter-days with a counter event (reset, rollover, replacement, jump) or a step "
            "that stayed negative after correction (v_energy_daily); check them before reporting.",
            f"""
        SELECT day AS "日期 day", firm_id AS "企业 firm", gateway_id AS "网关 gateway",
               device_id AS "设备 device", metric AS "指标 metric", raw_delta AS "原始差值 raw",
               correction AS "修正 correction", quantity AS "计入 counted", n_events AS "事件 events",
               CASE WHEN suspect THEN '可疑 suspect' ELSE '已修正 corrected' END AS "状态 status"
        FROM v_energy_daily
        WHERE {firm_filter()} AND (suspect OR n_events > 0) AND {day_filter()}
        ORDER BY day DESC, firm_id, device_id
        LIMIT 500
        """,
            w=24,
        )
    )
    return b.build()
