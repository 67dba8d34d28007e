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
    default_source_type: str
    reference_o2_pct: dict[str, float]
    limits: dict[str, dict[str, float]]
    valid_hour_fraction: float

    def values_sql(self) -> str:
        """A VALUES list (source_type, metric, limit_value, o2_ref) for the dashboards' SQL."""
        rows = []
        for st, lims in sorted(self.limits.items()):
            for metric, value in sorted(lims.items()):
                rows.append(f"('{st}', '{metric}', {float(value)!r}, {float(self.reference_o2_pct[st])!r})")
        return ",\n    ".join(rows)


def load_limits(path: Path = LIMITS_FILE) -> EmissionLimits:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read emission limits: {exc}") from exc
    try:
        src = data["source"]
        o2 = {str(k): float(v) for k, v in data["reference_o2_pct"].items()}
        limits = {str(st): {str(m): float(v) for m, v in lim.items()} for st, lim in data["limits_mg_m3"].items()}
        default = str(data["default_source_type"])
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
    if default not in limits:
        raise ConfigError(f"{path}: default_source_type {default!r} has no limits")
    if not 0 < valid <= 1:
        raise ConfigError(f"{path}: valid_hour.min_fraction must be in (0, 1] (got {valid})")
    return EmissionLimits(
        source=f"{src['standard']} {src['clause']}", default_source_type=default,
        reference_o2_pct=o2, limits=limits, valid_hour_fraction=valid,
    )
