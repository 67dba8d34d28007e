"""Energy in yuan for the demo: the shipped tariffs synced, the Henan time-of-use tariff assigned
to every firm, and each firm's cost of last month read from `v_firm_cost_monthly`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

__all__ = ["HENAN_TARIFF", "assign_commands", "last_month", "monthly_costs", "print_costs"]

HENAN_TARIFF = "henan-industrial-tou"
VOLTAGE_CLASS = "kv1_10"  # 1-10 kV supply, usual for the park's industrial firms


def last_month(today: date) -> date:
    """The first day of the month before `today`'s."""
    return date(today.year - 1, 12, 1) if today.month == 1 else date(today.year, today.month - 1, 1)


def assign_commands(firms: list[str], valid_from: date) -> list[tuple[str, ...]]:
    """`parkpulse tariffs assign` for each firm: Henan TOU, two-part with the demand charge."""
    return [
        (
            "tariffs",
            "assign",
            firm,
            HENAN_TARIFF,
            "--from",
            valid_from.isoformat(),
            "--voltage",
            VOLTAGE_CLASS,
            "--basis",
            "demand",
            "--note",
            "demo",
        )
        for firm in firms
    ]


def monthly_costs(dsn: str, month: date) -> list[dict[str, Any]]:
    """Per firm: electricity kWh, its energy cost, the demand charge and the total of `month`."""
    # per firm (a lateral join): the view's month filter reaches its inner queries only with
    # the firm fixed; the whole park at once took three times as long
    sql = """
        SELECT f.firm_id, f.name, c.kwh, c.energy_yuan, c.demand_yuan, c.total_yuan
          FROM firms f CROSS JOIN LATERAL (
               SELECT sum(v.quantity) FILTER (WHERE v.carrier = 'electricity' AND v.period NOT IN ('demand', 'capacity')) AS kwh,
                      sum(v.cost_yuan) FILTER (WHERE v.carrier = 'electricity' AND v.period NOT IN ('demand', 'capacity')) AS energy_yuan,
                      sum(v.cost_yuan) FILTER (WHERE v.period IN ('demand', 'capacity')) AS demand_yuan,
                      sum(v.cost_yuan) AS total_yuan
                 FROM v_firm_cost_monthly v WHERE v.firm_id = f.firm_id AND v.month = %s) c
         ORDER BY c.total_yuan DESC NULLS LAST, f.firm_id"""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(sql, (month,)).fetchall()
    keys = ("firm_id", "name", "kwh", "energy_yuan", "demand_yuan", "total_yuan")
    return [
        {k: (float(v) if isinstance(v, Decimal) else v) for k, v in zip(keys, r, strict=True)} for r in rows
    ]


def print_costs(out: Console, month: date, costs: list[dict[str, Any]]) -> None:
    t = Table(
        title=f"电费 energy cost — {month:%Y-%m} ({HENAN_TARIFF}, {VOLTAGE_CLASS}; example prices, unverified)"
    )
    for col in ("firm", "kWh", "energy 元", "demand 元", "total 元"):
        t.add_column(col)
    for c in costs:
        t.add_row(
            str(c["name"]), _n(c["kwh"]), _n(c["energy_yuan"]), _n(c["demand_yuan"]), _n(c["total_yuan"])
        )
    out.print(t)


def _n(v: Any) -> str:
    return "—" if v is None else f"{float(v):,.0f}"
