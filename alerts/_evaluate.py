"""Evaluation of the rules that run on the live stream (threshold, rate of change, tamper,
gateway last-will, spool gaps). Pure: readings in, tracker decisions (Outcome) out; the engine
writes them to the database."""

from __future__ import annotations

import string
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from alerts._registry import DeviceInfo, DeviceRegistry
from alerts._ruleset import GapParams, RateParams, Rule, RuleSet, TamperParams, ThresholdParams
from alerts._tracker import Action, Obs, Tracker
from parkpulse.catalogue import load_catalogue

__all__ = ["Outcome", "StreamEvaluator", "render_message"]

Reading = tuple[str, str, int, float | None, int, dict[str, Any] | None]


@dataclass
class Outcome:
    action: Action
    rule: Rule
    subject: str
    park_id: str
    firm_id: str | None
    gateway_id: str | None
    device_id: str | None
    metric: str | None
    value: float | None
    limit: float | None
    unit: str | None
    observed_at: float  # epoch seconds (data time)
    evidence: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # message placeholders

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.id, self.subject)


class _Fmt(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        return kwargs.get(key, "?") if isinstance(key, str) else "?"

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            text: str = super().format_field(value, format_spec)
            return text
        except (ValueError, TypeError):
            return str(value)


_FMT = _Fmt()


def render_message(o: Outcome) -> tuple[str, str]:
    cat = load_catalogue().by_name()
    m = cat.get(o.metric or "")
    ctx: dict[str, Any] = {
        "device": f"{o.gateway_id}/{o.device_id}" if o.device_id else (o.gateway_id or o.subject),
        "gateway": o.gateway_id or "",
        "park": o.park_id,
        "firm": o.firm_id or "",
        "metric": o.metric or "",
        "metric_zh": m.zh if m else (o.metric or ""),
        "metric_en": m.en if m else (o.metric or ""),
        "value": o.value if o.value is not None else float("nan"),
        "limit": o.limit if o.limit is not None else float("nan"),
        "unit": o.unit or "",
    }
    ctx.update(o.extra)
    return _FMT.format(o.rule.message_zh, **ctx), _FMT.format(o.rule.message_en, **ctx)


@dataclass(slots=True)
class _Seen:
    """One reading with a value, and where it comes from, as the stream rules see it."""

    park: str
    firm: str
    gw: str
    dev: str
    metric: str
    ts_ms: int
    value: float
    quality: int
    event: dict[str, Any] | None
    info: DeviceInfo | None
    t: float  # ts_ms in epoch seconds
    subject: str  # gateway/device/metric: with the rule's id, the tracker's key

    def key(self, rule: Rule) -> tuple[str, str]:
        return (rule.id, self.subject)


def _tamper_verdict(
    p: TamperParams, r: _Seen, delta: float, dt: float, ev: dict[str, Any]
) -> tuple[Obs, tuple[str, str] | None, float | None]:
    """(observation, reason zh/en or None, largest possible step or None) for a counter's step;
    adds what the verdict rests on to `ev`."""
    if r.event is not None:
        ev["event"] = r.event  # a step the gateway flagged (reset, rollover, replaced, jump) is explained
        return Obs.CLEAR, None, None
    if delta < -p.backward_tolerance:
        ev["check"] = "backwards"
        ev["tolerance"] = p.backward_tolerance
        return Obs.BREACH, ("计数倒退且无事件标记", "counter went backwards without a flagged event"), None
    rated = r.info.rated_power_kw if r.info else None
    if not (rated and dt >= p.min_elapsed_s):
        return Obs.CLEAR, None, None
    max_step = rated * dt / 3600.0 * p.power_factor_margin
    ev.update(rated_power_kw=rated, margin=p.power_factor_margin, max_possible=max_step)
    if not delta > max_step:
        return Obs.CLEAR, None, max_step
    ev["check"] = "jump"
    reason = (
        f"跳变 {delta:g} 超过物理可能 {max_step:.3g}",
        f"jump of {delta:g} beyond physical possibility {max_step:.3g}",
    )
    return Obs.BREACH, reason, max_step


def _matches(
    rule: Rule, p: ThresholdParams | RateParams, park: str, gw: str, dev: str, info: DeviceInfo | None
) -> bool:
    if not rule.applies_to_park(park):
        return False
    if p.devices is not None and f"{gw}/{dev}" not in p.devices:
        return False
    return not (p.device_kinds is not None and (info is None or info.kind not in p.device_kinds))


class StreamEvaluator:
    def __init__(self, rules: RuleSet, tracker: Tracker, registry: DeviceRegistry) -> None:
        self.rules = rules
        self.tracker = tracker
        self.registry = registry
        self._cat = load_catalogue().by_name()
        self._by_metric: dict[str, list[Rule]] = {}
        for r in rules.rules:
            if r.kind in ("threshold", "rate_of_change"):
                self._by_metric.setdefault(r.params.metric, []).append(r)
            elif r.kind == "tamper":
                for m in r.params.metrics:
                    self._by_metric.setdefault(m, []).append(r)
        self._prev: dict[tuple[str, str, str, str], tuple[int, float]] = {}
        self._window: dict[tuple[str, str, str, str], deque[tuple[int, float]]] = {}
        self._offline = rules.gap_rules("gateway_offline")
        self._spool = rules.gap_rules("spool_gap")

    @property
    def metrics(self) -> set[str]:
        return set(self._by_metric)

    def unknown_devices(self, gateway: str, readings: list[Reading]) -> bool:
        return any(self.registry.get(gateway, r[0]) is None for r in readings if r[1] in self._by_metric)

    # -- data batches ------------------------------------------------------------------------
    def on_batch(
        self,
        park: str,
        firm: str,
        gateway: str,
        readings: list[Reading],
        gaps: list[dict[str, Any]],
        sent_at_ms: int,
    ) -> list[Outcome]:
        out: list[Outcome] = []
        relevant = sorted((r for r in readings if r[1] in self._by_metric), key=lambda r: r[2])
        for dev, metric, ts_ms, value, quality, event in relevant:
            info = self.registry.get(gateway, dev)
            if value is None:
                continue  # no rule judges a reading without a value
            seen = _Seen(
                park,
                firm,
                gateway,
                dev,
                metric,
                ts_ms,
                value,
                quality,
                event,
                info,
                ts_ms / 1000.0,
                f"{gateway}/{dev}/{metric}",
            )
            for rule in self._by_metric[metric]:
                o = self._eval_reading(rule, seen)
                if o is not None:
                    out.append(o)
        for rule in self._spool:
            if not rule.applies_to_park(park):
                continue
            o = self._spool_gap(rule, park, firm, gateway, gaps, sent_at_ms)
            if o is not None:
                out.append(o)
        return out

    def _outcome(
        self,
        action: Action | None,
        rule: Rule,
        park: str,
        firm: str | None,
        gw: str,
        dev: str | None,
        metric: str | None,
        value: float | None,
        limit: float | None,
        t: float,
        evidence: dict[str, Any],
        subject: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome | None:
        if action is None:
            return None
        m = self._cat.get(metric or "")
        subj = subject or "/".join(x for x in (gw, dev, metric) if x)
        return Outcome(
            action,
            rule,
            subj,
            park,
            firm,
            gw,
            dev,
            metric,
            value,
            limit,
            m.unit if m else None,
            t,
            evidence,
            extra or {},
        )

    def _eval_reading(self, rule: Rule, r: _Seen) -> Outcome | None:
        """What one rule decides about one reading (threshold, rate of change or tamper)."""
        p = rule.params
        if isinstance(p, ThresholdParams):
            return self._eval_threshold(rule, p, r)
        if isinstance(p, RateParams):
            return self._eval_rate(rule, p, r)
        if isinstance(p, TamperParams):
            return self._eval_tamper(rule, p, r)
        return None

    def _reading_outcome(
        self,
        action: Action | None,
        rule: Rule,
        r: _Seen,
        value: float | None,
        limit: float | None,
        evidence: dict[str, Any],
        extra: dict[str, Any],
    ) -> Outcome | None:
        return self._outcome(
            action, rule, r.park, r.firm, r.gw, r.dev, r.metric, value, limit, r.t, evidence, extra=extra
        )

    def _eval_threshold(self, rule: Rule, p: ThresholdParams, r: _Seen) -> Outcome | None:
        if r.quality >= p.exclude_quality_from or not _matches(rule, p, r.park, r.gw, r.dev, r.info):
            return None
        value = r.value
        clear = p.clear_level if p.clear_level is not None else p.limit
        if p.op == "above":
            obs = Obs.BREACH if value > p.limit else Obs.CLEAR if value <= clear else Obs.HOLD
            op = ("高于", "above")
        else:
            obs = Obs.BREACH if value < p.limit else Obs.CLEAR if value >= clear else Obs.HOLD
            op = ("低于", "below")
        act = self.tracker.observe(r.key(rule), obs, r.t, fire_for_s=p.fire_for_s, clear_for_s=p.clear_for_s)
        if act is None:
            return None  # nothing to record: no evidence to build
        ev: dict[str, Any] = {
            "reading": {"ts_ms": r.ts_ms, "value": value, "quality": r.quality},
            "limit": p.limit,
            "clear_level": clear,
            "op": p.op,
            "clear_for_s": p.clear_for_s,
        }
        return self._reading_outcome(act, rule, r, value, p.limit, ev, {"op_zh": op[0], "op_en": op[1]})

    def _rate_reference(self, rule: Rule, p: RateParams, r: _Seen) -> tuple[int, float] | None:
        """The sample to measure this reading's change against, or None when there is none yet.

        The change over at least one window: compare with the newest sample that is at least per_s
        old. Scaling the step between two close samples (5 s apart) up to per_s would turn ordinary
        noise into a "step" (±4 V in 5 s reads as 96 V/min).
        """
        hist = self._window.setdefault((rule.id, r.gw, r.dev, r.metric), deque())
        if hist and r.ts_ms <= hist[-1][0]:
            return None
        hist.append((r.ts_ms, r.value))
        horizon = r.ts_ms - int(p.per_s * 1000)
        while len(hist) > 2 and hist[1][0] <= horizon:
            hist.popleft()  # keep one sample at or before the horizon, and everything after it
        ref = hist[0]
        if len(hist) < 2 or ref[0] > horizon:
            return None  # less than one window of history yet
        return ref

    def _eval_rate(self, rule: Rule, p: RateParams, r: _Seen) -> Outcome | None:
        if r.quality >= p.exclude_quality_from or not _matches(rule, p, r.park, r.gw, r.dev, r.info):
            return None
        ref = self._rate_reference(rule, p, r)
        if ref is None:
            return None
        dt = (r.ts_ms - ref[0]) / 1000.0
        if dt > p.max_gap_s:
            return None
        rate = abs(r.value - ref[1]) / dt * p.per_s
        clear = p.clear_level if p.clear_level is not None else p.limit
        obs = Obs.BREACH if rate > p.limit else Obs.CLEAR if rate <= clear else Obs.HOLD
        act = self.tracker.observe(r.key(rule), obs, r.t, fire_for_s=p.fire_for_s, clear_for_s=p.clear_for_s)
        if act is None:
            return None  # nothing to record: no evidence to build
        ev = {
            "prev": {"ts_ms": ref[0], "value": ref[1]},
            "reading": {"ts_ms": r.ts_ms, "value": r.value},
            "elapsed_s": dt,
            "rate": rate,
            "per_s": p.per_s,
            "limit": p.limit,
            "clear_level": clear,
        }
        return self._reading_outcome(act, rule, r, round(rate, 6), p.limit, ev, {"per_s": p.per_s})

    def _eval_tamper(self, rule: Rule, p: TamperParams, r: _Seen) -> Outcome | None:
        if r.quality >= 4 or not rule.applies_to_park(r.park):
            return None
        pk = (rule.id, r.gw, r.dev, r.metric)
        prev = self._prev.get(pk)
        if prev is not None and r.ts_ms <= prev[0]:
            return None
        self._prev[pk] = (r.ts_ms, r.value)
        if prev is None:
            return None
        delta = r.value - prev[1]
        dt = (r.ts_ms - prev[0]) / 1000.0
        ev: dict[str, Any] = {
            "prev": {"ts_ms": prev[0], "value": prev[1]},
            "reading": {"ts_ms": r.ts_ms, "value": r.value},
            "delta": delta,
            "elapsed_s": dt,
        }
        obs, reason, max_step = _tamper_verdict(p, r, delta, dt, ev)
        act = self.tracker.observe(r.key(rule), obs, r.t, clear_for_s=p.clear_for_s)
        if act is None or (act is Action.REFRESH and reason is None):
            return None
        extra = {"reason_zh": reason[0], "reason_en": reason[1]} if reason else {}
        return self._reading_outcome(act, rule, r, delta, max_step, ev, extra)

    # -- gateway status and gaps ----------------------------------------------------------------
    def _spool_gap(
        self, rule: Rule, park: str, firm: str, gw: str, gaps: list[dict[str, Any]], sent_at_ms: int
    ) -> Outcome | None:
        p: GapParams = rule.params
        key = (rule.id, gw)
        t = sent_at_ms / 1000.0
        if gaps:
            count = float(sum(int(g.get("count") or 0) for g in gaps if isinstance(g, dict)))
            act = self.tracker.observe(key, Obs.BREACH, t)
            return self._outcome(
                act,
                rule,
                park,
                firm,
                gw,
                None,
                None,
                count,
                None,
                t,
                {"gaps": gaps[:50], "n_gaps": len(gaps)},
                subject=gw,
            )
        act = self.tracker.observe(key, Obs.CLEAR, t, clear_for_s=p.clear_for_s)
        return self._outcome(act, rule, park, firm, gw, None, None, 0.0, None, t, {}, subject=gw)

    def on_status(self, park: str, firm: str, gw: str, doc: dict[str, Any], now: float) -> list[Outcome]:
        out: list[Outcome] = []
        state = doc.get("state")
        if state not in ("online", "offline"):
            return out
        for rule in self._offline:
            if not rule.applies_to_park(park):
                continue
            p: GapParams = rule.params
            obs = Obs.BREACH if state == "offline" else Obs.CLEAR
            act = self.tracker.observe((rule.id, gw), obs, now, clear_for_s=p.clear_for_s)
            if act is Action.REFRESH:
                continue
            ev = {
                "status": {k: doc.get(k) for k in ("state", "ts", "version", "spool_depth", "last_seq")},
                "source": "mqtt status topic (retained birth / last-will)",
            }
            o = self._outcome(
                act,
                rule,
                park,
                firm,
                gw,
                None,
                None,
                1.0 if state == "offline" else 0.0,
                None,
                now,
                ev,
                subject=gw,
            )
            if o is not None:
                out.append(o)
        return out
