"""The receiver's dead letters: packets it refused, with the reason, in a bounded JSONL file.

One line per refused packet (time, reason, peer, MN when known, the packet with its password
masked, at most `RAW_MAX` bytes of it). When the file passes its size bound it becomes `<file>.1`
(the previous `.1` is dropped), so the store never holds more than twice the bound.
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.sources.hj212._packet import mask_password

__all__ = ["RAW_MAX", "DeadLetters"]

log = logging.getLogger("parkpulse.gateway.hj212")
RAW_MAX = 2048


class DeadLetters:
    def __init__(self, path: Path | None, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.by_reason: collections.Counter[str] = collections.Counter()
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.write_errors = 0
        self._size = path.stat().st_size if path is not None and path.exists() else 0

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def add(self, kind: str, reason: str, raw: bytes, *, peer: str = "", mn: str | None = None) -> None:
        """Record one refused packet; `kind` is the counter (crc, malformed, unknown_mn, …)."""
        self.by_reason[kind] += 1
        shown = mask_password(raw[:RAW_MAX]).decode("latin-1")
        entry = {
            "at_ms": int(time.time() * 1000),
            "kind": kind,
            "reason": reason,
            "peer": peer,
            "mn": mn,
            "bytes": len(raw),
            "raw": shown,
        }
        self.recent.append(entry)
        if self.path is None:
            return
        line = orjson.dumps(entry) + b"\n"
        try:
            if self._size + len(line) > self.max_bytes and self._size > 0:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                self._size = 0
            with self.path.open("ab") as fh:
                fh.write(line)
            self._size += len(line)
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 100 == 0:
                log.error("hj212 dead letters: cannot write %s: %s", self.path, exc.strerror)

    def summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_kind": dict(self.by_reason),
            "path": str(self.path) if self.path else None,
            "write_errors": self.write_errors,
            "recent": list(self.recent)[-5:],
        }
