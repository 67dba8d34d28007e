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
            for rule in self._by_metric[metric]:
                o = self._eval_reading(
                    rule, park, firm, gateway, dev, metric, ts_ms, value, quality, event, info
                )
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

    def _eval_reading(
        self,
        rule: Rule,
        park: str,
        firm: str,
        gw: str,
        dev: str,
        metric: str,
        ts_ms: int,
        value: float | None,
        quality: int,
        event: dict[str, Any] | None,
        info: DeviceInfo | None,
    ) -> Outcome | None:
        p = rule.params
        t = ts_ms / 1000.0
        subject = f"{gw}/{dev}/{metric}"
        key = (rule.id, subject)
        if isinstance(p, ThresholdParams):
            if (
                value is None
                or quality >= p.exclude_quality_from
                or not _matches(rule, p, park, gw, dev, info)
            ):
                return None
            clear = p.clear_level if p.clear_level is not None else p.limit
            if p.op == "above":
                obs = Obs.BREACH if value > p.limit else Obs.CLEAR if value <= clear else Obs.HOLD
                op = ("高于", "above")
            else:
                obs = Obs.BREACH if value < p.limit else Obs.CLEAR if value >= clear else Obs.HOLD
                op = ("低于", "below")
            act = self.tracker.observe(key, obs, t, fire_for_s=p.fire_for_s, clear_for_s=p.clear_for_s)
            ev: dict[str, Any] = {
                "reading": {"ts_ms": ts_ms, "value": value, "quality": quality},
                "limit": p.limit,
                "clear_level": clear,
                "op": p.op,
                "clear_for_s": p.clear_for_s,
            }
            return self._outcome(
                act,
                rule,
                park,
                firm,
                gw,
                dev,
                metric,
                value,
                p.limit,
                t,
                ev,
                extra={"op_zh": op[0], "op_en": op[1]},
            )
        if isinstance(p, RateParams):
            if (
                value is None
                or quality >= p.exclude_quality_from
                or not _matches(rule, p, park, gw, dev, info)
            ):
                return None
            # The change over at least one window: compare with the newest sample that is at least
            # per_s old. Scaling the step between two close samples (5 s apart) up to per_s would
            # turn ordinary noise into a "step" (±4 V in 5 s reads as 96 V/min).
            pk = (rule.id, gw, dev, metric)
            hist = self._window.setdefault(pk, deque())
            if hist and ts_ms <= hist[-1][0]:
                return None
            hist.append((ts_ms, value))
            horizon = ts_ms - int(p.per_s * 1000)
            while len(hist) > 2 and hist[1][0] <= horizon:
                hist.popleft()  # keep one sample at or before the horizon, and everything after it
            ref = hist[0]
            if len(hist) < 2 or ref[0] > horizon:
                return None  # less than one window of history yet
            dt = (ts_ms - ref[0]) / 1000.0
            if dt > p.max_gap_s:
                return None
            rate = abs(value - ref[1]) / dt * p.per_s
            clear = p.clear_level if p.clear_level is not None else p.limit
            obs = Obs.BREACH if rate > p.limit else Obs.CLEAR if rate <= clear else Obs.HOLD
            act = self.tracker.observe(key, obs, t, fire_for_s=p.fire_for_s, clear_for_s=p.clear_for_s)
            ev = {
                "prev": {"ts_ms": ref[0], "value": ref[1]},
                "reading": {"ts_ms": ts_ms, "value": value},
                "elapsed_s": dt,
                "rate": rate,
                "per_s": p.per_s,
                "limit": p.limit,
                "clear_level": clear,
            }
            return self._outcome(
                act,
                rule,
                park,
                firm,
                gw,
                dev,
                metric,
                round(rate, 6),
                p.limit,
                t,
                ev,
                extra={"per_s": p.per_s},
            )
        if isinstance(p, TamperParams):
            if value is None or quality >= 4 or not rule.applies_to_park(park):
                return None
            pk = (rule.id, gw, dev, metric)
            prev = self._prev.get(pk)
            if prev is not None and ts_ms <= prev[0]:
                return None
            self._prev[pk] = (ts_ms, value)
            if prev is None:
                return None
            delta = value - prev[1]
            dt = (ts_ms - prev[0]) / 1000.0
            ev = {
                "prev": {"ts_ms": prev[0], "value": prev[1]},
                "reading": {"ts_ms": ts_ms, "value": value},
                "delta": delta,
                "elapsed_s": dt,
            }
            max_step: float | None = None
            if event is not None:
                ev["event"] = (
                    event  # a step the gateway flagged (reset, rollover, replaced, jump) is explained
                )
                obs = Obs.CLEAR
                reason = None
            elif delta < -p.backward_tolerance:
                obs, reason = (
                    Obs.BREACH,
                    ("计数倒退且无事件标记", "counter went backwards without a flagged event"),
                )
                ev["check"] = "backwards"
                ev["tolerance"] = p.backward_tolerance
            else:
                obs, reason = Obs.CLEAR, None
                rated = info.rated_power_kw if info else None
                if rated and dt >= p.min_elapsed_s:
                    max_step = rated * dt / 3600.0 * p.power_factor_margin
                    ev.update(rated_power_kw=rated, margin=p.power_factor_margin, max_possible=max_step)
                    if delta > max_step:
                        obs, reason = (
                            Obs.BREACH,
                            (
                                f"跳变 {delta:g} 超过物理可能 {max_step:.3g}",
                                f"jump of {delta:g} beyond physical possibility {max_step:.3g}",
                            ),
                        )
                        ev["check"] = "jump"
            act = self.tracker.observe(key, obs, t, clear_for_s=p.clear_for_s)
            extra = {"reason_zh": reason[0], "reason_en": reason[1]} if reason else {}
            if act is Action.REFRESH and reason is None:
                return None
            return self._outcome(act, rule, park, firm, gw, dev, metric, delta, max_step, t, ev, extra=extra)
        return None

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
