"""智能车间 — smart workshop: device networking rate, OEE, smart-workshop verdicts."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from provisioning._board import Board, stats, table_panel, timeseries_panel
from provisioning._sqlparts import FROM_YEAR, TO_YEAR, firm_filter

__all__ = ["smart_workshop"]

# Hourly OEE inputs per line: machine_state from raw readings (share of samples running /
# in planned stop; the share of the hour the samples cover), part counters from hourly rollups (increase = last − last of the hour before),
# and the ideal rate. OEE = availability × performance × quality
#   = good parts / (ideal rate × planned production time).
_OEE_CTES = f"""
st AS (
  SELECT r.device_pk, r.firm_id || ' ' || r.device_id AS line, $__timeGroup(r.ts, '1h') AS t,
         avg(CASE WHEN r.value = 2 THEN 1.0 ELSE 0.0 END) AS run_frac,
         avg(CASE WHEN r.value = 4 THEN 1.0 ELSE 0.0 END) AS planned_stop_frac,
         least(1.0, count(*) * max(coalesce(d.poll_interval_s, 60)) / 3600.0) AS covered_h
  FROM v_readings r
  JOIN v_devices d USING (device_pk)
  WHERE {firm_filter("r")} AND r.metric = 'machine_state' AND $__timeFilter(r.ts)
  GROUP BY 1, 2, 3
),
cnt AS (
  SELECT device_pk, metric, bucket, avg,
         last - lag(last) OVER (PARTITION BY device_pk, metric ORDER BY bucket) AS inc
  FROM v_readings_1h
  WHERE {firm_filter()}
    AND metric IN ('good_count', 'reject_count', 'ideal_rate_pcs_h')
    AND bucket BETWEEN $__timeFrom()::timestamptz - interval '1 hour' AND $__timeTo()::timestamptz
),
h AS (
  SELECT device_pk, $__timeGroup(bucket, '1h') AS t,
         sum(greatest(inc, 0)) FILTER (WHERE metric = 'good_count') AS good,
         sum(greatest(inc, 0)) FILTER (WHERE metric = 'reject_count') AS reject,
         avg(avg) FILTER (WHERE metric = 'ideal_rate_pcs_h') AS ideal
  FROM cnt WHERE $__timeFilter(bucket)
  GROUP BY 1, 2
)"""


def smart_workshop() -> dm.Dashboard:
    b = Board(
        uid="pp-smart-workshop",
        title="智能车间",
        description="Smart workshop (智能车间): how much of the equipment is networked and online, "
        "OEE of the production lines, and the smart-workshop verdicts.",
        tags=["workshop", "smart", "manager"],
        time_from="now-24h",
        refresh="1m",
    )
    b.add(
        stats(
            "设备联网率",
            "Networked: share of the workshops' registered devices that have ever reported "
            "(v_device_last_seen). Online: share that reported within 3 poll intervals (at least 15 min).",
            f"""
        SELECT 100.0 * count(*) FILTER (WHERE s.last_ts IS NOT NULL) / nullif(count(*), 0) AS "联网率 %",
               100.0 * count(*) FILTER (WHERE s.silent_s <= greatest(3 * coalesce(s.poll_interval_s, 60), 900))
                     / nullif(count(*), 0) AS "在线率 %"
        FROM v_device_last_seen s
        JOIN v_devices d USING (device_pk)
        WHERE {firm_filter("s")} AND d.workshop_id IS NOT NULL AND d.enabled
        """,
            unit="percent",
            w=8,
            decimals=1,
            thresholds=((None, "red"), (60, "orange"), (90, "green")),
        )
    )
    b.add(
        stats(
            "OEE 三要素",
            "Over the time range, all selected lines: availability (running / planned time), "
            "performance (parts / ideal rate × running time), quality (good / all parts), OEE = A × P × Q.",
            f"""
        WITH {_OEE_CTES},
        tot AS (
          SELECT sum(st.covered_h * st.run_frac) AS run_h, sum(st.covered_h * (1 - st.planned_stop_frac)) AS planned_h,
                 sum(h.good) AS good, sum(h.good + h.reject) AS parts,
                 sum(h.ideal * st.covered_h * st.run_frac) AS ideal_parts
          FROM st JOIN h USING (device_pk, t)
        )
        SELECT 100 * run_h / nullif(planned_h, 0) AS "可用率 A %",
               100 * parts / nullif(ideal_parts, 0) AS "性能 P %",
               100 * good / nullif(parts, 0) AS "质量 Q %",
               100 * (run_h / nullif(planned_h, 0)) * (parts / nullif(ideal_parts, 0)) * (good / nullif(parts, 0))
                   AS "OEE %"
        FROM tot
        """,
            unit="percent",
            w=16,
            decimals=1,
            thresholds=((None, "red"), (60, "orange"), (85, "green")),
        )
    )
    b.add(
        timeseries_panel(
            "OEE (按产线, 小时)",
            "Hourly OEE per production line: good parts / (ideal rate × planned "
            "time), %. Line devices report machine_state, good_count, reject_count, ideal_rate_pcs_h.",
            f"""
        WITH {_OEE_CTES}
        SELECT to_timestamp(st.t) AS "time", st.line AS metric,
               100 * h.good / nullif(h.ideal * st.covered_h * (1 - st.planned_stop_frac), 0) AS value
        FROM st JOIN h USING (device_pk, t)
        ORDER BY 1, 2
        """,
            unit="percent",
            w=24,
        )
    )
    b.add(
        timeseries_panel(
            "产量 (小时)",
            "Good and rejected parts per hour, all selected lines.",
            f"""
        WITH c AS (
          SELECT metric, bucket, last - lag(last) OVER (PARTITION BY device_pk, metric ORDER BY bucket) AS inc
          FROM v_readings_1h
          WHERE {firm_filter()} AND metric IN ('good_count', 'reject_count')
            AND bucket BETWEEN $__timeFrom()::timestamptz - interval '1 hour' AND $__timeTo()::timestamptz
        )
        SELECT $__time(bucket),
               sum(greatest(inc, 0)) FILTER (WHERE metric = 'good_count') AS "合格 good",
               sum(greatest(inc, 0)) FILTER (WHERE metric = 'reject_count') AS "不合格 reject"
        FROM c WHERE $__timeFilter(bucket)
        GROUP BY bucket
        ORDER BY 1
        """,
            w=12,
            bars_style=True,
        )
    )
    b.add(
        table_panel(
            "设备在线状态",
            "Every device of the selected firms: last reading, seconds silent, quality of "
            "the last reading (0 good … 4 bad) and readings received (v_device_last_seen).",
            f"""
        SELECT firm_id AS "企业 firm", gateway_id AS "网关 gateway", device_id AS "设备 device",
               kind AS "类型 kind", last_ts AS "最后读数 last reading", round(silent_s::numeric) AS "静默秒 silent s",
               last_quality AS "质量 quality", readings AS "读数 readings"
        FROM v_device_last_seen
        WHERE {firm_filter()}
        ORDER BY silent_s DESC NULLS FIRST, firm_id, device_id
        """,
            w=12,
        )
    )
    b.add(
        table_panel(
            "智能车间判定",
            "Smart-workshop verdicts per workshop (v_compliance, scheme smart_workshop).",
            f"""
        SELECT year AS "年度 year", month AS "月 month", firm_id AS "企业 firm",
               coalesce(workshop_id, '—') AS "车间 workshop", verdict AS "判定 verdict", score AS "得分 score",
               evaluated_at AS "评估时间"
        FROM v_compliance
        WHERE {firm_filter()} AND scheme = 'smart_workshop'
          AND year BETWEEN {FROM_YEAR} - 1 AND {TO_YEAR}
        ORDER BY year DESC, month DESC NULLS FIRST, firm_id, workshop_id
        """,
            w=24,
        )
    )
    return b.build()
