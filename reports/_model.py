"""What a report holds: plain rows read from the contract views, independent of the output format."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from reports._period import Period


@dataclass(frozen=True)
class ParkInfo:
    park_id: str
    name: str
    name_en: str | None
    timezone: str
    land_mu: float | None


@dataclass(frozen=True)
class FirmInfo:
    firm_id: str
    name: str
    name_en: str | None
    cluster: str | None
    industry: str | None
    land_mu: float | None


@dataclass
class EnergyRow:
    """One carrier and direction over the period. tce = quantity × kgce_per_unit / 1000 (当量值)."""

    carrier: str
    direction: str
    unit: str
    quantity: float
    kgce_per_unit: float | None  # None: no coefficient in the results for this carrier/unit
    tce: float | None
    in_total: bool
    suspect: bool


@dataclass(frozen=True)
class DailyRow:
    day: date
    carrier: str
    direction: str
    unit: str
    quantity: float


@dataclass(frozen=True)
class KpiRow:
    firm_id: str
    firm_name: str
    year: int
    rule_set: str
    rule_version: str
    energy_tce: float | None
    intensity: float | None  # tce / 10^4 CNY
    intensity_change_pct: float | None
    mu_tax: float | None  # 10^4 CNY / mu
    mu_added_value: float | None
    score: float | None
    mu_class: str | None


@dataclass(frozen=True)
class CostRow:
    month: date
    carrier: str
    period: str  # sharp / peak / flat / valley / demand / capacity / all / unpriced
    quantity: float | None
    unit: str | None
    price: float | None
    price_unit: str | None
    cost_yuan: float | None
    tariff: str | None  # "tariff_id version"
    verified: bool | None
    register_mismatch: bool


@dataclass(frozen=True)
class AlertRow:
    alert_id: int
    firm_id: str | None
    kind: str
    severity: str
    device_id: str | None
    metric: str | None
    state: str
    opened_at: datetime
    resolved_at: datetime | None
    value: float | None
    limit_value: float | None
    unit: str | None
    valid_hours: int  # valid stack-hours of the alert's device and metric while it was open, in the period
    exceeded_hours: int


@dataclass(frozen=True)
class CompletenessRow:
    firm_id: str
    gateway_id: str
    device_id: str
    kind: str
    poll_interval_s: float
    expected: int
    received: int

    @property
    def share(self) -> float:
        return min(self.received / self.expected, 1.0) if self.expected else 1.0


@dataclass(frozen=True)
class GapRow:
    kind: str  # seq / data
    firm_id: str | None
    gateway_id: str
    device_id: str | None
    metric: str | None
    start: datetime | None
    end: datetime | None
    count: int | None
    reason: str | None


@dataclass(frozen=True)
class ScoreRow:
    indicator: str
    value: float | None
    target: float | None
    unit: str | None
    met: bool | None


@dataclass
class Report:
    """A firm's report (`firm` set) or a park's (`firm` None: every firm of the park)."""

    park: ParkInfo
    firm: FirmInfo | None
    period: Period
    generated_at: datetime
    firms: list[FirmInfo] = field(default_factory=list)
    energy: list[EnergyRow] = field(default_factory=list)
    daily: list[DailyRow] = field(default_factory=list)
    kpis: list[KpiRow] = field(default_factory=list)
    costs: list[CostRow] = field(default_factory=list)
    no_tariff: list[str] = field(default_factory=list)  # firm ids without an electricity tariff
    alerts: list[AlertRow] = field(default_factory=list)
    completeness: list[CompletenessRow] = field(default_factory=list)
    gaps: list[GapRow] = field(default_factory=list)
    scorecard: list[ScoreRow] = field(default_factory=list)
    rule_sets: list[str] = field(default_factory=list)  # "henan-2025 3" — what the tce and classes used
    tariffs: list[str] = field(default_factory=list)  # "henan-tou 2025-06" — what the costs used
    notes: list[str] = field(default_factory=list)

    @property
    def scope(self) -> str:
        return "park" if self.firm is None else "firm"

    @property
    def subject_id(self) -> str:
        return self.park.park_id if self.firm is None else self.firm.firm_id

    def total_tce(self) -> float | None:
        """Imports counted in the total, less exported electricity (as the rules engine nets it)."""
        vals = [(r.tce, -1.0 if r.direction == "export" else 1.0) for r in self.energy if r.in_total]
        if not vals or any(v is None for v, _ in vals):
            return None
        return sum(float(v) * s for v, s in vals if v is not None)

    def total_cost(self) -> float | None:
        vals = [c.cost_yuan for c in self.costs if c.cost_yuan is not None]
        return sum(vals) if vals else None
