"""Named built-in checks (pandera-like): rule data names a check and gives its parameters.

A check maps a measured value and its parameters to an outcome: passed (True/False, or None when
the value is missing) and the fraction of an item's points earned (for scored schemes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["CHECKS", "Check", "CheckOutcome", "run_check"]


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool | None
    fraction: float
    rule: str


@dataclass(frozen=True)
class Check:
    name: str
    params: tuple[str, ...]
    describe: str
    fn: Callable[[float, Mapping[str, float]], CheckOutcome]


def _at_least(v: float, p: Mapping[str, float]) -> CheckOutcome:
    ok = v >= p["threshold"]
    return CheckOutcome(ok, 1.0 if ok else 0.0, f"{v:.6g} >= {p['threshold']:.6g}")


def _at_most(v: float, p: Mapping[str, float]) -> CheckOutcome:
    ok = v <= p["threshold"]
    return CheckOutcome(ok, 1.0 if ok else 0.0, f"{v:.6g} <= {p['threshold']:.6g}")


def _linear(v: float, p: Mapping[str, float]) -> CheckOutcome:
    """0 at or beyond the baseline (基准值), 1 at or beyond the leading value (引领值), linear between.

    The direction follows the data: baseline > leading means lower is better.
    """
    b, lead = p["baseline"], p["leading"]
    frac = (1.0 if v == lead else 0.0) if b == lead else (v - b) / (lead - b)
    frac = min(1.0, max(0.0, frac))
    better_than_baseline = (v <= b) if b > lead else (v >= b)
    return CheckOutcome(
        better_than_baseline, frac, f"baseline {b:.6g}, leading {lead:.6g}: {frac:.3f} of the points"
    )


CHECKS: dict[str, Check] = {
    "at_least": Check("at_least", ("threshold",), "value >= threshold", _at_least),
    "at_most": Check("at_most", ("threshold",), "value <= threshold", _at_most),
    "linear": Check("linear", ("baseline", "leading"), "scored between baseline and leading value", _linear),
}


def run_check(name: str, value: float | None, params: Mapping[str, float]) -> CheckOutcome:
    check = CHECKS[name]
    if value is None:
        return CheckOutcome(None, 0.0, "no data")
    return check.fn(value, params)
