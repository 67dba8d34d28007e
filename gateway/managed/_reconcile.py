"""Which running sources a new configuration keeps, which it stops and which it starts.

A source is kept when the new configuration builds one equal to it: the same kind and name
(a Modbus or DL/T 645 link, an OPC UA server, an MQTT broker connection, the HJ 212 listener)
and equal configuration (the link's bus, every device's plan with its profile registers, the
server or listener settings). A source of a kind not known here is always rebuilt.
"""

from __future__ import annotations

import dataclasses
import struct
import types
from dataclasses import dataclass, field

from pydantic import BaseModel

from gateway.sources import Source

__all__ = ["Reconciliation", "fingerprint", "reconcile"]

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
        return (type(obj).__qualname__, tuple(_key(getattr(obj, f.name), d) for f in dataclasses.fields(obj)))
    if isinstance(obj, types.FunctionType):
        cells = tuple(_key(c.cell_contents, d) for c in obj.__closure__ or ())
        return ("fn", obj.__code__, cells, _key(obj.__defaults__, d))
    if isinstance(obj, struct.Struct):
        return ("struct", obj.format)
    if hasattr(obj, "__fspath__") or type(obj).__eq__ is not object.__eq__:
        return obj
    return _Opaque(obj)


def fingerprint(src: Source) -> tuple[object, ...] | None:
    """What the source was built from (compared with ==); None when nothing is known about it."""
    parts: list[object] = [(a, _key(getattr(src, a))) for a in _CONFIG_ATTRS if hasattr(src, a)]
    link = getattr(src, "link", None)
    if link is not None:
        parts.append(("link", getattr(link, "key", None), _key(getattr(link, "bus", None))))
    if not parts:
        return None
    return (type(src).__module__, type(src).__qualname__, src.name, *parts)


@dataclass(slots=True)
class Reconciliation:
    sources: list[Source] = field(default_factory=list)
    """The sources of the new configuration, in its order: kept ones are the running objects."""
    keep: list[Source] = field(default_factory=list)
    start: list[Source] = field(default_factory=list)
    stop: list[Source] = field(default_factory=list)


def reconcile(running: list[Source], built: list[Source]) -> Reconciliation:
    out = Reconciliation()
    pool = [(fingerprint(s), s) for s in running]
    for new in built:
        fp = fingerprint(new)
        match = None
        if fp is not None:
            for i, (old_fp, old) in enumerate(pool):
                if old_fp == fp:
                    match = old
                    del pool[i]
                    break
        if match is not None:
            out.keep.append(match)
            out.sources.append(match)
        else:
            out.start.append(new)
            out.sources.append(new)
    out.stop = [s for _, s in pool]
    return out
