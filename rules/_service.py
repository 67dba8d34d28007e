"""`parkpulse rules serve`: keeps the current month (and the year to date) evaluated.

One asyncio.TaskGroup with one named task; the database work runs in a worker thread so the
loop stays responsive to shutdown. Validation (rule set, settings) happens at construction,
apart from start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from parkpulse.db import connect, connect_read, refresh_rollups, wait_replayed
from parkpulse.errors import ConfigError, ParkPulseError
from parkpulse.reconnect import Backoff, retry_sync
from rules._evaluate import evaluate_year
from rules._ruleset import DEFAULT_RULE_SET, RuleSet, load_rule_set
from rules._store import load_inputs, store_result

__all__ = ["RulesService", "RulesSettings", "run_once"]

log = logging.getLogger("parkpulse.rules")


class RulesSettings(BaseSettings):
    """Environment: PARKPULSE_RULES_RULE_SET, PARKPULSE_RULES_INTERVAL_S, PARKPULSE_RULES_DRAIN_S."""

    model_config = SettingsConfigDict(env_prefix="PARKPULSE_RULES_")
    rule_set: str = DEFAULT_RULE_SET
    interval_s: float = Field(default=300.0, gt=0)
    drain_s: float = Field(default=30.0, gt=0)


def run_once(
    dsn: str,
    rs: RuleSet,
    year: int,
    month: int | None = None,
    park: str | None = None,
    refresh: bool = True,
    read_url: str | None = None,
    retry_s: float = 60.0,
) -> tuple[int, int]:
    """Refresh rollups, evaluate from the database and store. Returns (run_id, firms).

    With `read_url` (PARKPULSE_DATABASE_READ_URL) the input queries go to that replica, once it
    has replayed the refresh (else, after 30 s, to the primary); refresh and results stay on `dsn`.

    A lost connection or a read-only server (a switchover or failover under a multi-host URL)
    makes the whole run start again on a new connection, with backoff, for up to `retry_s`
    seconds: the results go in one transaction that replaces the previous ones for the same keys,
    so a repeated run leaves the same results (and one more `rule_runs` row)."""
    return retry_sync(
        lambda: _run_attempt(dsn, rs, year, month, park, refresh, read_url),
        what="rules run",
        within_s=retry_s,
        backoff=Backoff(0.5, 5.0),
    )


def _run_attempt(
    dsn: str,
    rs: RuleSet,
    year: int,
    month: int | None,
    park: str | None,
    refresh: bool,
    read_url: str | None,
) -> tuple[int, int]:
    with connect(dsn) as conn:
        if refresh:
            refresh_rollups(conn)  # everything dirty, on either storage path
        if read_url and read_url != dsn:
            with connect_read(read_url, autocommit=False) as rconn:
                if wait_replayed(conn, rconn):
                    inputs = load_inputs(rconn, rs, year, month, park)
                else:
                    log.warning("rules: the read replica lags more than 30 s; reading from the primary")
                    inputs = load_inputs(conn, rs, year, month, park)
        else:
            inputs = load_inputs(conn, rs, year, month, park)
        result = evaluate_year(rs, inputs)
        run_id = store_result(conn, result, park)
        return run_id, len(result.firms)


@dataclass
class RulesService:
    dsn: str
    rule_set: str = DEFAULT_RULE_SET
    interval_s: float = 300.0
    drain_s: float = 30.0
    timezone: str = "Asia/Shanghai"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    runs: int = 0
    last_error: str | None = None
    _rs: RuleSet | None = None
    _stop: asyncio.Event | None = None
    _tg: asyncio.TaskGroup | None = None

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ConfigError(f"interval_s: must be > 0 (got {self.interval_s!r})")
        try:
            self._tz = ZoneInfo(self.timezone)
        except Exception as exc:
            raise ConfigError(f"timezone: unknown time zone {self.timezone!r}") from exc
        self._rs = load_rule_set(self.rule_set)  # raises RuleSetError listing every problem

    async def __aenter__(self) -> RulesService:
        self._stop = asyncio.Event()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tg.create_task(self._loop(), name="rules-periodic")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._stop is not None and self._tg is not None
        self._stop.set()
        try:
            await asyncio.wait_for(self._tg.__aexit__(et, ev, tb), timeout=self.drain_s)
        except TimeoutError:
            log.warning("rules: evaluation still running after %.0f s drain; leaving it", self.drain_s)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _tick(self) -> None:
        assert self._rs is not None
        local = self.clock().astimezone(self._tz)
        for month in (local.month, None):  # the month, then the year to date
            await asyncio.to_thread(run_once, self.dsn, self._rs, local.year, month)
        self.runs += 1

    async def _loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await self._tick()
                self.last_error = None
            except ParkPulseError as exc:
                self.last_error = str(exc)
                log.error("rules: evaluation failed: %s", exc)
            except Exception as exc:  # keep serving: the next tick retries
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("rules: evaluation failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval_s)

    async def serve(self, shutdown: asyncio.Event) -> None:
        """Run until `shutdown` is set (injectable trigger), then drain."""
        async with self:
            await shutdown.wait()
