"""One simulated Modbus device: its register map, its process, its faults and the image it serves.

The device advances in steps of `tick_s` (default 1 s) of its clock: between steps the served
registers do not change, so `truth()` and a read in the same step agree exactly. `truth()` is
computed by decoding the served registers with the map — exactly what a correct reader gets
after the register type's precision (float32 rounding, integer scaling).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from simulators._physics import Process, make_process
from simulators.errors import SimulatorError
from simulators.register_map import RegisterMap, RegisterSpec, decode, encode, load_register_map

__all__ = ["FAULTS", "PARAMS", "ReadOutcome", "SimulatedDevice", "check_params"]

FAULTS: tuple[str | None, ...] = (
    "timeout",
    "exception",
    "counter_reset",
    "meter_replaced",
    "clock_drift",
    "counter_rollover",
    None,
)
Table = Literal["holding", "input"]

# simulation parameters (`sim:` keys) understood per device kind; all numbers unless listed below
_COMMON_PARAMS = {"tick_s", "timeout_ratio", "exception_ratio"}
PARAMS: dict[str, set[str]] = {
    "meter": _COMMON_PARAMS
    | {
        "rated_power_kw",
        "shifts",
        "weekend_factor",
        "power_factor",
        "import_kwh",
        "export_kwh",
        "export_kw",
        "nominal_voltage_v",
    },
    "cems": _COMMON_PARAMS
    | {
        "nox_limit_mg_m3",
        "o2_ref_pct",
        "nox_base_ratio",
        "exceed_after_s",
        "exceed_every_s",
        "exceed_for_s",
        "exceed_factor",
        "calibration_after_s",
        "calibration_every_s",
        "calibration_for_s",
        "maintenance",
        "flue_flow_m3_h",
    },
}
_STRUCTURED = {"shifts", "maintenance"}


def check_params(kind: str, params: dict[str, Any]) -> list[tuple[str, object, str]]:
    """Problems with a device's simulation parameters: (key, value, reason)."""
    known = PARAMS.get(kind, set())
    problems: list[tuple[str, object, str]] = []
    for key, value in params.items():
        if key not in known:
            problems.append(
                (key, value, f"unknown simulation parameter for a {kind} (known: {sorted(known)})")
            )
        elif key == "shifts":
            ok = (
                isinstance(value, list)
                and value
                and all(
                    isinstance(s, list | tuple) and len(s) == 3 and all(isinstance(x, int | float) for x in s)
                    for s in value
                )
            )
            if not ok:
                problems.append((key, value, "must be a list of [start_hour, end_hour, load_fraction]"))
        elif key == "maintenance":
            ok = isinstance(value, list) and all(
                isinstance(m, dict)
                and isinstance(m.get("after_s"), int | float)
                and isinstance(m.get("for_s"), int | float)
                for m in value
            )
            if not ok:
                problems.append((key, value, "must be a list of {after_s, for_s}"))
        elif key not in _STRUCTURED and (
            value is not None and (not isinstance(value, int | float) or isinstance(value, bool))
        ):
            problems.append((key, value, "must be a number"))
    return problems


# Modbus exception codes the simulator can answer with.
ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
DEVICE_FAILURE = 0x04


@dataclass
class ReadOutcome:
    """What the device does with one read request: registers, an exception code, or silence."""

    registers: list[int] | None = None
    exception: int | None = None
    silent: bool = False


@dataclass
class _Counters:
    reads: int = 0
    timeouts: int = 0
    exceptions: int = 0
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)


class SimulatedDevice:
    """A device hosted by a ModbusSimulator or RtuSimulator (create it with `sim.add_device`)."""

    def __init__(
        self,
        device_id: int,
        model: str,
        seed: int = 0,
        params: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(device_id, int) or not 1 <= device_id <= 247:
            raise SimulatorError(f"device_id must be an integer 1..247 (got {device_id!r})")
        self.device_id = device_id
        self.model = model
        self.map: RegisterMap = load_register_map(model)
        self.params = dict(params or {})
        self.seed = seed
        bad = check_params(self.map.kind, self.params)
        if bad:
            raise SimulatorError("; ".join(f"sim.{k}: {reason} (got {v!r})" for k, v, reason in bad))
        hint = self.map.sim_hint
        if (
            self.map.kind == "meter"
            and self.params.get("rated_power_kw") is None
            and hint.get("rated_power_kw")
        ):
            self.params["rated_power_kw"] = random.Random(seed).choice(list(hint["rated_power_kw"]))
        cap = hint.get("max_rated_power_kw")
        if cap is not None and float(self.params.get("rated_power_kw") or 0) > float(cap):
            raise SimulatorError(
                f"rated_power_kw {self.params['rated_power_kw']!r} is beyond what model {model} serves "
                f"(direct-connected, at most {cap} kW)"
            )
        self._clock = clock
        self.tick_s = float(self.params.get("tick_s", 1.0))
        if self.tick_s <= 0:
            raise SimulatorError(f"sim.tick_s must be > 0 (got {self.tick_s!r})")
        self.timeout_ratio = float(self.params.get("timeout_ratio", 0.0))
        self.exception_ratio = float(self.params.get("exception_ratio", 0.0))
        for key, val in (("timeout_ratio", self.timeout_ratio), ("exception_ratio", self.exception_ratio)):
            if not 0.0 <= val <= 1.0:
                raise SimulatorError(f"sim.{key} must be within 0..1 (got {val!r})")
        self.created_at = clock()
        self.process: Process = make_process(self.map.kind, seed, self.params, self.created_at)
        self._fault_rng = random.Random(seed ^ 0x5EED)
        self._lock = threading.RLock()
        self._step: int | None = None
        self._frozen = False
        self._overrides: dict[str, float] = {}
        self._comm_fault: str | None = None
        self._exception_code = DEVICE_FAILURE
        self._drift_rate = 0.0
        self._clock_offset = 0.0
        self._drift_since: float | None = None
        self._values: dict[str, float] = {}
        self._image: dict[Table, dict[int, int]] = {"holding": {}, "input": {}}
        self.stats = _Counters()
        produced = self._probe_names()
        missing = [
            s.name for s in self.map.registers if s.name != "clock_s" and s.source_value not in produced
        ]
        if missing:
            raise SimulatorError(f"model {model}: the simulated process does not produce {missing}")

    def _probe_names(self) -> set[str]:
        probe = make_process(self.map.kind, self.seed, self.params, self.created_at)
        probe.advance(self._clock())
        return set(probe.values())

    # ----------------------------------------------------------------- time and image
    def _now(self) -> float:
        return self._clock()

    def device_clock(self) -> float:
        """The device's own clock (UNIX seconds): true time plus any drift injected."""
        with self._lock:
            now = self._now()
            offset = self._clock_offset
            if self._drift_since is not None:
                offset += (now - self._drift_since) * self._drift_rate
            return now + offset

    def _refresh(self) -> None:
        """Advance the process to the current step (no-op inside a step or while frozen)."""
        if self._frozen and self._step is not None:
            return
        now = self._now()
        step = math.floor(now / self.tick_s)
        if step == self._step:
            return
        self._step = step
        self.process.advance(step * self.tick_s)
        self._rebuild()

    def _rebuild(self) -> None:
        vals = self.process.values()
        vals.update(self._overrides)
        clock_value = self.device_clock()
        image: dict[Table, dict[int, int]] = {"holding": {}, "input": {}}
        for spec in self.map.registers:
            if spec.name in self._overrides:
                value = self._overrides[spec.name]
            elif spec.name == "clock_s":
                value = clock_value
            else:
                value = vals[spec.source_value]
            words = encode(spec, float(math.floor(value)) if spec.name == "clock_s" else value)
            for i, w in enumerate(words):
                image[spec.table][spec.address + i] = w
        self._image = image
        self._values = vals

    def _decoded(self, spec: RegisterSpec) -> float:
        words = [self._image[spec.table][spec.address + i] for i in range(spec.count)]
        return decode(spec, words)

    # ----------------------------------------------------------------- public API
    def truth(self, include_extra: bool = False) -> dict[str, float]:
        """Catalogue metric -> the engineering value served now, as a correct reader decodes it.

        With include_extra=True, registers outside the catalogue (phase powers, clock, status)
        are included under their map names.
        """
        with self._lock:
            self._refresh()
            out: dict[str, float] = {}
            for spec in self.map.registers:
                if spec.metric:
                    out[spec.metric] = self._decoded(spec)
                elif include_extra:
                    out[spec.name] = self._decoded(spec)
            return out

    def registers(self, table: Table, address: int, count: int) -> list[int]:
        """The raw registers served now (reserved addresses inside a block read as 0)."""
        with self._lock:
            self._refresh()
            img = self._image[table]
            return [img.get(a, 0) for a in range(address, address + count)]

    def freeze(self, values: dict[str, float] | None = None) -> None:
        """Hold the served values constant; `values` (catalogue metric or map name -> value) override."""
        with self._lock:
            self._refresh()
            names = {s.name for s in self.map.registers} | {s.metric for s in self.map.registers if s.metric}
            for key, val in (values or {}).items():
                if key not in names:
                    raise SimulatorError(
                        f"freeze: {key!r} is not served by model {self.model} (known: {sorted(names)})"
                    )
                if not isinstance(val, int | float) or isinstance(val, bool):
                    raise SimulatorError(f"freeze: value of {key!r} must be a number (got {val!r})")
            by_metric = {s.metric: s.name for s in self.map.registers if s.metric}
            self._overrides.update({by_metric.get(k, k): float(v) for k, v in (values or {}).items()})
            self._frozen = True
            self._rebuild()

    def unfreeze(self) -> None:
        """Let values move again; counters continue from where they were held (no jump)."""
        with self._lock:
            self._frozen = False
            self._overrides.clear()
            now = self._now()
            self._step = math.floor(now / self.tick_s)
            self.process.t = self._step * self.tick_s
            self._rebuild()

    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def fault(self) -> str | None:
        """The communication fault in force ("timeout" or "exception") or None."""
        return self._comm_fault

    def inject(
        self,
        fault: str | None,
        *,
        code: int = DEVICE_FAILURE,
        base: float | None = None,
        rate: float = 0.05,
        margin: float = 1.0,
    ) -> None:
        """Inject a fault.

        - "timeout": the device stops answering (no reply at all) until `inject(None)`.
        - "exception": every read gets Modbus exception `code` (default 0x04 device failure;
          0x02 illegal data address is the other common one) until `inject(None)`.
        - "counter_reset": energy counters go back to 0 now, then keep rising.
        - "meter_replaced": counters jump to a new arbitrary base (`base`, default random), then rise.
        - "clock_drift": the device clock runs fast by `rate` s per s (default 0.05 = 3 min/h),
          visible in the map's clock register (cems-analyser, generic-meter) and in `device_clock()`.
        - "counter_rollover": the import counter is set `margin` kWh below its register's span,
          so it rolls over to ~0 soon (only models with a wrapping integer counter: generic-meter).
        - None: clears timeout, exception and clock drift (the clock is set right again).
        """
        if fault not in FAULTS:
            raise SimulatorError(f"unknown fault {fault!r} (known: {list(FAULTS)})")
        with self._lock:
            self._refresh()
            now = self._now()
            if fault is None:
                self._comm_fault = None
                self._drift_since = None
                self._clock_offset = 0.0
                self._drift_rate = 0.0
            elif fault in ("timeout", "exception"):
                if fault == "exception" and not 1 <= code <= 255:
                    raise SimulatorError(f"exception code must be 1..255 (got {code!r})")
                self._comm_fault = fault
                self._exception_code = code
            elif fault == "counter_reset":
                self.process.reset_counters(0.0)
            elif fault == "meter_replaced":
                new_base = base if base is not None else round(self._fault_rng.uniform(10.0, 5000.0), 1)
                self.process.reset_counters(float(new_base))
            elif fault == "counter_rollover":
                spec = next((r for r in self.map.registers if r.metric == "elec_import_kwh"), None)
                if spec is None or spec.span is None:
                    raise SimulatorError(
                        f"model {self.model} has no wrapping integer import counter to roll over"
                    )
                self.process.set_import(spec.span - margin)
            elif fault == "clock_drift":
                if self._drift_since is not None:
                    self._clock_offset += (now - self._drift_since) * self._drift_rate
                self._drift_since = now
                self._drift_rate = rate
            self.stats.events.append(
                (now, str(fault), {"code": code, "base": base, "rate": rate, "margin": margin})
            )
            self._rebuild()

    # ----------------------------------------------------------------- wire side
    def handle_read(self, table: Table, address: int, count: int) -> ReadOutcome:
        """Called by the server for every read of this device."""
        with self._lock:
            self.stats.reads += 1
            if self._comm_fault == "timeout" or (
                self.timeout_ratio and self._fault_rng.random() < self.timeout_ratio
            ):
                self.stats.timeouts += 1
                return ReadOutcome(silent=True)
            if self._comm_fault == "exception":
                self.stats.exceptions += 1
                return ReadOutcome(exception=self._exception_code)
            if self.exception_ratio and self._fault_rng.random() < self.exception_ratio:
                self.stats.exceptions += 1
                return ReadOutcome(exception=DEVICE_FAILURE)
            return ReadOutcome(registers=self.registers(table, address, count))

    def blocks(self, table: Table) -> list[tuple[int, int]]:
        """Readable address ranges (start, count) of a table: the map's values plus small gaps."""
        specs = self.map.table(table)
        out: list[tuple[int, int]] = []
        for s in specs:
            if out and s.address - (out[-1][0] + out[-1][1]) <= self.map.max_gap:
                start = out[-1][0]
                out[-1] = (start, s.end - start)
            else:
                out.append((s.address, s.count))
        return out
