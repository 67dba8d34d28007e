"""The metric catalogue: every metric a reading may carry, as versioned data."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from parkpulse.errors import ConfigError

__all__ = ["Catalogue", "Metric", "MetricKind", "load_catalogue"]

MetricKind = Literal["counter", "gauge", "state", "count"]


class Metric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: int = Field(ge=1, le=32767)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str
    kind: MetricKind
    carrier: str | None = None
    direction: Literal["import", "export"] | None = None
    pollutant: str | None = None
    tariff: Literal["sharp", "peak", "flat", "valley"] | None = None
    """The time-of-use period a per-tariff register counts (尖/峰/平/谷); such a counter has no carrier."""
    zh: str
    en: str
    min: float | None = None
    max: float | None = None
    states: dict[int, str] | None = None

    @property
    def cumulative(self) -> bool:
        """True for values that only rise (energy counters, part counts)."""
        return self.kind in ("counter", "count")

    @model_validator(mode="after")
    def _carrier_needs_counter(self) -> Metric:
        if self.carrier and self.kind != "counter":
            raise ValueError(f"metric {self.name}: a carrier is only meaningful on a counter")
        if self.tariff and (self.carrier or self.kind != "counter"):
            raise ValueError(f"metric {self.name}: a per-tariff register is a counter without a carrier")
        return self


class Catalogue(BaseModel):
    version: int
    metrics: list[Metric]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        ids = [m.id for m in self.metrics]
        names = [m.name for m in self.metrics]
        if len(set(ids)) != len(ids):
            raise ValueError("metric ids must be unique")
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        return self

    def by_name(self) -> dict[str, Metric]:
        return {m.name: m for m in self.metrics}

    def by_id(self) -> dict[int, Metric]:
        return {m.id: m for m in self.metrics}

    def get(self, name: str) -> Metric:
        try:
            return self.by_name()[name]
        except KeyError:
            raise ConfigError(f"metric: unknown name {name!r}") from None

    def carriers(self) -> set[str]:
        return {m.carrier for m in self.metrics if m.carrier}


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    text = resources.files(__package__).joinpath("metrics.yaml").read_text(encoding="utf-8")
    try:
        return Catalogue.model_validate(yaml.safe_load(text))
    except Exception as exc:  # pydantic.ValidationError and yaml errors
        raise ConfigError(f"metrics.yaml: {exc}") from exc
