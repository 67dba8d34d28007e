"""Every database read and write of the console, each scoped to the user in SQL.

All statements are fixed text with bound parameters; the scope predicate comes from
`console.scope.scope_sql` (fixed aliases). A row outside the user's scope is simply not found,
so callers answer 404 and never reveal that it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from console.scope import Scope, scope_sql

__all__ = [
    "AlertFilter",
    "act_on_alert",
    "alert_events",
    "alert_hourly",
    "alert_minutes",
    "changed_since",
    "device_health",
    "firm_compliance",
    "firm_energy",
    "firm_info",
    "firm_kpis",
    "firms_in_scope",
    "gap_list",
    "gateway_health",
    "get_alert",
    "list_alerts",
    "metric_options",
    "parks_in_scope",
    "store_health_of",
]

Row = dict[str, Any]

_STATES = {
    "open": ["firing", "acknowledged"],
    "firing": ["firing"],
    "acknowledged": ["acknowledged"],
    "resolved": ["resolved"],
    "all": ["firing", "acknowledged", "resolved"],
}


@dataclass(frozen=True)
class AlertFilter:
    """Feed filters; values are already validated (see console._forms)."""

    park: str | None = None
    firm: str | None = None
    metric: str | None = None
    state: str = "open"
    kind: str | None = None
    limit: int = 200

    def params(self) -> dict[str, Any]:
        return {
            "f_park": self.park,
            "f_firm": self.firm,
            "f_metric": self.metric,
            "f_states": _STATES[self.state],
            "f_kind": self.kind,
            "f_limit": self.limit,
        }


_ALERT_COLS = """a.alert_id, a.rule_id, a.rule_version, a.kind, a.severity, a.park_id, a.firm_id, a.gateway_id,
       a.device_id, a.metric, a.subject, a.state, a.opened_at, a.acked_at, a.acked_by, a.resolved_at,
       a.resolved_by, a.value, a.limit_value, a.unit, a.message_zh, a.message_en, a.evidence, a.updated_at,
       a.park_name, a.park_name_en, a.firm_name, a.firm_name_en, a.pollutant,
       m.name_zh AS metric_zh, m.name_en AS metric_en"""

_FILTER_SQL = """(%(f_park)s::text IS NULL OR a.park_id = %(f_park)s)
  AND (%(f_firm)s::text IS NULL OR a.firm_id = %(f_firm)s)
  AND (%(f_metric)s::text IS NULL OR a.metric = %(f_metric)s)
  AND (%(f_kind)s::text IS NULL OR a.kind = %(f_kind)s)
  AND a.state = ANY(%(f_states)s)"""


async def _all(conn: AsyncConnection, query: str, params: dict[str, Any]) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.encode(), params)
        return await cur.fetchall()


async def _one(conn: AsyncConnection, query: str, params: dict[str, Any]) -> Row | None:
    rows = await _all(conn, query, params)
    return rows[0] if rows else None


async def list_alerts(conn: AsyncConnection, scope: Scope, flt: AlertFilter) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT {_ALERT_COLS}
            FROM v_alerts a LEFT JOIN metrics m ON m.name = a.metric
            WHERE {scope_sql("a")} AND {_FILTER_SQL}
            ORDER BY a.opened_at DESC, a.alert_id DESC
            LIMIT %(f_limit)s""",
        {**scope.params(), **flt.params()},
    )


async def changed_since(conn: AsyncConnection, scope: Scope, flt: AlertFilter, since: datetime) -> list[Row]:
    """Alerts in scope changed after `since` (any state), with `matches` for the feed's filters."""
    return await _all(
        conn,
        f"""SELECT {_ALERT_COLS}, ({_FILTER_SQL}) AS matches
            FROM v_alerts a LEFT JOIN metrics m ON m.name = a.metric
            WHERE {scope_sql("a")} AND a.updated_at > %(since)s
            ORDER BY a.updated_at, a.alert_id LIMIT 500""",
        {**scope.params(), **flt.params(), "since": since},
    )


async def get_alert(
    conn: AsyncConnection, scope: Scope, alert_id: int, flt: AlertFilter | None = None
) -> Row | None:
    """One alert in scope; with `flt`, adds `matches` (does it pass the feed's filters)."""
    f = flt or AlertFilter(state="all")
    return await _one(
        conn,
        f"""SELECT {_ALERT_COLS}, ({_FILTER_SQL}) AS matches
            FROM v_alerts a LEFT JOIN metrics m ON m.name = a.metric
            WHERE a.alert_id = %(alert_id)s AND {scope_sql("a")}""",
        {**scope.params(), **f.params(), "alert_id": alert_id},
    )


async def alert_events(conn: AsyncConnection, scope: Scope, alert_id: int) -> list[Row]:
    """The audit trail of an alert in scope (empty otherwise)."""
    return await _all(
        conn,
        f"""SELECT e.event_id, e.at, e.actor, e.action, e.comment, e.detail
            FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id
            WHERE e.alert_id = %(id)s AND {scope_sql("a")} ORDER BY e.event_id""",
        {**scope.params(), "id": alert_id},
    )


def _window(alert: Row, before: timedelta, after: timedelta) -> tuple[datetime, datetime]:
    opened: datetime = alert["opened_at"]
    end = alert["resolved_at"] or opened + after
    return opened - before, max(end, opened + after)


async def alert_minutes(conn: AsyncConnection, scope: Scope, alert: Row) -> list[Row]:
    """Minute values of the alert's device and metric from 3 h before to 1 h after (or resolution)."""
    if not (alert["gateway_id"] and alert["device_id"] and alert["metric"]):
        return []
    start, end = _window(alert, timedelta(hours=3), timedelta(hours=1))
    return await _all(
        conn,
        f"""SELECT date_trunc('minute', r.ts) AS minute, count(*)::int AS n, avg(r.value) AS avg,
                   min(r.value) AS min, max(r.value) AS max, max(r.quality)::int AS worst_quality,
                   count(*) FILTER (WHERE r.quality = 0)::int AS n_good
            FROM v_readings r
            WHERE r.gateway_id = %(gw)s AND r.device_id = %(dev)s AND r.metric = %(metric)s
              AND r.ts >= %(start)s AND r.ts < %(end)s AND {scope_sql("r")}
            GROUP BY 1 ORDER BY 1 LIMIT 2000""",
        {
            **scope.params(),
            "gw": alert["gateway_id"],
            "dev": alert["device_id"],
            "metric": alert["metric"],
            "start": start,
            "end": end,
        },
    )


async def alert_hourly(conn: AsyncConnection, scope: Scope, alert: Row) -> list[Row]:
    """Hourly values from 12 h before to 3 h after the alert opened (or its resolution)."""
    if not (alert["gateway_id"] and alert["device_id"] and alert["metric"]):
        return []
    start, end = _window(alert, timedelta(hours=12), timedelta(hours=3))
    return await _all(
        conn,
        f"""SELECT r.bucket, r.n, r.avg, r.min, r.max, r.worst_quality, r.n_good
            FROM v_readings_1h r
            WHERE r.gateway_id = %(gw)s AND r.device_id = %(dev)s AND r.metric = %(metric)s
              AND r.bucket >= %(start)s AND r.bucket < %(end)s AND {scope_sql("r")}
            ORDER BY r.bucket LIMIT 500""",
        {
            **scope.params(),
            "gw": alert["gateway_id"],
            "dev": alert["device_id"],
            "metric": alert["metric"],
            "start": start,
            "end": end,
        },
    )


async def act_on_alert(
    conn: AsyncConnection, scope: Scope, alert_id: int, action: str, comment: str | None
) -> str | None:
    """Run pp_alert_act for an alert in scope; None when the alert is not visible to the user.

    Raises psycopg errors from the state rules (check_violation, invalid_parameter_value)."""
    async with conn.transaction():
        visible = await _one(
            conn,
            f"SELECT a.alert_id FROM alerts a WHERE a.alert_id = %(id)s AND {scope_sql('a')} FOR UPDATE",
            {**scope.params(), "id": alert_id},
        )
        if visible is None:
            return None
        row = await _one(
            conn,
            "SELECT pp_alert_act(%(id)s, %(actor)s, %(action)s, %(comment)s) AS state",
            {"id": alert_id, "actor": scope.user, "action": action, "comment": comment},
        )
    return str(row["state"]) if row else None


async def parks_in_scope(conn: AsyncConnection, scope: Scope) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT DISTINCT x.park_id, p.name, p.name_en
            FROM (SELECT f.park_id, f.firm_id FROM firms f
                  UNION ALL SELECT p2.park_id, NULL FROM parks p2) x
            JOIN parks p ON p.park_id = x.park_id
            WHERE {scope_sql("x")} ORDER BY x.park_id""",
        scope.params(),
    )


async def firms_in_scope(conn: AsyncConnection, scope: Scope, park: str | None = None) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT f.firm_id, f.park_id, f.name, f.name_en, f.industry, f.size_class, f.land_mu,
                   (SELECT k.class FROM v_firm_kpi_year k WHERE k.firm_id = f.firm_id ORDER BY k.year DESC LIMIT 1)
                       AS class,
                   (SELECT k.year FROM v_firm_kpi_year k WHERE k.firm_id = f.firm_id ORDER BY k.year DESC LIMIT 1)
                       AS class_year
            FROM firms f
            WHERE {scope_sql("f")} AND (%(park)s::text IS NULL OR f.park_id = %(park)s)
            ORDER BY f.park_id, f.firm_id""",
        {**scope.params(), "park": park},
    )


async def metric_options(conn: AsyncConnection) -> list[Row]:
    """Catalogue metrics, pollutants first (the catalogue is not park data: no scope needed)."""
    return await _all(
        conn,
        "SELECT name, name_zh, name_en, unit, pollutant FROM metrics ORDER BY (pollutant IS NULL), name",
        {},
    )


async def firm_info(conn: AsyncConnection, scope: Scope, firm_id: str) -> Row | None:
    return await _one(
        conn,
        f"""SELECT f.firm_id, f.park_id, f.name, f.name_en, f.credit_code, f.land_mu, f.industry, f.size_class,
                   f.production_start, p.name AS park_name, p.name_en AS park_name_en,
                   c.name AS cluster_name, c.name_en AS cluster_name_en
            FROM firms f JOIN parks p ON p.park_id = f.park_id
            LEFT JOIN clusters c ON c.cluster_id = f.cluster_id
            WHERE f.firm_id = %(firm)s AND {scope_sql("f")}""",
        {**scope.params(), "firm": firm_id},
    )


async def firm_energy(conn: AsyncConnection, scope: Scope, firm_id: str, days: int = 30) -> list[Row]:
    """Energy per carrier and direction over the last `days` days and the year to date, and next to
    the imports their cost in yuan (pp_firm_cost_daily over just those days: v_firm_cost_daily's rows,
    energy charges only; NULL without a tariff)."""
    return await _all(
        conn,
        f"""WITH e AS (
                SELECT e.carrier, e.direction, e.unit,
                       sum(e.quantity) FILTER (WHERE e.day > current_date - %(days)s) AS recent,
                       sum(e.quantity) FILTER (WHERE e.day >= date_trunc('year', current_date)) AS ytd,
                       max(e.meters) AS meters, bool_or(e.suspect) AS suspect, max(e.worst_quality) AS worst_quality,
                       max(e.day) AS last_day
                FROM v_firm_energy_daily e
                WHERE e.firm_id = %(firm)s AND {scope_sql("e")}
                  AND e.day >= least(current_date - %(days)s, date_trunc('year', current_date)::date)
                GROUP BY e.carrier, e.direction, e.unit
            ), c AS (
                SELECT c.carrier,
                       sum(c.cost_yuan) FILTER (WHERE c.day > current_date - %(days)s) AS cost_recent_yuan,
                       sum(c.cost_yuan) FILTER (WHERE c.day >= date_trunc('year', current_date)) AS cost_ytd_yuan
                FROM pp_firm_cost_daily(ARRAY[%(firm)s]::text[],
                                        least(current_date - %(days)s, date_trunc('year', current_date)::date),
                                        current_date + 1) c
                WHERE {scope_sql("c")}
                GROUP BY c.carrier
            )
            SELECT e.*, c.cost_recent_yuan, c.cost_ytd_yuan
            FROM e LEFT JOIN c ON c.carrier = e.carrier AND e.direction = 'import'
            ORDER BY e.carrier, e.direction""",
        {**scope.params(), "firm": firm_id, "days": days},
    )


async def firm_kpis(conn: AsyncConnection, scope: Scope, firm_id: str) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT k.*, k.explanation->'mu_scheme'->>'name' AS mu_scheme,
                   k.explanation->'mu_scheme'->>'title' AS mu_scheme_title,
                   k.explanation->'mu_scheme'->>'title_en' AS mu_scheme_title_en
            FROM v_firm_kpi_year k
            WHERE k.firm_id = %(firm)s AND {scope_sql("k")} ORDER BY k.year DESC LIMIT 10""",
        {**scope.params(), "firm": firm_id},
    )


async def firm_compliance(conn: AsyncConnection, scope: Scope, firm_id: str) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT c.* FROM v_compliance c
            WHERE c.firm_id = %(firm)s AND {scope_sql("c")}
            ORDER BY c.year DESC, c.month DESC NULLS FIRST, c.scheme, c.workshop_id NULLS FIRST LIMIT 200""",
        {**scope.params(), "firm": firm_id},
    )


async def gateway_health(conn: AsyncConnection, scope: Scope, firm: str | None = None) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT g.*, extract(epoch FROM now() - g.last_seen) AS last_seen_s
            FROM v_gateway_status g
            WHERE {scope_sql("g")} AND (%(firm)s::text IS NULL OR g.firm_id = %(firm)s)
            ORDER BY g.park_id, g.firm_id, g.gateway_id LIMIT 1000""",
        {**scope.params(), "firm": firm},
    )


async def device_health(conn: AsyncConnection, scope: Scope, firm: str | None = None) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT d.*, extract(epoch FROM d.received_at - d.last_ts) AS delivery_lag_s,
                   CASE WHEN d.last_ts IS NULL THEN 'never'
                        WHEN d.silent_s > 3 * coalesce(d.poll_interval_s, 60) THEN 'stale'
                        ELSE 'ok' END AS health
            FROM v_device_last_seen d
            WHERE {scope_sql("d")} AND (%(firm)s::text IS NULL OR d.firm_id = %(firm)s)
            ORDER BY d.park_id, d.firm_id, d.gateway_id, d.device_id LIMIT 5000""",
        {**scope.params(), "firm": firm},
    )


async def gap_list(
    conn: AsyncConnection, scope: Scope, firm: str | None = None, limit: int = 200
) -> list[Row]:
    return await _all(
        conn,
        f"""SELECT x.*, gw.firm_id, f.park_id
            FROM v_data_gaps x
            JOIN gateways gw ON gw.gateway_id = x.gateway_id
            JOIN firms f ON f.firm_id = gw.firm_id
            WHERE {scope_sql("f")} AND (%(firm)s::text IS NULL OR gw.firm_id = %(firm)s)
            ORDER BY x.reported_at DESC LIMIT %(limit)s""",
        {**scope.params(), "firm": firm, "limit": limit},
    )


async def notify_channels(conn: AsyncConnection) -> list[Row]:
    """The notification channels and how delivery goes on each (v_notify_channel_health; no secrets:
    the view holds no channel config). Park-independent: the channels serve every park."""
    return await _all(
        conn,
        """SELECT channel_id, kind, status, last_attempt_at, last_success_at, failures_in_row, pending,
                  oldest_pending_at, last_error
           FROM v_notify_channel_health ORDER BY status <> 'ok' DESC, channel_id""",
        {},
    )


def store_health_of(dsn: str, read_url: str | None = None) -> dict[str, Any]:
    """The store's path, TimescaleDB version, rollup lag, failed background jobs and replication
    lag (with `read_url`: the read replica's, measured there) (blocking: run it in a thread).
    Park-independent: the store serves every park."""
    from parkpulse.db import connect, connect_read, store_health

    with connect(dsn, autocommit=True) as conn:
        if not read_url or read_url == dsn:
            return store_health(conn).as_dict()
        with connect_read(read_url) as rconn:
            return store_health(conn, rconn).as_dict()
