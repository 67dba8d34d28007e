"""Copy the tariffs file into the database (tables of migration 0500), in one transaction.

The file is the truth: every tariff version is written again with its slots, prices and
two-part charges; tariffs the file no longer has are deleted, unless a firm is assigned to one
(then nothing is written and the error names the firms).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import psycopg

from costs._tariffs import PERIODS, Tariff, TariffsFile, TariffVersion
from parkpulse.errors import StoreError

__all__ = ["PriceRow", "SyncResult", "price_rows", "sync_tariffs"]

_ALL_PERIODS = "all"
_ANY_CLASS = "any"


@dataclass(frozen=True)
class PriceRow:
    """One price as stored in tariff_prices."""

    voltage_class: str
    period: str
    price_from: date
    price_to: date | None
    price: float
    price_unit: str
    basis: str
    source: str
    verified: bool


@dataclass(frozen=True)
class SyncResult:
    tariffs: int
    versions: int
    prices: int
    deleted: list[str]  # tariff ids removed


def _ends(froms: list[date], valid_to: date | None) -> list[date | None]:
    """Each entry holds until the next one's month, the last until the version's end."""
    return [*froms[1:], valid_to]


def _period_prices(v: TariffVersion, periods: set[str]) -> list[PriceRow]:
    assert v.ratios is not None  # validated
    ends = _ends([p.from_month for p in v.energy_prices], v.valid_to)
    rows: list[PriceRow] = []
    for entry, end in zip(v.energy_prices, ends, strict=True):
        verified = entry.verified and v.ratios.verified
        for cls, cp in sorted(entry.classes.items()):
            for period in PERIODS:
                ratio = getattr(v.ratios, period)
                if period not in periods or ratio is None:
                    continue
                rows.append(
                    PriceRow(
                        cls,
                        period,
                        max(entry.from_month, v.valid_from),
                        end,
                        round(cp.floating * ratio + cp.fixed, 6),
                        "yuan/kWh",
                        f"{cp.floating:g} × {ratio:g} ({period}) + {cp.fixed:g}",
                        f"{entry.source}; ratios: {v.ratios.source}",
                        verified,
                    )
                )
    return rows


def price_rows(t: Tariff, v: TariffVersion) -> list[PriceRow]:
    """Every price of one version as stored: period prices (electricity) or unit prices."""
    if t.carrier == "electricity":
        used = {p for slots in v.month_slots().values() for p in slots}
        return _period_prices(v, used)
    ends = _ends([p.from_month for p in v.unit_prices], v.valid_to)
    unit = v.unit or ""
    return [
        PriceRow(
            _ANY_CLASS,
            _ALL_PERIODS,
            max(p.from_month, v.valid_from),
            end,
            p.price,
            f"yuan/{unit}",
            f"{p.price:g} yuan/{unit}",
            v.source,
            v.verified,
        )
        for p, end in zip(v.unit_prices, ends, strict=True)
    ]


def _assigned_elsewhere(conn: psycopg.Connection, keep: list[str]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT DISTINCT tariff_id, firm_id FROM firm_tariffs WHERE NOT tariff_id = ANY(%s) ORDER BY 1, 2",
        (keep,),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _write_version(conn: psycopg.Connection, t: Tariff, v: TariffVersion) -> int:
    r = v.ratios
    conn.execute(
        "INSERT INTO tariff_versions (tariff_id, version, valid_from, valid_to, unit, source, verified, note, "
        "ratio_sharp, ratio_peak, ratio_flat, ratio_valley, ratio_source, ratio_verified) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            t.id,
            v.version,
            v.valid_from,
            v.valid_to,
            "kWh" if t.carrier == "electricity" else v.unit,
            v.source,
            v.verified,
            v.note,
            r.sharp if r else None,
            r.peak if r else None,
            r.flat if r else None,
            r.valley if r else None,
            r.source if r else None,
            r.verified if r else None,
        ),
    )
    with conn.cursor().copy("COPY tariff_slots (tariff_id, version, month, slot, period) FROM STDIN") as cp:
        for month, slots in sorted(v.month_slots().items()):
            for i, period in enumerate(slots):
                cp.write_row((t.id, v.version, month, i, period))
    prices = price_rows(t, v)
    with conn.cursor().copy(
        "COPY tariff_prices (tariff_id, version, voltage_class, period, price_from, price_to, price, price_unit, "
        "basis, source, verified) FROM STDIN"
    ) as cp:
        for p in prices:
            cp.write_row(
                (
                    t.id,
                    v.version,
                    p.voltage_class,
                    p.period,
                    p.price_from,
                    p.price_to,
                    p.price,
                    p.price_unit,
                    p.basis,
                    p.source,
                    p.verified,
                )
            )
    if v.two_part:
        for cls, tp in sorted(v.two_part.classes.items()):
            conn.execute(
                "INSERT INTO tariff_two_part VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    t.id,
                    v.version,
                    cls,
                    tp.demand_yuan_per_kw_month,
                    tp.capacity_yuan_per_kva_month,
                    v.two_part.source,
                    v.two_part.verified,
                ),
            )
    return len(prices)


def sync_tariffs(conn: psycopg.Connection, tf: TariffsFile) -> SyncResult:
    """Write the file's tariffs into the database in one transaction (committed on success)."""
    ids = [t.id for t in tf.tariffs]
    with conn.transaction():
        conn.execute("LOCK TABLE tariffs, firm_tariffs IN SHARE ROW EXCLUSIVE MODE")
        stale = _assigned_elsewhere(conn, ids)
        if stale:
            named = ", ".join(f"{tid} (firm {fid})" for tid, fid in stale)
            raise StoreError(
                f"tariffs sync: {tf.path or 'the file'} no longer has tariffs that firms are assigned to: {named}; "
                "nothing was written"
            )
        deleted = [
            str(r[0])
            for r in conn.execute(
                "DELETE FROM tariffs WHERE NOT tariff_id = ANY(%s) RETURNING tariff_id", (ids,)
            ).fetchall()
        ]
        conn.execute("DELETE FROM tariff_versions WHERE tariff_id = ANY(%s)", (ids,))
        versions = prices = 0
        for t in tf.tariffs:
            conn.execute(
                "INSERT INTO tariffs (tariff_id, carrier, name_zh, name_en, region, file, file_checksum) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tariff_id) DO UPDATE SET carrier = excluded.carrier, "
                "name_zh = excluded.name_zh, name_en = excluded.name_en, region = excluded.region, "
                "file = excluded.file, file_checksum = excluded.file_checksum, synced_at = now()",
                (t.id, t.carrier, t.name_zh, t.name_en, t.region, tf.path, tf.checksum),
            )
            for v in t.versions:
                prices += _write_version(conn, t, v)
                versions += 1
        rc = tf.register_check
        conn.execute("DELETE FROM cost_params")
        conn.execute(
            "INSERT INTO cost_params VALUES ('register_tolerance_pct', %s, %s), ('register_tolerance_kwh', %s, %s)",
            (rc.tolerance_pct, rc.source, rc.tolerance_kwh, rc.source),
        )
    conn.commit()
    return SyncResult(len(tf.tariffs), versions, prices, deleted)
