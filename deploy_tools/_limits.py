"""Emission limits for the environment dashboard, from deploy_tools/data/emission_limits.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from parkpulse.errors import ConfigError

__all__ = ["LIMITS_FILE", "EmissionLimits", "load_limits"]

LIMITS_FILE = Path(__file__).with_name("data") / "emission_limits.yaml"
POLLUTANTS = ("nox_mg_m3", "so2_mg_m3", "particulate_mg_m3")


@dataclass(frozen=True)
class EmissionLimits:
    source: str
    reference_o2_pct: dict[str, float]
    limits: dict[str, dict[str, float]]
    valid_hour_fraction: float

    def o2_values_sql(self) -> str:
        """A VALUES list (source_type, o2_ref) for the dashboards' SQL."""
        return ", ".join(f"('{st}', {o2!r})" for st, o2 in sorted(self.reference_o2_pct.items()))

    def limit_values_sql(self) -> str:
        """A VALUES list (source_type, metric, limit_value) for the dashboards' SQL."""
        return ", ".join(
            f"('{st}', '{metric}', {float(value)!r})"
            for st, lims in sorted(self.limits.items()) for metric, value in sorted(lims.items())
        )


def load_limits(path: Path = LIMITS_FILE) -> EmissionLimits:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read emission limits: {exc}") from exc
    try:
        src = data["source"]
        o2 = {str(k): float(v) for k, v in data["reference_o2_pct"].items()}
        limits = {str(st): {str(m): float(v) for m, v in lim.items()} for st, lim in data["limits_mg_m3"].items()}
        valid = float(data["valid_hour"]["min_fraction"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: malformed emission limits ({exc!r})") from exc
    for st, lim in limits.items():
        if st not in o2:
            raise ConfigError(f"{path}: reference_o2_pct.{st} missing (limits_mg_m3.{st} needs it)")
        for m, v in lim.items():
            if m not in POLLUTANTS:
                raise ConfigError(f"{path}: limits_mg_m3.{st}.{m}: not a pollutant metric ({', '.join(POLLUTANTS)})")
            if v <= 0:
                raise ConfigError(f"{path}: limits_mg_m3.{st}.{m}: must be > 0 (got {v})")
    if not limits:
        raise ConfigError(f"{path}: limits_mg_m3 is empty")
    if not 0 < valid <= 1:
        raise ConfigError(f"{path}: valid_hour.min_fraction must be in (0, 1] (got {valid})")
    return EmissionLimits(
        source=f"{src['standard']}, {src['clause']}",
        reference_o2_pct=o2, limits=limits, valid_hour_fraction=valid,
    )
