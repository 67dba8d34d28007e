"""Rules evaluated from the database on a timer: device silence, batch sequence gaps, gateway
reported gaps, and hourly emission averages (HJ 75/76)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from alerts._emission import HourResult, evaluate_hour
from alerts._evaluate import Outcome
from alerts._hj212 import device_excluded_flags
from alerts._ruleset import EmissionParams, GapParams, LimitChoice, Rule, RuleSet, Stack
from alerts._tracker import Action, Obs, Tracker
from parkpulse.catalogue import load_catalogue

__all__ = ["PeriodicEvaluator"]

log = logging.getLogger("parkpulse.alerts")

# devices that have reported, with their last reading and poll interval
_SILENT_SQL = (
    "SELECT park_id, firm_id, gateway_id, device_id, poll_interval_s, "
    "extract(epoch FROM last_ts), extract(epoch FROM received_at), enabled FROM v_device_last_seen "
    "WHERE last_ts IS NOT NULL"
)
# per gateway: its open batch sequence gaps
_SEQ_GAP_SQL = (
    "SELECT s.park_id, s.firm_id, s.gateway_id, count(*)::int, sum(g.count)::int, "
    "min(g.from_seq), max(g.to_seq) "
    "FROM v_data_gaps g JOIN v_gateway_status s USING (gateway_id) "
    "WHERE g.kind = 'seq' AND g.filled_at IS NULL GROUP BY 1, 2, 3"
)
# gateway states as ingest stored them from the status topic
_GATEWAY_STATE_SQL = (
    "SELECT park_id, firm_id, gateway_id, state, extract(epoch FROM since), version, spool_depth, last_seq "
    "FROM v_gateway_status WHERE state IS NOT NULL"
)
# per gateway: the gaps it reported within the rule's window (seconds)
_REPORTED_GAP_SQL = (
    "SELECT s.park_id, s.firm_id, g.gateway_id, sum(g.count)::int, count(*)::int, "
    "extract(epoch FROM max(g.reported_at)) "
    "FROM v_data_gaps g JOIN v_gateway_status s USING (gateway_id) "
    "WHERE g.kind = 'data' AND g.reported_at > now() - make_interval(secs => %s) GROUP BY 1, 2, 3"
)


class PeriodicEvaluator:
    def __init__(self, rules: RuleSet, tracker: Tracker, park: str = "+") -> None:
        self.rules = rules
        self.tracker = tracker
        self.park = park  # the park this engine watches, "+" for all
        self._cat = load_catalogue().by_name()
        self._warned: set[int] = set()

    def _ok(self, rule: Rule, park: str) -> bool:
        return (self.park == "+" or park == self.park) and rule.applies_to_park(park)

    async def _gap_rows(
        self,
        conn: psycopg.AsyncConnection,
        check: str,
        sql: str,
        args: Callable[[GapParams], tuple[float, ...]] | None = None,
    ) -> list[tuple[Rule, GapParams, list[tuple[Any, ...]]]]:
        """The skeleton of every gap check: its data-gap rules, each with the rows of `sql` (park_id
        first) of the parks the rule watches. The query runs once, or once per rule when `args` takes
        its arguments from the rule's parameters; without rules it does not run."""
        out: list[tuple[Rule, GapParams, list[tuple[Any, ...]]]] = []
        rows: list[tuple[Any, ...]] | None = None
        for rule in self.rules.gap_rules(check):
            p: GapParams = rule.params
            if rows is None or args is not None:
                cur = await conn.execute(sql, args(p) if args is not None else None)
                rows = list(await cur.fetchall())
            out.append((rule, p, [r for r in rows if self._ok(rule, r[0])]))
        return out

    async def silence(self, conn: psycopg.AsyncConnection, now: float) -> list[Outcome]:
        out: list[Outcome] = []
        for rule, p, rows in await self._gap_rows(conn, "device_silent", _SILENT_SQL):
            for park, firm, gw, dev, poll, last_ts, received, enabled in rows:
                poll_s = float(poll or p.default_poll_interval_s)
                limit = max(p.poll_intervals * poll_s, p.min_silence_s)
                silent = now - float(last_ts)
                # a device out of service is expected to be silent; an alert open for it resolves
                obs = Obs.BREACH if enabled and silent > limit else Obs.CLEAR
                key = (rule.id, f"{gw}/{dev}")
                act = self.tracker.observe(key, obs, now, clear_for_s=p.clear_for_s)
                if act is None:
                    continue
                ev = {
                    "last_ts": datetime.fromtimestamp(float(last_ts), UTC).isoformat(),
                    "received_at": datetime.fromtimestamp(float(received), UTC).isoformat()
                    if received
                    else None,
                    "poll_interval_s": poll_s,
                    "poll_intervals": p.poll_intervals,
                    "silent_s": round(silent, 1),
                }
                out.append(
                    Outcome(
                        act,
                        rule,
                        f"{gw}/{dev}",
                        park,
                        firm,
                        gw,
                        dev,
                        None,
                        round(silent, 1),
                        limit,
                        "s",
                        float(last_ts) if obs is Obs.CLEAR else now,
                        ev,
                    )
                )
        return out

    async def seq_gaps(self, conn: psycopg.AsyncConnection, now: float) -> list[Outcome]:
        out: list[Outcome] = []
        for rule, p, rows in await self._gap_rows(conn, "seq_gap", _SEQ_GAP_SQL):
            for park, firm, gw, n_spans, missing, lo, hi in rows:
                act = self.tracker.observe((rule.id, gw), Obs.BREACH, now)
                if act is Action.FIRE or act is Action.REFRESH:
                    out.append(
                        Outcome(
                            act,
                            rule,
                            gw,
                            park,
                            firm,
                            gw,
                            None,
                            None,
                            float(missing),
                            None,
                            "batches",
                            now,
                            {"spans": n_spans, "missing_batches": missing, "from_seq": lo, "to_seq": hi},
                        )
                    )
            # open alerts of gateways the query no longer reports: the gap was filled
            seen = {gw for _park, _firm, gw, *_ in rows}
            for rid, subject in self.tracker.open_keys():
                if rid != rule.id or subject in seen:
                    continue
                act = self.tracker.observe((rid, subject), Obs.CLEAR, now, clear_for_s=p.clear_for_s)
                if act is not None:
                    out.append(
                        Outcome(
                            act,
                            rule,
                            subject,
                            "",
                            None,
                            None,
                            None,
                            None,
                            0.0,
                            None,
                            None,
                            now,
                            {"cleared": True},
                        )
                    )
        return out

    async def gateway_states(self, conn: psycopg.AsyncConnection) -> list[Outcome]:
        """Gateway online/offline as ingest stored it from the status topic (an engine that was down when the
        last will came still sees it). Observed at the time the state began, so a newer status seen on
        the stream wins over an older database row."""
        out: list[Outcome] = []
        for rule, p, rows in await self._gap_rows(conn, "gateway_offline", _GATEWAY_STATE_SQL):
            for park, firm, gw, state, since, version, spool, last_seq in rows:
                obs = Obs.BREACH if state == "offline" else Obs.CLEAR
                act = self.tracker.observe((rule.id, gw), obs, float(since), clear_for_s=p.clear_for_s)
                if act is None or act is Action.REFRESH:
                    continue
                ev = {
                    "status": {
                        "state": state,
                        "since": datetime.fromtimestamp(float(since), UTC).isoformat(),
                        "version": version,
                        "spool_depth": spool,
                        "last_seq": last_seq,
                    },
                    "source": "gateway_status (stored by ingest)",
                }
                out.append(
                    Outcome(
                        act,
                        rule,
                        gw,
                        park,
                        firm,
                        gw,
                        None,
                        None,
                        1.0 if state == "offline" else 0.0,
                        None,
                        None,
                        float(since),
                        ev,
                    )
                )
        return out

    async def reported_gaps(self, conn: psycopg.AsyncConnection, now: float) -> list[Outcome]:
        """Gaps a gateway reported (stored by ingest), for an engine that missed the batch itself."""
        out: list[Outcome] = []
        per_rule = await self._gap_rows(
            conn, "spool_gap", _REPORTED_GAP_SQL, lambda p: (p.clear_for_s or p.lookback_s,)
        )
        for rule, _p, rows in per_rule:
            for park, firm, gw, count, n, last in rows:
                key = (rule.id, gw)
                st = self.tracker.get(key)
                if st is not None and st.last_obs is not None and st.last_obs >= float(last):
                    continue  # already seen on the stream
                act = self.tracker.observe(key, Obs.BREACH, float(last))
                if act is Action.FIRE:
                    out.append(
                        Outcome(
                            act,
                            rule,
                            gw,
                            park,
                            firm,
                            gw,
                            None,
                            None,
                            float(count or 0),
                            None,
                            None,
                            float(last),
                            {"gaps": n, "source": "data_gaps"},
                        )
                    )
        return out

    def timed_clears(self, now: float) -> list[Outcome]:
        """Alerts about events rather than levels (tamper signs, reported gaps) resolve when no new sign
        has come for `clear_for_s` of wall time, even if no more data arrives. Level rules (threshold,
        rate of change, emissions) need readings that show the clear for the whole clear duration."""
        out: list[Outcome] = []
        by_id = {r.id: r for r in self.rules.rules}
        for rid, subject in self.tracker.open_keys():
            rule = by_id.get(rid)
            if rule is None or rule.kind not in ("tamper", "data_gap"):
                continue
            clear_for = float(getattr(rule.params, "clear_for_s", 0.0))
            if self.tracker.due_clear((rid, subject), now, clear_for):
                out.append(
                    Outcome(
                        Action.CLEAR,
                        rule,
                        subject,
                        "",
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        now,
                        {"cleared_after_s": clear_for},
                    )
                )
        return out

    # -- emissions ------------------------------------------------------------------------------
    async def emissions(
        self, conn: psycopg.AsyncConnection, now: datetime, into: list[Outcome] | None = None
    ) -> list[Outcome]:
        """Outcomes of the hours not yet evaluated (or with new readings since), appended to `into`
        as they are decided, each before its hour is recorded as evaluated: when the connection
        breaks mid-way, the caller still has every outcome of the hours already recorded."""
        out: list[Outcome] = [] if into is None else into
        for rule in self.rules.of_kind("emission"):
            await self._emission_rule(conn, rule, now, out)
        return out

    async def _emission_rule(
        self, conn: psycopg.AsyncConnection, rule: Rule, now: datetime, out: list[Outcome]
    ) -> None:
        p: EmissionParams = rule.params
        limits = self.rules.limits
        last_hour = (now - timedelta(seconds=p.grace_s)).replace(
            minute=0, second=0, microsecond=0
        ) - timedelta(hours=1)
        first_hour = last_hour - timedelta(hours=p.lookback_hours - 1)
        lo, hi = first_hour, last_hour + timedelta(hours=1)
        cur = await conn.execute(
            "SELECT d.device_pk, d.park_id, d.firm_id, d.gateway_id, d.device_id, d.source_type, d.fuel, d.age_class, "
            "p.city, p.timezone, p.special_limits_apply, p.special_limits_basis, p.special_limits_since "
            "FROM v_devices d JOIN v_parks p USING (park_id) WHERE d.kind = 'cems' AND d.enabled"
        )
        devices = [d for d in await cur.fetchall() if self._ok(rule, d[1])]
        if not devices:
            return
        metrics = [*p.pollutants, "o2_pct", "cems_flag"]
        pks = [d[0] for d in devices]
        cur = await conn.execute(
            "SELECT device_pk, date_bin('1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'), count(*)::int, max(ts) FROM v_readings "
            "WHERE device_pk = ANY(%s) AND metric = ANY(%s) AND ts >= %s AND ts < %s GROUP BY 1, 2",
            (pks, metrics, lo, hi),
        )
        fp = {(r[0], r[1]): (r[2], r[3]) for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT device_pk, metric, hour, n_readings FROM alert_emission_hours "
            "WHERE rule_id = %s AND device_pk = ANY(%s) AND hour >= %s AND hour < %s",
            (rule.id, pks, lo, hi),
        )
        done = {(r[0], r[1], r[2]): r[3] for r in await cur.fetchall()}
        for (
            pk,
            park,
            firm,
            gw,
            dev,
            source_type,
            fuel,
            age_class,
            city,
            tz,
            sp_apply,
            sp_basis,
            sp_since,
        ) in devices:
            stack = Stack(
                park, source_type, fuel, age_class, city, sp_apply, sp_basis, sp_since, tz or "Asia/Shanghai"
            )
            ref = limits.o2_ref(source_type)
            if ref is None:
                if pk not in self._warned:
                    self._warned.add(pk)
                    log.warning(
                        "emission rule %s: CEMS %s/%s has source_type %r with no reference O2 in the limits "
                        "file; it is not evaluated",
                        rule.id,
                        gw,
                        dev,
                        source_type,
                    )
                continue
            for metric in p.pollutants:
                hour = first_hour
                while hour <= last_hour:
                    f = fp.get((pk, hour))
                    # the limit in force for this hour (special limits start on a date)
                    choice = limits.limit_for(p, stack, metric, hour)
                    if choice is not None and f is not None and done.get((pk, metric, hour)) != f[0]:
                        await self._emission_hour(
                            conn, rule, p, pk, stack, firm, gw, dev, metric, hour, f, ref, choice, out
                        )
                    hour += timedelta(hours=1)

    async def _emission_hour(
        self,
        conn: psycopg.AsyncConnection,
        rule: Rule,
        p: EmissionParams,
        pk: int,
        stack: Stack,
        firm: str,
        gw: str,
        dev: str,
        metric: str,
        hour: datetime,
        fingerprint: tuple[int, datetime],
        ref: tuple[float, str],
        choice: LimitChoice,
        out: list[Outcome],
    ) -> None:
        cur = await conn.execute(
            "SELECT metric, ts, value, quality FROM v_readings WHERE device_pk = %s AND metric = ANY(%s) "
            "AND ts >= %s AND ts < %s ORDER BY ts",
            (pk, [metric, "o2_pct", "cems_flag"], hour, hour + timedelta(hours=1)),
        )
        series: dict[str, list[tuple[datetime, float | None, int]]] = defaultdict(list)
        for m, ts, v, q in await cur.fetchall():
            series[m].append((ts, v, q))
        o2_ref = ref[0]
        res = evaluate_hour(
            hour,
            series[metric],
            series["o2_pct"],
            series["cems_flag"],
            o2_ref=o2_ref,
            min_valid_minutes=p.min_valid_minutes,
            excluded_flags=await device_excluded_flags(conn, pk, p.excluded_flags),  # per HJ 212 edition
            exclude_quality_from=p.exclude_quality_from,
        )
        exceeded = res.exceeded(choice.limit)
        if not res.valid or res.avg_converted is None:
            obs = Obs.HOLD  # an invalid hour says nothing about compliance
        elif exceeded:
            obs = Obs.BREACH
        elif res.avg_converted <= choice.limit * p.clear_ratio:
            obs = Obs.CLEAR
        else:
            obs = Obs.HOLD
        subject = f"{gw}/{dev}/{metric}"
        t = hour.timestamp()
        act = self.tracker.observe((rule.id, subject), obs, t, clear_for_s=(p.clear_hours - 1) * 3600.0)
        if act is not None:
            out.append(self._hour_outcome(act, rule, p, stack, firm, gw, dev, metric, t, res, ref, choice))
        # recorded last: an hour is marked evaluated only once its outcome is with the caller
        await conn.execute(
            """INSERT INTO alert_emission_hours (device_pk, metric, hour, n_readings, last_ts, valid_minutes, excluded,
                   excluded_by, valid, avg_measured, avg_o2, avg_converted, o2_ref, limit_value, limit_source, exceeded,
                   rule_id, rule_version, limit_id, limit_basis)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (device_pk, metric, hour, rule_id) DO UPDATE SET n_readings = excluded.n_readings,
                   last_ts = excluded.last_ts, valid_minutes = excluded.valid_minutes, excluded = excluded.excluded,
                   excluded_by = excluded.excluded_by, valid = excluded.valid, avg_measured = excluded.avg_measured,
                   avg_o2 = excluded.avg_o2, avg_converted = excluded.avg_converted, o2_ref = excluded.o2_ref,
                   limit_value = excluded.limit_value, limit_source = excluded.limit_source, exceeded = excluded.exceeded,
                   rule_version = excluded.rule_version, limit_id = excluded.limit_id,
                   limit_basis = excluded.limit_basis, evaluated_at = now()""",
            (
                pk,
                metric,
                hour,
                fingerprint[0],
                fingerprint[1],
                res.valid_minutes,
                res.excluded,
                orjson.dumps(res.excluded_by).decode(),
                res.valid,
                res.avg_measured,
                res.avg_o2,
                res.avg_converted,
                o2_ref,
                choice.limit,
                choice.source,
                exceeded if res.valid else None,
                rule.id,
                rule.version,
                choice.limit_id,
                choice.basis_en,
            ),
        )

    def _hour_outcome(
        self,
        act: Action,
        rule: Rule,
        p: EmissionParams,
        stack: Stack,
        firm: str,
        gw: str,
        dev: str,
        metric: str,
        t: float,
        res: HourResult,
        ref: tuple[float, str],
        choice: LimitChoice,
    ) -> Outcome:
        o2_ref, o2_source = ref
        hour = res.hour
        subject = f"{gw}/{dev}/{metric}"
        evidence = {
            "hour": hour.isoformat(),
            "pollutant": metric,
            "valid": res.valid,
            "valid_minutes": res.valid_minutes,
            "min_valid_minutes": p.min_valid_minutes,
            "excluded": res.excluded,
            "excluded_by": res.excluded_by,
            "minutes_present": res.minutes_present,
            "avg_measured": res.avg_measured,
            "avg_o2": res.avg_o2,
            "avg_converted": res.avg_converted,
            **choice.evidence(),
            "stack": stack.as_json(),
            "o2_ref": o2_ref,
            "o2_ref_source": o2_source,
            "formula": "ρ = ρ' × (21 − O2ref) / (21 − O2measured), per minute, hourly mean of valid minutes",
            "minutes": [m.as_json() for m in res.minutes],
        }
        value = round(res.avg_converted, 3) if res.avg_converted is not None else None
        unit = self._cat[metric].unit if metric in self._cat else None
        return Outcome(
            act,
            rule,
            subject,
            stack.park,
            firm,
            gw,
            dev,
            metric,
            value,
            choice.limit,
            unit,
            t,
            evidence,
            {
                "o2_ref": o2_ref,
                "valid_minutes": res.valid_minutes,
                "limit_basis_zh": choice.basis_zh,
                "limit_basis_en": choice.basis_en,
            },
        )
