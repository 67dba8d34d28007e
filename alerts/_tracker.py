"""Per (rule, subject) condition state with hysteresis: decides fire / refresh / clear.

An observation says the condition is BREACH (beyond the limit), CLEAR (back past the clear
level) or HOLD (in the hysteresis band between the two: neither fires nor clears). A firing
needs the breach to last `fire_for_s`; an automatic resolve needs the clear to last
`clear_for_s`. Observations older than the last one seen for a subject are ignored, so replayed
or out-of-order data cannot flip a state back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Action", "Obs", "SubjectState", "Tracker"]


class Obs(enum.Enum):
    BREACH = "breach"
    CLEAR = "clear"
    HOLD = "hold"


class Action(enum.Enum):
    FIRE = "fire"
    REFRESH = "refresh"
    CLEAR = "clear"


@dataclass
class SubjectState:
    alert_id: int | None = None
    breach_since: float | None = None
    clear_since: float | None = None
    last_obs: float | None = None
    suppressed: bool = False  # resolved by a person while the condition still held


Key = tuple[str, str]


class Tracker:
    def __init__(self) -> None:
        self._s: dict[Key, SubjectState] = {}
        # open alerts whose clear timer started or stopped: alert_id → clear_since (to persist)
        self.clear_marks: dict[int, float | None] = {}

    def _set_clear(self, st: SubjectState, value: float | None) -> None:
        if st.clear_since != value and st.alert_id is not None:
            self.clear_marks[st.alert_id] = value
        st.clear_since = value

    def take_clear_marks(self) -> dict[int, float | None]:
        marks, self.clear_marks = self.clear_marks, {}
        return marks

    def state(self, key: Key) -> SubjectState:
        st = self._s.get(key)
        if st is None:
            st = self._s[key] = SubjectState()
        return st

    def get(self, key: Key) -> SubjectState | None:
        return self._s.get(key)

    def open_keys(self) -> list[Key]:
        return [k for k, s in self._s.items() if s.alert_id is not None]

    def observe(
        self, key: Key, obs: Obs, t: float, *, fire_for_s: float = 0.0, clear_for_s: float = 0.0
    ) -> Action | None:
        st = self.state(key)
        if st.last_obs is not None and t < st.last_obs:
            return None
        st.last_obs = t
        if obs is Obs.BREACH:
            self._set_clear(st, None)
            if st.alert_id is not None:
                return Action.REFRESH
            if st.suppressed:
                return None
            if st.breach_since is None:
                st.breach_since = t
            return Action.FIRE if t - st.breach_since >= fire_for_s else None
        if obs is Obs.CLEAR:
            st.breach_since = None
            st.suppressed = False
            if st.alert_id is None:
                return None
            since = st.clear_since
            if since is None:
                self._set_clear(st, t)
                since = t
            return Action.CLEAR if t - since >= clear_for_s else None
        # HOLD: inside the hysteresis band
        st.breach_since = None
        self._set_clear(st, None)
        return None

    def due_clear(self, key: Key, now: float, clear_for_s: float) -> bool:
        """True when an open alert's clear has lasted `clear_for_s` by wall time (no new data needed)."""
        st = self._s.get(key)
        return bool(
            st
            and st.alert_id is not None
            and st.clear_since is not None
            and now - st.clear_since >= clear_for_s
        )

    def fired(self, key: Key, alert_id: int) -> None:
        st = self.state(key)
        st.alert_id = alert_id
        st.breach_since = None
        st.clear_since = None

    def cleared(self, key: Key) -> None:
        st = self.state(key)
        st.alert_id = None
        st.clear_since = None
        st.breach_since = None

    def resolved_elsewhere(self, key: Key, alert_id: int, manual: bool) -> None:
        """An alert was resolved outside this engine (console): forget it; suppress until clear if manual."""
        st = self._s.get(key)
        if st is None or st.alert_id != alert_id:
            return
        st.alert_id = None
        st.clear_since = None
        st.breach_since = None
        st.suppressed = manual

    def restore(
        self, key: Key, alert_id: int, last_obs: float | None, clear_since: float | None = None
    ) -> None:
        st = self.state(key)
        st.alert_id = alert_id
        st.last_obs = last_obs
        st.clear_since = clear_since
