"""A firm's tariff assignments (table firm_tariffs): which tariff it pays for a carrier, with which
voltage class and capacity basis, from when to when. Overlapping validity is refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import psycopg

from parkpulse.errors import FieldError, ParkPulseError

__all__ = ["Assignment", "AssignmentError", "assign_tariff", "list_assignments"]

CapacityBasis = Literal["demand", "capacity", "none"]


class AssignmentError(ParkPulseError):
    """A tariff assignment was refused (the message names the firm, tariff and dates)."""


@dataclass(frozen=True)
class Assignment:
    firm_id: str
    tariff_id: str
    valid_from: date
    valid_to: date | None = None  # exclusive
    voltage_class: str | None = None
    capacity_basis: CapacityBasis = "none"
    transformer_kva: float | None = None
    note: str | None = None


def _span(a: date, b: date | None) -> str:
    return f"{a.isoformat()} to {b.isoformat() if b else 'open end'}"


def _tariff_carrier(conn: psycopg.Connection, a: Assignment) -> str:
    row = conn.execute("SELECT carrier FROM tariffs WHERE tariff_id = %s", (a.tariff_id,)).fetchone()
    if row is None:
        raise FieldError(
            "tariff", a.tariff_id, "no such tariff in the database (run `parkpulse tariffs sync`)"
        )
    return str(row[0])


def _check_fields(conn: psycopg.Connection, a: Assignment, carrier: str) -> None:
    if conn.execute("SELECT 1 FROM firms WHERE firm_id = %s", (a.firm_id,)).fetchone() is None:
        raise FieldError("firm", a.firm_id, "no such firm in the registry")
    if a.valid_to is not None and a.valid_to <= a.valid_from:
        raise FieldError(
            "valid_to", a.valid_to.isoformat(), f"must be after valid_from {a.valid_from.isoformat()}"
        )
    if carrier != "electricity":
        if a.voltage_class or a.capacity_basis != "none":
            raise FieldError(
                "voltage_class", a.voltage_class, f"a {carrier} tariff has no voltage class or capacity basis"
            )
        return
    classes = {
        str(r[0])
        for r in conn.execute(
            "SELECT DISTINCT voltage_class FROM tariff_prices WHERE tariff_id = %s", (a.tariff_id,)
        )
    }
    if a.voltage_class not in classes:
        raise FieldError(
            "voltage_class", a.voltage_class, f"tariff {a.tariff_id} has prices for {sorted(classes)}"
        )
    if a.capacity_basis == "capacity" and not (a.transformer_kva and a.transformer_kva > 0):
        raise FieldError(
            "transformer_kva",
            a.transformer_kva,
            "the capacity basis needs the transformer capacity (kVA > 0)",
        )


def assign_tariff(conn: psycopg.Connection, a: Assignment) -> int:
    """Record the assignment; returns its id. Refused (nothing written) when the firm already has a
    tariff for the same carrier in any part of [valid_from, valid_to)."""
    carrier = _tariff_carrier(conn, a)
    _check_fields(conn, a, carrier)
    with conn.transaction():
        conn.execute("LOCK TABLE firm_tariffs IN SHARE ROW EXCLUSIVE MODE")
        clash = conn.execute(
            "SELECT tariff_id, valid_from, valid_to FROM firm_tariffs WHERE firm_id = %s AND carrier = %s "
            "AND daterange(valid_from, valid_to) && daterange(%s, %s) ORDER BY valid_from LIMIT 1",
            (a.firm_id, carrier, a.valid_from, a.valid_to),
        ).fetchone()
        if clash is not None:
            raise AssignmentError(
                f"firm {a.firm_id}: {carrier} tariff {a.tariff_id} for {_span(a.valid_from, a.valid_to)} overlaps its "
                f"assignment to {clash[0]} for {_span(clash[1], clash[2])}; end that one first "
                "(its valid_to) or choose dates that do not overlap. Nothing was written."
            )
        row = conn.execute(
            "INSERT INTO firm_tariffs (firm_id, carrier, tariff_id, voltage_class, capacity_basis, transformer_kva, "
            "valid_from, valid_to, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING assignment_id",
            (
                a.firm_id,
                carrier,
                a.tariff_id,
                a.voltage_class,
                a.capacity_basis,
                a.transformer_kva,
                a.valid_from,
                a.valid_to,
                a.note,
            ),
        ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def list_assignments(conn: psycopg.Connection, firm_id: str | None = None) -> list[tuple[object, ...]]:
    """(firm, carrier, tariff, voltage class, capacity basis, kVA, from, to) rows, by firm and date."""
    return list(
        conn.execute(
            "SELECT firm_id, carrier, tariff_id, voltage_class, capacity_basis, transformer_kva, valid_from, valid_to "
            "FROM firm_tariffs WHERE %s::text IS NULL OR firm_id = %s ORDER BY firm_id, carrier, valid_from",
            (firm_id, firm_id),
        ).fetchall()
    )
