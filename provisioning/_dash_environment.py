"""环境监测 — environment: emissions against limits, CEMS data validity, gaps and alerts."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from provisioning._board import Board, stats, table_panel, timeseries_panel
from provisioning._sqlparts import firm_filter

__all__ = ["environment"]

_POLLUTANTS = (
    ("nox_mg_m3", "氮氧化物 NOx", "NOx"),
    ("so2_mg_m3", "二氧化硫 SO2", "SO2"),
    ("particulate_mg_m3", "颗粒物 PM", "particulate matter"),
)
_POLLUTANT_LIST = ", ".join(f"'{m}'" for m, _, _ in _POLLUTANTS)


# Limits and reference oxygen come from the database (v_emission_limits: the alert engine's limits
# file, alerts/data/emission_limits.yaml, synced when the engine starts or by
# `parkpulse alerts limits sync`), so the dashboard shows exactly the figures the alerts use.
# The limit drawn is the one each stack-hour was judged against (v_emission_hours): a stack's own
# limit by its fuel, age class, the park's special limits and local overrides.
_SOURCE = "v_emission_limits, synced from the alert engine's alerts/data/emission_limits.yaml"
# HJ 75/76 valid hour: the emission rules' min_valid_minutes, from the same view.
_VALID_MINUTES = "(SELECT max(min_valid_minutes) AS min_valid_minutes FROM v_emission_limits WHERE active)"


def _emission_sql(metric: str) -> str:
    return f"""
    WITH o2ref AS (
      SELECT source_type, reference_o2_pct AS o2_ref FROM v_emission_limits WHERE entry = 'reference_o2'
    ),
    c AS (
      SELECT r.bucket, r.firm_id || ' ' || r.device_id AS stack, r.avg AS conc, o.avg AS o2, x.o2_ref
      FROM v_readings_1h r
      JOIN v_devices d USING (device_pk)
      LEFT JOIN v_readings_1h o ON o.device_pk = r.device_pk AND o.bucket = r.bucket AND o.metric = 'o2_pct'
      LEFT JOIN o2ref x ON x.source_type = d.source_type
      WHERE {firm_filter("r")} AND r.metric = '{metric}' AND $__timeFilter(r.bucket)
    ),
    lim AS (
      SELECT h.hour, h.firm_id || ' ' || h.device_id AS stack, min(h.limit_value) AS limit_value
      FROM v_emission_hours h
      WHERE {firm_filter("h")} AND h.metric = '{metric}' AND h.limit_value IS NOT NULL AND $__timeFilter(h.hour)
      GROUP BY 1, 2
    )
    SELECT bucket AS "time", stack || ' 折算浓度' AS metric,
           CASE WHEN o2 IS NULL OR o2_ref IS NULL OR o2 >= 20.5 THEN conc
                ELSE conc * (21 - o2_ref) / (21 - o2) END AS value
    FROM c
    UNION ALL
    SELECT hour, stack || ' 限值', limit_value FROM lim
    ORDER BY 1, 2
    """


def environment() -> dm.Dashboard:
    b = Board(
        uid="pp-environment",
        title="环境监测",
        description="Environment: hourly emission averages of the CEMS stacks against their limits "
        f"({_SOURCE}), data validity, data gaps and environmental alerts.",
        tags=["environment", "cems", "inspector"],
        time_from="now-7d",
        refresh="1m",
    )
    for metric, zh, en in _POLLUTANTS:
        b.add(
            timeseries_panel(
                f"{zh} 小时均值 vs 限值",
                f"Hourly average {en} per stack, converted to the reference oxygen content of its source "
                "type with the stack's O2 hourly average (the measured value where O2 or the source type "
                "is unknown), against the limit the alert engine judged that stack-hour by (v_emission_hours: "
                "its fuel and age-class table, Table 3 where the park's special limits apply, local overrides; "
                "the basis is on the alert's evidence page). mg/m³.",
                _emission_sql(metric),
                unit="conmgm3",
                w=8,
            )
        )
    b.add(
        stats(
            "数据有效率",
            "Share of the range's hours with a valid hourly average (at least the emission "
            "rules' min_valid_minutes of good samples per hour, HJ 75/76, from v_emission_limits) over all "
            "pollutant series of the selected CEMS devices.",
            f"""
        WITH h AS (
          SELECT r.device_pk, r.metric, count(*) FILTER (
                   WHERE r.n_good >= v.min_valid_minutes * 60.0 / coalesce(d.poll_interval_s, 60)) AS valid_hours
          FROM v_readings_1h r
          JOIN v_devices d USING (device_pk)
          CROSS JOIN {_VALID_MINUTES} v
          WHERE {firm_filter("r")} AND d.kind = 'cems'
            AND r.metric IN ({_POLLUTANT_LIST}) AND $__timeFilter(r.bucket)
          GROUP BY 1, 2
        )
        SELECT 100.0 * sum(valid_hours)
               / nullif(count(*) * extract(epoch FROM ($__timeTo()::timestamptz - $__timeFrom()::timestamptz)) / 3600, 0)
               AS "有效率 %"
        FROM h
        """,
            unit="percent",
            w=6,
            decimals=1,
            thresholds=((None, "red"), (75, "orange"), (90, "green")),
        )
    )
    b.add(
        table_panel(
            "CEMS 数据有效性",
            "Per stack and pollutant: hours with data, valid hours (HJ 75/76, the emission "
            "rules' min_valid_minutes from v_emission_limits), "
            "samples flagged not good, worst quality seen (0 good … 4 bad).",
            f"""
        SELECT r.firm_id AS "企业 firm", r.device_id AS "设备 device", r.metric AS "指标 metric",
               count(*) AS "有数据小时 hours",
               count(*) FILTER (WHERE r.n_good >= v.min_valid_minutes * 60.0 / coalesce(d.poll_interval_s, 60))
                 AS "有效小时 valid hours",
               sum(r.n - r.n_good) AS "非良好样本 not good", max(r.worst_quality) AS "最差质量 worst"
        FROM v_readings_1h r
        JOIN v_devices d USING (device_pk)
        CROSS JOIN {_VALID_MINUTES} v
        WHERE {firm_filter("r")} AND d.kind = 'cems'
          AND r.metric IN ({_POLLUTANT_LIST}) AND $__timeFilter(r.bucket)
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
        """,
            w=18,
        )
    )
    b.add(
        table_panel(
            "数据缺失",
            "Data the gateways reported missing and batches that never arrived "
            "(v_data_gaps, with the firm from v_gateway_status).",
            f"""
        SELECT g.kind AS "类型 kind", s.firm_id AS "企业 firm", g.gateway_id AS "网关 gateway",
               g.device_id AS "设备 device", g.metric AS "指标 metric", g.start_ts AS "开始 start",
               g.end_ts AS "结束 end", g.count AS "数量 count", g.reason AS "原因 reason",
               g.reported_at AS "报告 reported", g.filled_at AS "补齐 filled"
        FROM v_data_gaps g
        JOIN v_gateway_status s USING (gateway_id)
        WHERE {firm_filter("s")}
          AND coalesce(g.start_ts, g.reported_at) BETWEEN $__timeFrom()::timestamptz AND $__timeTo()::timestamptz
        ORDER BY g.reported_at DESC
        LIMIT 500
        """,
            w=12,
        )
    )
    b.add(
        table_panel(
            "环保告警",
            "Open emission, data-gap and tamper alerts (v_alerts_open); evidence and "
            "acknowledgement are in the console.",
            f"""
        SELECT opened_at AS "开始 opened", severity AS "级别 severity", kind AS "类型 kind",
               firm_id AS "企业 firm", device_id AS "设备 device", metric AS "指标 metric",
               value AS "值 value", limit_value AS "限值 limit", unit AS "单位 unit", state AS "状态 state",
               message_zh AS "说明"
        FROM v_alerts_open
        WHERE {firm_filter(park_rows=True)}
          AND kind IN ('emission', 'data_gap', 'tamper')
        ORDER BY opened_at DESC
        LIMIT 200
        """,
            w=12,
        )
    )
    b.add(
        table_panel(
            "排放限值与来源",
            "The emission limits and reference oxygen the alert engine applies, with their "
            "sources (v_emission_limits; edit alerts/data/emission_limits.yaml, then restart the engine "
            "or run `parkpulse alerts limits sync`). 核实 = checked against the standard's primary text.",
            """
        SELECT source_type AS "排放源 source type", metric AS "指标 metric", limit_mg_m3 AS "限值 mg/m³",
               reference_o2_pct AS "基准氧 %", limit_id AS "限值集 set", active AS "启用 active",
               array_to_string(parks, ', ') AS "园区 parks", standard AS "标准 standard", clause AS "条款 clause",
               edition AS "版本 edition", verified AS "核实 verified", source AS "来源 source", note AS "备注 note",
               synced_at AS "同步 synced"
        FROM v_emission_limits
        WHERE parks IS NULL OR '$park' = ANY (parks)
        ORDER BY entry = 'reference_o2', source_type, metric, limit_id
        """,
            w=24,
        )
    )
    return b.build()
