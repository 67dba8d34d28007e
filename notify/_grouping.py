"""The rules that keep a phone quiet, as a pure function of one recipient's waiting items.

For one recipient (a contact), at time `now`:

1. every **critical** item becomes its own message at once: no grouping, no quiet hours, no
   rate limit (critical messages are not counted against the limit either);
2. during the recipient's **quiet hours** the other items wait;
3. the **rate limit** (`rate_limit` messages per `rate_window_s`, non-critical ones) leaves a
   budget; with none left the items wait;
4. items taken during quiet hours (held) go out, with everything else waiting, as **one digest**;
5. otherwise items are grouped by (park, kind). A group is due when nothing went to this
   recipient for that park and kind (or as a digest) in the last `group_window_s`: the first
   alert of a burst goes out at once, the rest of the burst waits and goes as one message a
   window later;
6. when more groups are due than the budget allows, they go as one digest.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["Plan", "QuietHours", "Recipient", "Rules", "Waiting", "blocked_until", "plan_recipient"]


@dataclass(frozen=True)
class Waiting:
    item_id: int
    alert_id: int
    park_id: str
    kind: str
    severity: str
    action: str
    event_at: datetime
    taken_at: datetime

    @property
    def group_key(self) -> str:
        return f"{self.park_id}|{self.kind}"


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    tz: ZoneInfo

    def active(self, at: datetime) -> bool:
        local = at.astimezone(self.tz).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # over midnight, e.g. 22:00–07:00

    def ends_after(self, at: datetime) -> datetime:
        """The first end of quiet hours after `at`."""
        local = at.astimezone(self.tz)
        end = datetime.combine(local.date(), self.end, self.tz)
        return end if end > local else end + timedelta(days=1)


@dataclass(frozen=True)
class Rules:
    group_window_s: float = 60.0
    rate_limit: int = 6
    rate_window_s: float = 600.0


@dataclass
class Recipient:
    contact_id: int
    quiet: QuietHours | None = None
    sent_in_window: int = 0  # non-critical messages created in the last rate_window_s
    window_oldest: datetime | None = None  # the oldest of them
    last_sent: dict[str, datetime] = field(default_factory=dict)  # group_key -> last single/group
    last_digest: datetime | None = None


@dataclass(frozen=True)
class Plan:
    contact_id: int
    form: str  # single | group | digest
    group_key: str | None
    critical: bool
    items: list[Waiting]


def plan_recipient(items: list[Waiting], r: Recipient, rules: Rules, now: datetime) -> list[Plan]:
    out = [Plan(r.contact_id, "single", i.group_key, True, [i]) for i in items if i.severity == "critical"]
    rest = [i for i in items if i.severity != "critical"]
    if not rest or (r.quiet is not None and r.quiet.active(now)):
        return out
    budget = rules.rate_limit - r.sent_in_window
    if budget <= 0:
        return out
    if r.quiet is not None and any(r.quiet.active(i.taken_at) for i in rest):
        return [*out, Plan(r.contact_id, "digest", None, False, rest)]
    groups: dict[str, list[Waiting]] = defaultdict(list)
    for i in rest:
        groups[i.group_key].append(i)
    due = [(k, g) for k, g in groups.items() if _due(k, r, rules, now)]
    if not due:
        return out
    if len(due) > budget:
        return [*out, Plan(r.contact_id, "digest", None, False, [i for _, g in due for i in g])]
    return out + [Plan(r.contact_id, "single" if len(g) == 1 else "group", k, False, g) for k, g in due]


def blocked_until(r: Recipient, rules: Rules, now: datetime) -> datetime | None:
    """Until when nothing but critical items can go to this recipient (quiet hours, no budget, a
    digest within the group window),
    so its other waiting items need not be looked at; None when they may go now."""
    if r.quiet is not None and r.quiet.active(now):
        return r.quiet.ends_after(now)
    if r.sent_in_window >= rules.rate_limit and r.window_oldest is not None:
        return r.window_oldest + timedelta(seconds=rules.rate_window_s)
    if r.last_digest is not None and (now - r.last_digest).total_seconds() < rules.group_window_s:
        return r.last_digest + timedelta(seconds=rules.group_window_s)  # no group is due before
    return None


def _due(key: str, r: Recipient, rules: Rules, now: datetime) -> bool:
    last = max((t for t in (r.last_sent.get(key), r.last_digest) if t is not None), default=None)
    return last is None or (now - last).total_seconds() >= rules.group_window_s
