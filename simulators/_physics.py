"""What the simulated hardware measures: load curves, energy integration, stack emissions.

Every process here is deterministic for a given seed and sequence of time steps, and advanced in
discrete steps by its device (values are held between steps, like a meter's display refresh).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

__all__ = ["CemsProcess", "MeterProcess", "Process", "ShiftProfile", "make_process"]

_SHANGHAI_OFFSET_S = 8 * 3600  # the simulated park runs on China Standard Time (no DST)


@dataclass(frozen=True)
class ShiftProfile:
    """Load fraction of rated power by local hour: three shifts, night low, weekend lower."""

    shifts: tuple[tuple[int, int, float], ...] = ((0, 8, 0.30), (8, 16, 0.85), (16, 24, 0.65))
    weekend_factor: float = 0.6
    utc_offset_s: int = _SHANGHAI_OFFSET_S

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ShiftProfile:
        shifts = params.get("shifts")
        out = cls(weekend_factor=float(params.get("weekend_factor", 0.6)))
        if shifts:
            out = cls(
                shifts=tuple((int(s[0]), int(s[1]), float(s[2])) for s in shifts),
                weekend_factor=out.weekend_factor,
            )
        return out

    def fraction(self, t: float) -> float:
        local = t + self.utc_offset_s
        hour = (local % 86400) / 3600.0
        weekday = int(local // 86400 + 3) % 7  # 1970-01-01 was a Thursday (3 with Monday = 0)
        frac = self.shifts[-1][2]
        for start, end, f in self.shifts:
            if start <= hour < end:
                frac = f
                break
        return frac * (self.weekend_factor if weekday >= 5 else 1.0)


class Process:
    """Base: a process advanced to time t; `values()` are engineering values by register name."""

    def __init__(self, seed: int, params: dict[str, Any]) -> None:
        self.rng = random.Random(seed)
        self.params = params
        self.t: float | None = None

    def advance(self, t: float) -> None:
        raise NotImplementedError

    def values(self) -> dict[str, float]:
        raise NotImplementedError

    def reset_counters(self, base: float) -> None:
        """Counter reset (base 0) or meter replacement (new base)."""

    def set_import(self, value: float) -> None:
        """Set the import counter (used to bring a counter next to its rollover)."""


class MeterProcess(Process):
    """A three-phase feeder: shift load with noise, PF and voltage noise, counters that only rise."""

    def __init__(self, seed: int, params: dict[str, Any]) -> None:
        super().__init__(seed, params)
        rng = self.rng
        self.rated_kw = float(params.get("rated_power_kw") or rng.choice([30, 55, 90, 160, 250, 400, 630]))
        self.profile = ShiftProfile.from_params(params)
        self.nominal_v = float(params.get("nominal_voltage_v", 220.0))
        self.pf_mean = float(params.get("power_factor", rng.uniform(0.86, 0.95)))
        self.import_kwh = float(params.get("import_kwh", round(rng.uniform(2_000, 400_000), 1)))
        self.export_kwh = float(params.get("export_kwh", 0.0))
        self.export_kw = float(params.get("export_kw", 0.0))  # e.g. rooftop PV surplus, constant
        self.reactive_kvarh = self.import_kwh * 0.45
        self.imbalance = [rng.uniform(-0.04, 0.04) for _ in range(3)]
        self.noise = 0.0
        self.p_kw = 0.0
        self.q_kvar = 0.0
        self._vals: dict[str, float] = {}

    def advance(self, t: float) -> None:
        if self.t is not None and t > self.t:
            dt_h = (t - self.t) / 3600.0
            self.import_kwh += max(self.p_kw, 0.0) * dt_h
            self.export_kwh += self.export_kw * dt_h
            self.reactive_kvarh += max(self.q_kvar, 0.0) * dt_h
        self.t = t
        rng = self.rng
        self.noise = 0.85 * self.noise + rng.gauss(0.0, 0.02)
        frac = max(0.02, self.profile.fraction(t) * (1.0 + self.noise))
        p = self.rated_kw * frac
        pf = min(0.995, max(0.6, self.pf_mean + rng.gauss(0.0, 0.01)))
        q = p * math.tan(math.acos(pf))
        self.p_kw, self.q_kvar = p, q
        v = [self.nominal_v * (1.0 + rng.gauss(0.0, 0.006)) for _ in range(3)]
        share = [1.0 + self.imbalance[i] for i in range(3)]
        norm = sum(share)
        p_ph = [p * s / norm for s in share]
        pf_ph = [min(0.999, max(0.5, pf + rng.gauss(0.0, 0.004))) for _ in range(3)]
        i_ph = [p_ph[k] * 1000.0 / (v[k] * pf_ph[k]) for k in range(3)]
        ll = [math.sqrt(v[a] ** 2 + v[b] ** 2 + v[a] * v[b]) for a, b in ((0, 1), (1, 2), (2, 0))]
        self._vals = {
            "voltage_l1_v": v[0],
            "voltage_l2_v": v[1],
            "voltage_l3_v": v[2],
            "voltage_l1_l2_v": ll[0],
            "voltage_l2_l3_v": ll[1],
            "voltage_l3_l1_v": ll[2],
            "voltage_ll_avg_v": sum(ll) / 3,
            "voltage_ln_avg_v": sum(v) / 3,
            "current_l1_a": i_ph[0],
            "current_l2_a": i_ph[1],
            "current_l3_a": i_ph[2],
            "current_avg_a": sum(i_ph) / 3,
            "active_power_kw": p,
            "active_power_l1_kw": p_ph[0],
            "active_power_l2_kw": p_ph[1],
            "active_power_l3_kw": p_ph[2],
            "reactive_power_kvar": q,
            "apparent_power_kva": math.hypot(p, q),
            "power_factor": pf,
            "power_factor_l1": pf_ph[0],
            "power_factor_l2": pf_ph[1],
            "power_factor_l3": pf_ph[2],
            "frequency_hz": 50.0 + rng.gauss(0.0, 0.015),
        }

    def values(self) -> dict[str, float]:
        out = dict(self._vals)
        out["elec_import_kwh"] = self.import_kwh
        out["elec_export_kwh"] = self.export_kwh
        out["elec_reactive_kvarh"] = self.reactive_kvarh
        out["export_kvarh"] = 0.0
        out["active_energy_total_kwh"] = self.import_kwh + self.export_kwh
        return out

    def set_import(self, value: float) -> None:
        self.import_kwh = value

    def reset_counters(self, base: float) -> None:
        self.import_kwh = base
        self.export_kwh = 0.0 if base == 0 else round(base * 0.01, 1)
        self.reactive_kvarh = base * 0.45


class CemsProcess(Process):
    """A gas-fired boiler stack: NOx that sometimes breaks its limit, a periodic calibration.

    Times are relative to `t0` (when the device was created). Parameters (scenario `sim:`):
    `nox_limit_mg_m3` (200 — GB 13271-2014 gas boilers; only shapes the excursions, the limit
    that counts is the platform's), `o2_ref_pct` (3.5), `nox_base_ratio` (normal NOx at
    reference O2 as a share of the limit, 0.62), `exceed_after_s` (first excursion, default a
    seeded time within the first period), `exceed_every_s` (period, 4 h; 0 = never),
    `exceed_for_s` (75 min), `exceed_factor` (NOx at reference O2 during an excursion as a
    share of the limit, 1.35). With these defaults the clock hour that overlaps an excursion
    most (>= 37.5 min) averages >= ~215 mg/m3 at reference O2. Calibration (HJ 212 flag C = 5):
    `calibration_after_s` (default 6 h), `calibration_every_s` (1 day; 0 = never),
    `calibration_for_s` (15 min). Maintenance (flag M = 2): `maintenance: [{after_s, for_s}]`.
    """

    def __init__(self, seed: int, params: dict[str, Any], t0: float = 0.0) -> None:
        super().__init__(seed, params)
        rng = self.rng
        self.t0 = t0
        self.limit = float(params.get("nox_limit_mg_m3", 200.0))
        self.o2_ref = float(params.get("o2_ref_pct", 3.5))
        self.every = float(params.get("exceed_every_s", 4 * 3600))
        self.exceed_for = float(params.get("exceed_for_s", 75 * 60))
        self.factor = float(params.get("exceed_factor", 1.35))
        self.cal_every = float(params.get("calibration_every_s", 86400))
        self.cal_for = float(params.get("calibration_for_s", 900))
        self.exceed_after = float(params.get("exceed_after_s", rng.uniform(0, max(self.every, 1.0))))
        self.cal_after = float(params.get("calibration_after_s", 6 * 3600))
        self.maintenance = [(float(m["after_s"]), float(m["for_s"])) for m in params.get("maintenance") or []]
        self.base_ratio = float(params.get("nox_base_ratio", 0.62))  # normal NOx at ref O2 / limit
        self.o2 = 5.5
        self.noise = 0.0
        self._vals: dict[str, float] = {}

    def to_measured(self, at_ref: float, o2: float) -> float:
        """Concentration at reference O2 -> measured (HJ 75: C_ref = C × (21-O2ref)/(21-O2))."""
        return at_ref * (21.0 - o2) / (21.0 - self.o2_ref)

    @staticmethod
    def _in_cycle(rel: float, after: float, every: float, length: float) -> bool:
        if every <= 0 or rel < after:
            return False
        return ((rel - after) % every) < length

    def in_excursion(self, t: float) -> bool:
        return self._in_cycle(t - self.t0, self.exceed_after, self.every, self.exceed_for)

    def in_calibration(self, t: float) -> bool:
        return self._in_cycle(t - self.t0, self.cal_after, self.cal_every, self.cal_for)

    def in_maintenance(self, t: float) -> bool:
        rel = t - self.t0
        return any(after <= rel < after + length for after, length in self.maintenance)

    def advance(self, t: float) -> None:
        self.t = t
        rng = self.rng
        self.noise = 0.8 * self.noise + rng.gauss(0.0, 0.03)
        self.o2 = min(9.0, max(3.8, 5.5 + 0.7 * self.noise * 10 + rng.gauss(0.0, 0.1)))
        ratio = (self.factor if self.in_excursion(t) else self.base_ratio) * (1.0 + self.noise)
        nox_ref = max(5.0, self.limit * ratio)
        calibrating = self.in_calibration(t)
        maintaining = self.in_maintenance(t)
        flag = 2 if maintaining else 5 if calibrating else 0
        self._vals = {
            "nox_mg_m3": self.to_measured(nox_ref, self.o2),
            "so2_mg_m3": max(0.5, 6.0 + rng.gauss(0.0, 1.0)),
            "particulate_mg_m3": max(0.2, 2.5 + rng.gauss(0.0, 0.4)),
            "o2_pct": self.o2,
            "flue_flow_m3_h": max(
                1000.0, float(self.params.get("flue_flow_m3_h", 24000.0)) * (1.0 + self.noise)
            ),
            "flue_temp_c": 118.0 + 20.0 * self.noise + rng.gauss(0.0, 0.5),
            "cems_flag": float(flag),
            "status_word": (4.0 if maintaining else 0.0) + (2.0 if calibrating else 0.0),
        }

    def values(self) -> dict[str, float]:
        return dict(self._vals)


def make_process(kind: str, seed: int, params: dict[str, Any], t0: float = 0.0) -> Process:
    if kind == "cems":
        return CemsProcess(seed, params, t0)
    if kind == "meter":
        return MeterProcess(seed, params)
    raise ValueError(f"no process for device kind {kind!r}")
