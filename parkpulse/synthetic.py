"""A synthetic park: registry and wire batches for load tests, benchmarks and the ingest main job.

It builds only kernel objects (ParkFile, wire payloads); the virtual hardware lives in simulators/.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from parkpulse.registry import Device, Firm, Gateway, ParkFile, ParkInfo, Workshop
from parkpulse.wire import batch_payload, data_topic

__all__ = [
    "METER_METRICS",
    "ReadingRow",
    "SyntheticGateway",
    "synthetic_gateways",
    "synthetic_park",
    "write_readings",
]

# (device_pk, metric_id, ts, value, quality)
ReadingRow = tuple[int, int, datetime, float | None, int]

# 20 values of a three-phase meter, as the gateway benchmark reads them.
METER_METRICS = (
    "elec_import_kwh",
    "elec_export_kwh",
    "elec_reactive_kvarh",
    "active_power_kw",
    "reactive_power_kvar",
    "power_factor",
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "frequency_hz",
    "temperature_c",
    "humidity_pct",
    "pressure_kpa",
    "gas_volume_m3",
    "water_volume_m3",
    "steam_mass_t",
    "heat_gj",
)


def synthetic_park(
    park_id: str, firms: int = 10, gateways_per_firm: int = 1, meters_per_gateway: int = 10
) -> ParkFile:
    out: list[Firm] = []
    for f in range(firms):
        fid = f"{park_id}-f{f:04d}"
        gws = [
            Gateway(
                id=f"{fid}-g{g}",
                devices=[
                    Device(
                        id=f"m{m:03d}",
                        kind="meter",
                        profile="generic",
                        meter_level=1 if m == 0 else 2,
                        carrier="electricity",
                        poll_interval_s=1.0,
                    )
                    for m in range(meters_per_gateway)
                ],
            )
            for g in range(gateways_per_firm)
        ]
        out.append(
            Firm(
                id=fid,
                name=f"合成企业{f}",
                name_en=f"Synthetic firm {f}",
                land_mu=50 + (f % 7) * 10,
                workshops=[Workshop(id=f"{fid}-w1", name="一车间")],
                gateways=gws,
            )
        )
    return ParkFile(
        park=ParkInfo(id=park_id, name=f"合成园区 {park_id}", name_en="synthetic park"), firms=out
    )


@dataclass
class SyntheticGateway:
    """Makes wire batches for one gateway of a synthetic park, with increasing seq numbers."""

    park: str
    firm: str
    gateway: str
    devices: list[str]
    metrics: tuple[str, ...] = METER_METRICS
    seq: int = 0

    @property
    def topic(self) -> str:
        return data_topic(self.park, self.firm, self.gateway)

    def batch(self, t0_ms: int, rows: int, step_ms: int = 1000) -> bytes:
        """One batch of `rows` readings: devices × metrics over consecutive instants from t0_ms."""
        readings: list[list[object]] = []
        per_instant = len(self.devices) * len(self.metrics)
        instants = max(1, math.ceil(rows / per_instant))
        rnd = random.Random(self.seq)
        for i in range(instants):
            ts = t0_ms + i * step_ms
            for d in self.devices:
                for m in self.metrics:
                    if len(readings) == rows:
                        break
                    readings.append([d, m, ts, round(rnd.uniform(0, 1000), 3), 0])
        payload = batch_payload(self.gateway, self.seq, readings, sent_at_ms=t0_ms)
        self.seq += 1
        return payload

    def readings_per_instant(self) -> int:
        return len(self.devices) * len(self.metrics)


def synthetic_gateways(pf: ParkFile) -> Iterator[SyntheticGateway]:
    for f in pf.firms:
        for g in f.gateways:
            yield SyntheticGateway(pf.park.id, f.id, g.id, [d.id for d in g.devices])


def write_readings(conn: psycopg.Connection, rows: Sequence[ReadingRow]) -> None:
    """Store rows the way ingest does, without the wire: the month partitions they need, then in one
    transaction the readings (COPY) and their dirty 15-minute buckets for the rollup refresher."""
    for month in sorted({datetime(r[2].year, r[2].month, 1, tzinfo=UTC) for r in rows}):
        conn.execute("SELECT pp_ensure_partition(%s)", (month,))
    conn.commit()
    with conn.cursor().copy("COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)
    conn.execute(
        "INSERT INTO rollup_dirty (bucket) SELECT DISTINCT date_bin('15 minutes', t, '2000-01-01') "
        "FROM unnest(%s::timestamptz[]) t",
        (sorted({r[2] for r in rows}),),
    )
    conn.commit()
