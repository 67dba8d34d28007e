"""What a managed gateway remembers across restarts: `state.json` in its state folder.

Written atomically (temporary file, fsync, rename), so a power cut leaves the old or the new
state, never half of one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from gateway.managed._errors import ManagedStateError

__all__ = ["ManagedState", "PushState", "VersionRef", "load_state", "save_state"]

PushState = Literal["applied", "rejected", "rolled_back", "applying"]
_STATES = ("applied", "rejected", "rolled_back", "applying")
STATE_FILE = "state.json"


@dataclass(frozen=True, slots=True)
class VersionRef:
    """A pushed version kept in the state folder."""

    version: int
    sha256: str


@dataclass(slots=True)
class ManagedState:
    applied: VersionRef | None = None
    """The pushed version running now (None: the local file's own sources)."""
    last_good: VersionRef | None = None
    """The version that last passed its probation (None: the local file's own sources)."""
    probation: int | None = None
    """The applied version still on probation."""
    highest_seen: int = 0
    """The highest version handled (applied, rejected or rolled back); older or equal pushes are ignored."""
    desired_version: int | None = None
    state: PushState | None = None
    reason: str | None = None
    at: int | None = None

    def to_json(self) -> bytes:
        def ref(r: VersionRef | None) -> dict[str, Any] | None:
            return None if r is None else {"version": r.version, "sha256": r.sha256}

        return orjson.dumps(
            {
                "applied": ref(self.applied),
                "last_good": ref(self.last_good),
                "probation": self.probation,
                "highest_seen": self.highest_seen,
                "desired_version": self.desired_version,
                "state": self.state,
                "reason": self.reason,
                "at": self.at,
            },
            option=orjson.OPT_INDENT_2,
        )


def _ref(doc: dict[str, Any], key: str) -> VersionRef | None:
    v = doc.get(key)
    if v is None:
        return None
    if (
        not isinstance(v, dict)
        or not isinstance(v.get("version"), int)
        or isinstance(v.get("version"), bool)
        or not isinstance(v.get("sha256"), str)
    ):
        raise ValueError(f"{key}: must be {{version, sha256}} (got {v!r:.80})")
    return VersionRef(v["version"], v["sha256"])


def _opt_int(doc: dict[str, Any], key: str) -> int | None:
    v = doc.get(key)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
        raise ValueError(f"{key}: must be an integer or null (got {v!r:.80})")
    return v


def _parse(doc: object) -> ManagedState:
    if not isinstance(doc, dict):
        raise ValueError(f"(file): must be a JSON object (got {type(doc).__name__})")
    state = doc.get("state")
    if state is not None and state not in _STATES:
        raise ValueError(f"state: must be one of {', '.join(_STATES)} (got {state!r:.40})")
    reason = doc.get("reason")
    return ManagedState(
        applied=_ref(doc, "applied"),
        last_good=_ref(doc, "last_good"),
        probation=_opt_int(doc, "probation"),
        highest_seen=_opt_int(doc, "highest_seen") or 0,
        desired_version=_opt_int(doc, "desired_version"),
        state=state,
        reason=reason if isinstance(reason, str) else None,
        at=_opt_int(doc, "at"),
    )


def load_state(root: Path) -> ManagedState:
    """The saved state (a fresh one when there is none); ManagedStateError names the file and the field."""
    path = root / STATE_FILE
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return ManagedState()
    except OSError as exc:
        raise ManagedStateError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return _parse(orjson.loads(blob))
    except orjson.JSONDecodeError:
        raise ManagedStateError(f"{path}: not JSON (got {blob[:60]!r})") from None
    except ValueError as exc:
        raise ManagedStateError(f"{path}: {exc}") from None


def atomic_write(path: Path, blob: bytes) -> None:
    """Write `blob` to `path` so that a crash leaves the old content or the new one; readable by the
    owner only (a pushed config may hold device credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb", opener=lambda p, flags: os.open(p, flags, 0o600)) as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # the rename itself reaches the disk
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def save_state(root: Path, state: ManagedState) -> None:
    try:
        atomic_write(root / STATE_FILE, state.to_json())
    except OSError as exc:
        raise ManagedStateError(f"{root / STATE_FILE}: cannot write: {exc.strerror}") from None
