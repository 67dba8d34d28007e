"""Register maps (data files in simulators/registers/) and the codec between values and registers.

A register entry says where a value lives on the wire and how it is encoded:

- `address`: the address on the wire (PDU address, 0-based). `manual` keeps the number printed in
  the manufacturer's document (e.g. 30073 or 3204) so a reader can check the off-by-one.
- `table`: `holding` (FC03) or `input` (FC04).
- `type`: u16 i16 u32 i32 f32 u64 i64 f64.
- `word_order`: `big` = most significant 16-bit word first (ABCD), `little` = least significant
  word first (CDAB). `byte_order` inside each word: `big` (the Modbus default) or `little`.
- engineering value = raw * scale + offset (raw = the decoded integer or float).
- `wrap: true` marks an unsigned integer counter that rolls over to 0 past its range, as the
  device does (other integers saturate at their range).
- `metric`: a catalogue metric name (plain string) or absent for registers outside the catalogue
  (then `name` names it). `value` names the simulated quantity a register serves when it is
  not its own name (a second data area serving the same voltage, say).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from simulators.errors import RegisterMapError
from simulators.registers import REGISTER_DIR

__all__ = [
    "TYPES",
    "RegisterMap",
    "RegisterSpec",
    "decode",
    "encode",
    "load_register_map",
    "load_register_map_file",
    "model_names",
]

Table = Literal["holding", "input"]

# type -> (struct code of the whole big-endian value, number of 16-bit registers, is_float)
TYPES: dict[str, tuple[str, int, bool]] = {
    "u16": ("H", 1, False),
    "i16": ("h", 1, False),
    "u32": ("I", 2, False),
    "i32": ("i", 2, False),
    "f32": ("f", 2, True),
    "u64": ("Q", 4, False),
    "i64": ("q", 4, False),
    "f64": ("d", 4, True),
}
_INT_RANGE = {
    "u16": (0, 2**16 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "u32": (0, 2**32 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "u64": (0, 2**64 - 1),
    "i64": (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True)
class RegisterSpec:
    """One value in a register map."""

    name: str
    address: int
    type: str
    table: Table = "holding"
    metric: str | None = None
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    manual: int | str | None = None
    note: str | None = None
    value: str | None = None  # the process value served (default: metric or name)
    wrap: bool = False  # an unsigned counter that rolls over past its range (else: clamped)

    @property
    def source_value(self) -> str:
        return self.value or self.name

    @property
    def count(self) -> int:
        return TYPES[self.type][1]

    @property
    def is_float(self) -> bool:
        return TYPES[self.type][2]

    @property
    def span(self) -> float | None:
        """For a wrapping counter: the engineering value at which it rolls over."""
        if not self.wrap or self.type not in _INT_RANGE:
            return None
        return (_INT_RANGE[self.type][1] + 1) * self.scale

    @property
    def end(self) -> int:
        """First address after this value."""
        return self.address + self.count


@dataclass(frozen=True)
class RegisterMap:
    """A model's register map as loaded from its YAML file."""

    model: str
    title: str
    kind: str
    source: dict[str, Any]
    registers: tuple[RegisterSpec, ...]
    path: Path
    max_gap: int = 32
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sim_hint(self) -> dict[str, Any]:
        hint = self.extra.get("sim_hint") or {}
        return hint if isinstance(hint, dict) else {}

    def by_name(self) -> dict[str, RegisterSpec]:
        return {r.name: r for r in self.registers}

    def metrics(self) -> list[str]:
        """Catalogue metric names this map serves."""
        return [r.metric for r in self.registers if r.metric]

    def table(self, table: Table) -> list[RegisterSpec]:
        return sorted((r for r in self.registers if r.table == table), key=lambda r: r.address)


def encode(spec: RegisterSpec, value: float) -> list[int]:
    """Engineering value -> the registers a device serves (after the type's precision)."""
    code, count, is_float = TYPES[spec.type]
    raw = (value - spec.offset) / spec.scale
    if is_float:
        packed = struct.pack(">" + code, raw)
    else:
        if math.isnan(raw) or math.isinf(raw):
            raise ValueError(f"{spec.name}: {value!r} cannot be encoded as {spec.type}")
        lo, hi = _INT_RANGE[spec.type]
        iv = round(raw) % (hi + 1) if spec.wrap and lo == 0 else min(hi, max(lo, round(raw)))
        packed = struct.pack(">" + code, iv)
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 2 * count, 2)]
    if spec.word_order == "little":
        words.reverse()
    if spec.byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def decode(spec: RegisterSpec, registers: list[int]) -> float:
    """Registers -> engineering value, exactly as a correct reader decodes them."""
    code, count, _ = TYPES[spec.type]
    if len(registers) != count:
        raise ValueError(f"{spec.name}: {spec.type} needs {count} registers, got {len(registers)}")
    words = list(registers)
    if spec.byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if spec.word_order == "little":
        words.reverse()
    raw = struct.unpack(">" + code, b"".join(w.to_bytes(2, "big") for w in words))[0]
    return float(raw) * spec.scale + spec.offset


def model_names() -> list[str]:
    """Models with a register map file, sorted."""
    return sorted(p.stem for p in REGISTER_DIR.glob("*.yaml"))


def _field(
    src: str, where: str, entry: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    if key not in entry:
        if default is ...:
            raise RegisterMapError(src, f"{where}.{key}", None, "required field missing")
        return default
    value = entry[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RegisterMapError(src, f"{where}.{key}", value, f"must be {getattr(kind, '__name__', kind)}")
    return value


@cache
def load_register_map(model: str) -> RegisterMap:
    """Load and check simulators/registers/<model>.yaml (cached; the result is immutable)."""
    path = REGISTER_DIR / f"{model}.yaml"
    if not path.is_file():
        raise RegisterMapError(str(REGISTER_DIR), "model", model, f"no register map (known: {model_names()})")
    return load_register_map_file(path)


_MAP_KEYS = frozenset({"model", "title", "kind", "source", "registers", "defaults", "max_gap"})
"""The keys of a register map file read by name; any other key goes to `RegisterMap.extra`."""


def load_register_map_file(path: str | Path) -> RegisterMap:
    """Load and check one register map file; the `model` inside must equal the file's stem."""
    path = Path(path)
    src = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RegisterMapError(src, "(file)", src, f"not YAML: {exc}") from None
    model = path.stem
    if not isinstance(raw, dict):
        raise RegisterMapError(src, "(file)", type(raw).__name__, "must be a mapping")
    if raw.get("model") != model:
        raise RegisterMapError(src, "model", raw.get("model"), f"must equal the file name {model!r}")
    source = _field(src, "(file)", raw, "source", dict)
    for key in ("document", "edition"):
        _field(src, "source", source, key, str)
    defaults = _field(src, "(file)", raw, "defaults", dict, {})
    entries = _field(src, "(file)", raw, "registers", list)
    specs = [_register_spec(src, f"registers[{i}]", entry, defaults) for i, entry in enumerate(entries)]
    _check_names_unique(src, specs)
    _check_no_overlap(src, specs)
    return RegisterMap(
        model=model,
        title=_field(src, "(file)", raw, "title", str),
        kind=_field(src, "(file)", raw, "kind", str),
        source=source,
        registers=tuple(specs),
        path=path,
        max_gap=int(_field(src, "(file)", raw, "max_gap", int, 32)),
        extra={k: v for k, v in raw.items() if k not in _MAP_KEYS},
    )


def _one_of(src: str, where: str, key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RegisterMapError(src, f"{where}.{key}", value, f"must be {' or '.join(allowed)}")


def _register_spec(src: str, where: str, entry: Any, defaults: dict[str, Any]) -> RegisterSpec:
    """One entry of `registers:`, merged over `defaults:` and checked; the first problem raises."""
    if not isinstance(entry, dict):
        raise RegisterMapError(src, where, entry, "must be a mapping")
    merged = {**defaults, **entry}
    metric = _field(src, where, merged, "metric", str, None)
    name = _field(src, where, merged, "name", str, metric)
    if not name:
        raise RegisterMapError(src, f"{where}.name", None, "a register needs a metric or a name")
    rtype = _field(src, where, merged, "type", str)
    if rtype not in TYPES:
        raise RegisterMapError(src, f"{where}.type", rtype, f"unknown type (known: {sorted(TYPES)})")
    table = _field(src, where, merged, "table", str, "holding")
    _one_of(src, where, "table", table, ("holding", "input"))
    word_order = _field(src, where, merged, "word_order", str, "big")
    byte_order = _field(src, where, merged, "byte_order", str, "big")
    for key, val in (("word_order", word_order), ("byte_order", byte_order)):
        _one_of(src, where, key, val, ("big", "little"))
    address = _field(src, where, merged, "address", int)
    if not 0 <= address <= 0xFFFF:
        raise RegisterMapError(src, f"{where}.address", address, "must be 0..65535")
    scale = float(_field(src, where, merged, "scale", (int, float), 1.0))
    if scale == 0:
        raise RegisterMapError(src, f"{where}.scale", scale, "must not be 0")
    return RegisterSpec(
        name=name,
        metric=metric,
        address=address,
        type=rtype,
        table=table,
        word_order=word_order,
        byte_order=byte_order,
        scale=scale,
        offset=float(_field(src, where, merged, "offset", (int, float), 0.0)),
        unit=_field(src, where, merged, "unit", str, None),
        manual=_field(src, where, merged, "manual", (int, str), None),
        note=_field(src, where, merged, "note", str, None),
        value=_field(src, where, merged, "value", str, None),
        wrap=_field(src, where, merged, "wrap", bool, False),
    )


def _check_names_unique(src: str, specs: list[RegisterSpec]) -> None:
    names = [s.name for s in specs]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise RegisterMapError(src, f"registers[{i}].name", n, "duplicate name")


def _check_no_overlap(src: str, specs: list[RegisterSpec]) -> None:
    """No two registers of the same table share an address."""
    for table in ("holding", "input"):
        last: RegisterSpec | None = None
        for s in sorted((s for s in specs if s.table == table), key=lambda s: s.address):
            if last is not None and s.address < last.end:
                raise RegisterMapError(src, f"{s.name}.address", s.address, f"overlaps {last.name} ({table})")
            last = s
