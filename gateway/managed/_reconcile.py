"""Which running sources a new configuration keeps, which it updates, stops and starts.

A source is kept when the new configuration builds one equal to it: the same kind and name
(a Modbus or DL/T 645 link, an OPC UA server, an MQTT broker connection, the HJ 212 listener)
and equal configuration (the link's bus, every device's plan with its profile registers, the
server or listener settings). A polling source (`PerDeviceSource`: Modbus, DL/T 645) whose link
is built the same but whose devices differ is updated in place, device by device: a device whose
plan is equal keeps polling, the others start or stop (`PlanUpdate`). A source of a kind not
known here is always rebuilt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import types
from dataclasses import dataclass, field

from pydantic import BaseModel

from gateway.sources import Source
from gateway.sources._schedule import PerDeviceSource

__all__ = ["PlanUpdate", "Reconciliation", "fingerprint", "reconcile"]

_CONFIG_ATTRS = ("plans", "server", "src", "cfg", "dead_letters", "reply")
"""Attributes in which the source kinds of gateway/sources keep what they were built from."""


_MAX_DEPTH = 12


class _Opaque:
    """Stands for an object of no known structure: equal only to itself, so its source is rebuilt."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def _key(obj: object, depth: int = 0) -> object:
    """A value equal for two objects built from the same configuration: plans hold decoding functions
    made per build (closures), so a function compares by its code and the values it closes over."""
    if depth > _MAX_DEPTH:
        return _Opaque(obj)
    d = depth + 1
    if obj is None or isinstance(obj, str | int | float | bool | bytes | BaseModel):
        return obj
    if isinstance(obj, list | tuple):
        return (type(obj).__name__, tuple(_key(x, d) for x in obj))
    if isinstance(obj, set | frozenset):
        return ("set", frozenset(_key(x, d) for x in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((_key(k, d), _key(v, d)) for k, v in obj.items()))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [f for f in dataclasses.fields(obj) if f.compare]  # compare=False: state, not configuration
        return (type(obj).__qualname__, tuple(_key(getattr(obj, f.name), d) for f in fields))
    if isinstance(obj, types.FunctionType):
        cells = tuple(_key(c.cell_contents, d) for c in obj.__closure__ or ())
        return ("fn", obj.__code__, cells, _key(obj.__defaults__, d))
    if isinstance(obj, struct.Struct):
        return ("struct", obj.format)
    if hasattr(obj, "__fspath__") or type(obj).__eq__ is not object.__eq__:
        return obj
    return _Opaque(obj)


def fingerprint(src: Source, *, devices: bool = True) -> tuple[object, ...] | None:
    """What the source was built from (compared with ==); None when nothing is known about it.
    With `devices=False`, what a polling source's link was built from (its device plans left out)."""
    attrs = _CONFIG_ATTRS if devices else tuple(a for a in _CONFIG_ATTRS if a != "plans")
    parts: list[object] = [(a, _key(getattr(src, a))) for a in attrs if hasattr(src, a)]
    link = getattr(src, "link", None)
    if link is not None:
        parts.append(("link", getattr(link, "key", None), _key(getattr(link, "bus", None))))
    if not parts:
        return None
    return (type(src).__module__, type(src).__qualname__, src.name, *parts)


@dataclass(slots=True)
class PlanUpdate:
    """A running polling source that takes the device plans of `built` (same link, other devices)."""

    running: PerDeviceSource
    built: PerDeviceSource
    same: frozenset[str]
    """The devices whose plan is equal in both: they keep their task, stats and counters."""

    def apply(self) -> list[asyncio.Task[None]]:
        """Hand the new plans to the running source; the tasks of the devices it retires."""
        return self.running.adopt(self.built, self.same)


@dataclass(slots=True)
class Reconciliation:
    sources: list[Source] = field(default_factory=list)
    """The sources of the new configuration, in its order: kept and updated ones are the running objects."""
    keep: list[Source] = field(default_factory=list)
    update: list[PlanUpdate] = field(default_factory=list)
    start: list[Source] = field(default_factory=list)
    stop: list[Source] = field(default_factory=list)


_Pool = list[tuple[tuple[object, ...] | None, Source]]
"""Running sources not matched yet, with their fingerprints."""


def _same_devices(running: PerDeviceSource, built: PerDeviceSource) -> frozenset[str]:
    old = running.device_plans()
    return frozenset(
        dev for dev, plan in built.device_plans().items() if dev in old and _key(old[dev]) == _key(plan)
    )


def _take(pool: _Pool, fp: object) -> Source | None:
    """The first source of `pool` whose fingerprint is `fp`, removed from the pool."""
    if fp is None:
        return None
    for i, (old_fp, old) in enumerate(pool):
        if old_fp == fp:
            del pool[i]
            return old
    return None


def _update(links: _Pool, new: Source) -> PlanUpdate | None:
    """A running source on the same link as `new` taking its devices, when `new` polls per device."""
    if not isinstance(new, PerDeviceSource):
        return None
    old = _take(links, fingerprint(new, devices=False))
    if not isinstance(old, PerDeviceSource):
        return None
    return PlanUpdate(old, new, _same_devices(old, new))


def reconcile(running: list[Source], built: list[Source]) -> Reconciliation:
    out = Reconciliation()
    pool: _Pool = [(fingerprint(s), s) for s in running]
    matched = [_take(pool, fingerprint(new)) for new in built]  # equal sources first
    links: _Pool = [(fingerprint(s, devices=False), s) for _, s in pool if isinstance(s, PerDeviceSource)]
    for new, old in zip(built, matched, strict=True):
        if old is not None:
            out.keep.append(old)
            out.sources.append(old)
        elif (upd := _update(links, new)) is not None:
            out.update.append(upd)
            out.sources.append(upd.running)
        else:
            out.start.append(new)
            out.sources.append(new)
    updated = {id(u.running) for u in out.update}
    out.stop = [s for _, s in pool if id(s) not in updated]
    return out
