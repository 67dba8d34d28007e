"""What the demo prints once the park is running, and the counts its test checks."""

from __future__ import annotations

from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

__all__ = ["print_summary", "stage_counts"]


def _one(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    try:
        # no parameters → no placeholder parsing, so `%` in LIKE patterns stays literal
        row = (conn.execute(sql, params) if params else conn.execute(sql.encode())).fetchone()
    except psycopg.Error:
        conn.rollback()
        return None
    return row[0] if row else None


def stage_counts(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        return {
            "readings": _one(conn, "SELECT count(*) FROM readings"),
            "live_readings": _one(conn, "SELECT count(*) FROM v_readings WHERE gateway_id NOT LIKE '%-hist'"),
            "firms": _one(conn, "SELECT count(*) FROM firms"),
            "classes": _one(conn, "SELECT count(*) FROM v_firm_kpi_year WHERE class IN ('A','B','C')"),
            "compliance": _one(conn, "SELECT count(*) FROM v_compliance"),
            "scorecard": _one(conn, "SELECT count(*) FROM v_park_scorecard"),
            "alerts": _one(conn, "SELECT count(*) FROM alerts"),
            "open_alerts": _one(conn, "SELECT count(*) FROM v_alerts_open"),
            "dead_letters": _one(conn, "SELECT count(*) FROM dead_letters"),
            "gateways_online": _one(conn, "SELECT count(*) FROM v_gateway_status WHERE state = 'online'"),
            "data_gaps": _one(conn, "SELECT count(*) FROM v_data_gaps"),
        }


def print_summary(out: Console, dsn: str, year: int, console_url: str, user: str, password: str) -> None:
    with psycopg.connect(dsn) as conn:
        t = Table(title=f"企业 firms — {year}", show_lines=False)
        for col in (
            "firm",
            "class",
            "score",
            "亩均税收 万元/亩",
            "energy tce",
            "intensity tce/万元",
            "Δ vs last year",
        ):
            t.add_column(col)
        try:
            rows = conn.execute(
                "SELECT f.name, k.class, k.score, k.mu_tax_10k_cny, k.energy_tce, k.intensity_tce_per_10k_cny, "
                "k.intensity_change_pct FROM v_firm_kpi_year k JOIN firms f USING (firm_id) "
                "WHERE k.year = %s ORDER BY k.class NULLS LAST, k.score DESC NULLS LAST",
                (year,),
            ).fetchall()
        except psycopg.Error:
            conn.rollback()
            rows = []
        for name, cls, score, mu_tax, tce, intensity, change in rows:
            t.add_row(
                str(name),
                str(cls),
                _f(score, 1),
                _f(mu_tax, 2),
                _f(tce, 1),
                _f(intensity, 3),
                "—" if change is None else f"{float(change):+.1f} %",
            )
        out.print(t)
        s = Table(title=f"园区目标 scorecard — {year}")
        for col in ("indicator", "value", "target", "met"):
            s.add_column(col)
        try:
            for ind, val, target, unit, met in conn.execute(
                "SELECT indicator, value, target, unit, met FROM v_park_scorecard WHERE year = %s ORDER BY indicator",
                (year,),
            ):
                verdict = "—" if target is None or val is None else ("✓" if met else "✗")
                s.add_row(str(ind), f"{_f(val, 2)} {unit or ''}", _f(target, 2), verdict)
        except psycopg.Error:
            conn.rollback()
        out.print(s)
        _print_smart(out, conn, year)
        n_open = _one(conn, "SELECT count(*) FROM v_alerts_open")
        out.print(f"open alerts: {n_open if n_open is not None else 'n/a'}")
    out.print(
        f"\n[bold]console:[/bold] {console_url}   user [bold]{user}[/bold]  password [bold]{password}[/bold]"
    )
    out.print("Ctrl-C stops the park.")


def _print_smart(out: Console, conn: psycopg.Connection, year: int) -> None:
    """What smart_transformation_coverage_pct means, with the year's workshops that had line data."""
    out.print(
        "smart_transformation_coverage_pct = above-scale firms with a workshop passing every 智能车间 "
        "indicator (networking, automatic collection, OEE, energy per part vs last year) / above-scale firms"
    )
    try:
        rows = conn.execute(
            "SELECT f.name, c.workshop_id, c.verdict, c.detail FROM v_compliance c JOIN firms f USING (firm_id) "
            "WHERE c.year = %s AND c.month IS NULL AND c.scheme = 'smart_workshop' AND c.workshop_id IS NOT NULL "
            "AND c.verdict <> 'insufficient_data' ORDER BY c.verdict DESC, f.name",
            (year,),
        ).fetchall()
    except psycopg.Error:
        conn.rollback()
        return
    for name, ws, verdict, detail in rows:
        items = detail.get("indicators", []) if isinstance(detail, dict) else []
        oee = next((i.get("value") for i in items if i.get("indicator") == "oee"), None)
        failed = [f"{i['indicator']} {_f(i.get('value'), 2)}" for i in items if i.get("passed") is False]
        why = f" — failed: {', '.join(failed)}" if failed else ""
        out.print(f"  {name} {ws}: {verdict} (OEE {_f(oee, 2)}){why}")


def _f(v: Any, nd: int) -> str:
    return "—" if v is None else f"{float(v):,.{nd}f}"
