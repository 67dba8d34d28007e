"""A park's history, made up but plausible, pushed through the real pipeline.

Each firm gets a profile (tax per mu, energy intensity, its yearly change) from a seeded random
generator, so classes and intensity trends differ between firms. Hourly counter readings of the
firm's boundary meters since `start` go to the broker as ordinary batches from a per-firm
"history import" gateway (`{firm}-hist`), so ingest stores them exactly as live data; the firms'
yearly economic data is written as the CSV `parkpulse firms import` reads.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from parkpulse.registry import Device, Gateway, ParkFile
from parkpulse.settings import parse_mqtt_url
from parkpulse.wire import batch_payload, data_topic

__all__ = [
    "FirmProfile",
    "LineProfile",
    "add_history_gateways",
    "count_history",
    "firm_profiles",
    "line_profiles",
    "publish_history",
    "write_economics_csv",
]

# Standard-coal coefficients used only to size the made-up consumption (GB/T 2589-2020 当量值);
# the rules engine does its own conversion from its data files.
_KGCE = {"electricity": 0.1229, "natural_gas": 1.2143, "water": 0.0}
_METRIC = {"electricity": "elec_import_kwh", "natural_gas": "gas_volume_m3", "water": "water_volume_m3"}


@dataclass
class FirmProfile:
    firm_id: str
    name: str
    land_mu: float
    above_scale: bool
    years_in_production: int
    tax_per_mu: float  # 万元/亩 in the last full year
    intensity: float  # tce per 万元 added value, last full year
    yearly_change: float  # intensity change per year, e.g. -0.06
    gas_share: float  # share of energy (tce) from natural gas

    def added_value(self, year: int, last_year: int) -> float:
        growth = 1.06 ** (year - last_year)
        return round(self.land_mu * self.tax_per_mu * 4.2 * growth, 2)

    def tax(self, year: int, last_year: int) -> float:
        return round(self.land_mu * self.tax_per_mu * 1.05 ** (year - last_year), 2)

    def energy_tce(self, year: int, last_year: int) -> float:
        intensity = self.intensity * (1 + self.yearly_change) ** (year - last_year)
        return self.added_value(year, last_year) * intensity


def firm_profiles(pf: ParkFile, today: date, seed: int = 7) -> list[FirmProfile]:
    rnd = random.Random(seed)
    out = []
    for f in pf.firms:
        years = today.year - f.production_start.year if f.production_start else 10
        out.append(
            FirmProfile(
                firm_id=f.id,
                name=f.name,
                land_mu=f.land_mu,
                above_scale=f.size_class == "above_scale",
                years_in_production=years,
                tax_per_mu=round(rnd.uniform(3.0, 38.0), 2),
                intensity=round(rnd.uniform(0.04, 0.9), 3),
                yearly_change=round(rnd.uniform(-0.09, 0.03), 3),
                gas_share=rnd.choice([0.0, 0.0, 0.2, 0.35]),
            )
        )
    return out


@dataclass
class LineProfile:
    """A production line of a declared smart workshop, for its history (what the live line sensor sends).

    Per 15 minutes of production time the line is running, idle or in a fault (machine_state 2 / 1
    / 3, like simulators/mqtt_sensors.py); outside production it sends nothing (a planned stop).
    While running it makes `ideal_rate × performance` parts an hour, a share rejected, and its
    workshop feeder meters `kwh_per_part` per part plus a base load; the energy per part falls by
    `yearly_gain` a year.
    """

    firm_id: str
    workshop_id: str
    ideal_rate: float  # pcs/h
    availability: float  # share of production time running
    performance: float
    reject_ratio: float
    kwh_per_part: float  # in the last full year
    yearly_gain: float  # e.g. 0.04: energy per part 4 % lower each year

    @property
    def oee(self) -> float:
        return self.availability * self.performance * (1 - self.reject_ratio)


def line_profiles(pf: ParkFile, lines: int = 3) -> list[LineProfile]:
    """History lines for the first `lines` declared smart workshops; the second one is a weak line
    (availability 0.70, performance 0.78 → OEE ≈ 0.53), so one workshop fails the OEE check."""
    out: list[LineProfile] = []
    for f in pf.firms:
        for w in f.workshops:
            if w.smart_declared and len(out) < lines:
                weak = len(out) == 1
                out.append(
                    LineProfile(
                        f.id,
                        w.id,
                        ideal_rate=3600.0 if not out else 900.0,
                        availability=0.70 if weak else 0.88,
                        performance=0.78 if weak else 0.92,
                        reject_ratio=0.04 if weak else 0.015,
                        kwh_per_part=0.02 if not out else 0.09,
                        yearly_gain=0.04,
                    )
                )
    return out


def add_history_gateways(
    pf: ParkFile, profiles: list[FirmProfile], lines: list[LineProfile] | None = None
) -> ParkFile:
    """Add a `{firm}-hist` gateway with boundary meters per carrier to every firm, and for each
    history line a line and its workshop's feeder (sub-meter) in that workshop."""
    by_id = {p.firm_id: p for p in profiles}
    line_of = {lp.firm_id: lp for lp in lines or []}
    for f in pf.firms:
        if any(g.id == f"{f.id}-hist" for g in f.gateways):
            continue
        p = by_id[f.id]
        devices = [
            Device(id="hist-elec", kind="meter", name="历史电能(导入)", meter_level=1, carrier="electricity")
        ]
        if p.gas_share > 0:
            devices.append(
                Device(
                    id="hist-gas", kind="meter", name="历史天然气(导入)", meter_level=1, carrier="natural_gas"
                )
            )
        devices.append(
            Device(id="hist-water", kind="meter", name="历史用水(导入)", meter_level=1, carrier="water")
        )
        if (lp := line_of.get(f.id)) is not None:
            devices.append(
                Device(id="hist-line", kind="line", name="历史产线(导入)", workshop=lp.workshop_id)
            )
            devices.append(
                Device(
                    id="hist-feeder",
                    kind="meter",
                    name="历史车间电能(导入)",
                    meter_level=2,
                    carrier="electricity",
                    workshop=lp.workshop_id,
                )
            )
        f.gateways.append(Gateway(id=f"{f.id}-hist", name="历史数据导入 history import", devices=devices))
    return pf


_GREEN_ITEMS = (
    "green:infrastructure",
    "green:management_system",
    "green:energy_resource_input",
    "green:product",
    "green:environmental_emission",
    "green:unit_product_energy",
    "green:unit_product_carbon",
    "green:water_reuse",
    "green:performance_other",
    "green:clean_energy_share",
    "green:solid_waste_utilisation",
    "green:unit_product_pollutant",
    "green:output_per_mu",
    "green:plot_ratio",
    "green:product_green",
    "green:management_qualitative",
)


def write_economics_csv(path: Path, profiles: list[FirmProfile], year: int, last_year: int) -> None:
    """The firms' yearly economic data in `parkpulse firms import`'s template (code headers).

    Firms with a low energy intensity declare the green-factory items (basic requirements met,
    item scores from 60 to 95), the others declare nothing, so the verdicts differ.
    """
    last = last_year
    cols = [
        "firm_id",
        "year",
        "added_value_10k_cny",
        "tax_10k_cny",
        "revenue_10k_cny",
        "rd_spend_10k_cny",
        "employees",
        "pollutant_t",
        "output_units",
        "output_value_10k_cny",
        "green:basic_legal",
        "green:basic_management",
        *_GREEN_ITEMS,
    ]
    rnd = random.Random(11 + year)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for p in profiles:
            green = p.intensity < 0.35
            for y in (year,):
                av = p.added_value(y, last)
                row: list[object] = [
                    p.firm_id,
                    y,
                    av,
                    p.tax(y, last),
                    round(av * 3.4, 2),
                    round(av * 0.025, 2),
                    int(p.land_mu * 2.5) + 20,
                    round(p.land_mu * 0.004, 3),
                    int(av * 40),
                    round(av * 3.6, 2),
                ]
                if green:
                    row += ["是", "是"] + [rnd.randint(60, 95) for _ in _GREEN_ITEMS]
                else:
                    row += [""] * (2 + len(_GREEN_ITEMS))
                w.writerow(row)


def _hourly_shape(ts: datetime) -> float:
    """Relative load: three shifts with a lighter night, weekends lower, a little seasonality."""
    local_h = (ts.hour + 8) % 24
    shift = 1.0 if 8 <= local_h < 20 else 0.55
    weekend = 0.7 if ts.weekday() >= 5 else 1.0
    season = 1.0 + 0.12 * math.cos((ts.timetuple().tm_yday - 20) / 365 * 2 * math.pi)
    return shift * weekend * season


def _series(
    p: FirmProfile, start: datetime, end: datetime, last_year: int
) -> Iterator[tuple[str, datetime, float]]:
    """(device, hour, counter value) for each boundary meter, counters only rising."""
    counters = {"hist-elec": 1000.0, "hist-gas": 500.0, "hist-water": 100.0}
    carriers = [("hist-elec", "electricity", 1 - p.gas_share), ("hist-water", "water", 0.0)]
    if p.gas_share > 0:
        carriers.append(("hist-gas", "natural_gas", p.gas_share))
    norm_cache: dict[int, float] = {}
    t = start
    while t < end:
        y = t.year
        if y not in norm_cache:  # sum of the year's hourly shape, to spread the yearly total
            y0 = datetime(y, 1, 1, tzinfo=UTC)
            norm_cache[y] = sum(_hourly_shape(y0 + timedelta(hours=h)) for h in range(0, 8760))
        share = _hourly_shape(t) / norm_cache[y]
        tce = p.energy_tce(y, last_year)
        for dev, carrier, frac in carriers:
            if carrier == "water":
                qty = p.land_mu * 30.0 * share  # ≈ 30 m3 per mu per year
            else:
                qty = tce * frac * 1000.0 / _KGCE[carrier] * share
            counters[dev] += qty
            yield dev, t, round(counters[dev], 3)
        t += timedelta(hours=1)


def _production(ts: datetime) -> bool:
    """Two shifts, 06:00–22:00 local time, Monday to Saturday."""
    local = ts + timedelta(hours=8)
    return local.weekday() < 6 and 6 <= local.hour < 22


def _line_series(
    lp: LineProfile,
    start: datetime,
    end: datetime,
    last_year: int,
) -> Iterator[tuple[str, str, datetime, float]]:
    """(device, metric, time, value) of a history line and its feeder, the way the live sensor
    reports them but sparser where the rules do not need more: machine_state every 15 minutes of
    production (availability counts 15-minute buckets), the ideal rate at the start of each
    production day, the part counters every 4 production hours and the feeder's energy counter
    every 4 hours (both cumulative, so daily increases stay exact)."""
    rnd = random.Random(f"{lp.firm_id}/{lp.workshop_id}")
    made = 0.0
    kwh = 2000.0
    t = start
    while t < end:
        local_h = (t.hour + 8) % 24
        gain = (1 - lp.yearly_gain) ** (t.year - last_year)
        parts = 0.0
        if _production(t):
            for q in range(4):
                r = rnd.random()
                state = (
                    2
                    if r < lp.availability
                    else (1 if r < lp.availability + (1 - lp.availability) / 2 else 3)
                )
                yield "hist-line", "machine_state", t + timedelta(minutes=15 * q), float(state)
                if state == 2:
                    parts += lp.ideal_rate * lp.performance * 0.25
            made += parts
            if local_h == 6:
                yield "hist-line", "ideal_rate_pcs_h", t, lp.ideal_rate
            if local_h % 4 == 1:  # 09, 13, 17, 21 h: the last one closes the production day
                good = math.floor(made * (1 - lp.reject_ratio))
                yield "hist-line", "good_count", t + timedelta(minutes=59), float(good)
                yield "hist-line", "reject_count", t + timedelta(minutes=59), float(math.floor(made) - good)
        kwh += 3.0 + parts * lp.kwh_per_part * gain  # base load 3 kWh an hour
        if local_h % 4 == 3:  # 03, 07, …, 23 h
            yield "hist-feeder", "elec_import_kwh", t + timedelta(minutes=59), round(kwh, 3)
        t += timedelta(hours=1)


def publish_history(
    mqtt_url: str,
    park: str,
    profiles: list[FirmProfile],
    start: datetime,
    end: datetime,
    last_year: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 2000,
    lines: list[LineProfile] | None = None,
    line_start: datetime | None = None,
) -> int:
    """Publish every firm's hourly history, and its history line's from `line_start` (default
    `start`), as batches (QoS 1) and wait for every PUBACK."""
    line_of = {lp.firm_id: lp for lp in lines or []}
    target = parse_mqtt_url(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"pp-demo-history-{park}", protocol=MQTTProtocolVersion.MQTTv5
    )
    if target.username:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set()
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(target.host, target.port)
    client.loop_start()
    sent = 0
    infos = []
    try:
        for p in profiles:
            gw = f"{p.firm_id}-hist"
            topic = data_topic(park, p.firm_id, gw)
            seq = 0
            rows: list[list[object]] = []
            metric = {
                "hist-elec": _METRIC["electricity"],
                "hist-gas": _METRIC["natural_gas"],
                "hist-water": _METRIC["water"],
            }
            series: Iterator[tuple[str, str, datetime, float]] = (
                (dev, metric[dev], ts, value) for dev, ts, value in _series(p, start, end, last_year)
            )
            if (lp := line_of.get(p.firm_id)) is not None:
                series = itertools.chain(series, _line_series(lp, line_start or start, end, last_year))
            for dev, name, ts, value in series:
                rows.append([dev, name, int(ts.timestamp() * 1000), value, 0])
                if len(rows) >= batch_size:
                    infos.append(client.publish(topic, _batch(gw, seq, rows), qos=1))
                    seq += 1
                    sent += len(rows)
                    if progress:
                        progress(len(rows))
                    rows = []
            if rows:
                infos.append(client.publish(topic, _batch(gw, seq, rows), qos=1))
                sent += len(rows)
                if progress:
                    progress(len(rows))
        for info in infos:
            info.wait_for_publish(timeout=120)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


def _batch(gateway: str, seq: int, rows: list[list[object]]) -> bytes:
    return batch_payload(gateway, seq, rows)


def count_history(
    profiles: list[FirmProfile],
    start: datetime,
    end: datetime,
    lines: list[LineProfile] | None = None,
    line_start: datetime | None = None,
) -> int:
    hours = int((end - start).total_seconds() // 3600)
    n = sum(hours * (3 if p.gas_share > 0 else 2) for p in profiles)
    for lp in lines or []:  # exact: the line series is cheap to walk
        n += sum(1 for _ in _line_series(lp, line_start or start, end, end.year - 1))
    return n
