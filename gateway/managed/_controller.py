"""A managed gateway's side of a push: receive, validate, persist, apply, probation, rollback.

The controller runs on the gateway's event loop. Pushes arrive through `offer()` (the uplink's
callback); the newest waiting one is handled by `run()`, one at a time. Its host (the Gateway)
applies a configuration without a restart, tells whether the broker is reachable and how the
devices fare, and re-publishes the retained status when the state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Protocol

from gateway.config import GatewayConfig
from gateway.managed._errors import ManagedStateError
from gateway.managed._merge import effective_config, summarise
from gateway.managed._state import ManagedState, PushState, VersionRef, load_state, save_state
from gateway.managed._store import prune_versions, read_push, version_dir, write_push
from gateway.stats import DeviceStats
from parkpulse.errors import ValidationReport
from parkpulse.wire import ConfigPush, ConfigState, load_verify_key, parse_config_push

__all__ = ["Host", "ManagedController"]

log = logging.getLogger("parkpulse.gateway.managed")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class Host(Protocol):
    """What the controller needs of the running gateway."""

    async def apply_config(self, cfg: GatewayConfig) -> None: ...

    def device_stats(self) -> list[DeviceStats]: ...

    def broker_connected(self) -> bool: ...

    def announce(self) -> None:
        """Re-publish the retained status now (when connected)."""
        ...


def _reason(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()[:480]


class ManagedController:
    def __init__(self, local: GatewayConfig, host: Host) -> None:
        assert local.managed is not None
        self.local = local
        self.settings = local.managed
        self.root: Path = local.managed.state_path(local.spool.path)
        try:
            self._verify_key = load_verify_key(local.managed.verify_key)
        except ValueError as exc:
            raise ManagedStateError(f"managed.verify_key: {exc}") from None
        self.host = host
        self.st = ManagedState()
        self._pending: bytes | None = None
        self._last_refused: bytes | None = None  # a malformed retained push comes again on every reconnect
        self._wake = asyncio.Event()
        self._probation_started = time.monotonic()
        self._last_connected = time.monotonic()
        self.pushes = {"applied": 0, "rejected": 0, "rolled_back": 0, "ignored": 0}

    # state ------------------------------------------------------------------------------------
    def config_state(self) -> ConfigState:
        st = self.st
        return ConfigState(
            mode="managed",
            desired_version=st.desired_version,
            applied_version=st.applied.version if st.applied else None,
            applied_sha256=st.applied.sha256 if st.applied else None,
            state=st.state,
            reason=st.reason,
            at=st.at,
        )

    def _set(self, state: PushState, reason: str | None = None) -> None:
        self.st.state = state
        self.st.reason = _reason(reason) if reason else None
        self.st.at = int(time.time() * 1000)
        self._save()
        self.host.announce()

    def _save(self) -> None:
        try:
            save_state(self.root, self.st)
        except ManagedStateError as exc:  # keep running what runs; say so in the log
            log.error("%s", exc)

    def _config_of(self, ref: VersionRef | None) -> GatewayConfig:
        """The configuration of a kept version (None: the local file)."""
        if ref is None:
            return self.local
        push = read_push(self.root, ref.version)
        if push.sha256 != ref.sha256:
            raise ManagedStateError(f"version {ref.version}: kept sha256 differs from the state's")
        return effective_config(self.local, push, version_dir(self.root, ref.version))

    # start ------------------------------------------------------------------------------------
    def boot(self) -> GatewayConfig:
        """The configuration to run at start: the last applied version, else the last good one, else the local file."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.st = load_state(self.root)
        except ManagedStateError as exc:
            aside = self.root / f"state.json.damaged-{int(time.time())}"
            log.error("%s; starting from the local file (the damaged file is kept as %s)", exc, aside.name)
            (self.root / "state.json").replace(aside)
            self.st = ManagedState()
        st = self.st
        if st.state == "applying":  # stopped in the middle of an apply: it is on probation again
            st.state = "applied"
        for ref in (st.applied, st.last_good):
            try:
                cfg = self._config_of(ref)
            except (ManagedStateError, ValidationReport) as exc:
                log.error("cannot run configuration version %s at start: %s", ref and ref.version, exc)
                if ref is st.applied and ref is not None:
                    st.probation = None
                    st.state, st.reason = (
                        "rolled_back",
                        _reason(f"version {ref.version} unusable at start: {exc}"),
                    )
                    st.at = int(time.time() * 1000)
                continue
            if ref is not st.applied:
                st.applied = ref
            self._probation_started = self._last_connected = time.monotonic()
            self._save()
            log.info(
                "managed mode: running %s (state folder %s)",
                f"configuration version {ref.version}" if ref else "the local file",
                self.root,
            )
            return cfg
        st.applied = None
        self._save()
        return self.local

    # pushes -----------------------------------------------------------------------------------
    def offer(self, payload: bytes) -> None:
        """A config message arrived (on the loop); the newest waiting one wins."""
        self._pending = payload
        self._wake.set()

    async def run(self) -> None:
        tick = min(1.0, self.settings.rollback_after_s / 10)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            self._wake.clear()
            payload, self._pending = self._pending, None
            if payload is not None:
                await self.handle(payload)
            await self.check_probation()

    async def handle(self, payload: bytes) -> None:
        gw = self.local.gateway.id
        if payload == self._last_refused:
            self.pushes["ignored"] += 1
            return
        try:
            push = parse_config_push(
                payload, gw, verify_key=self._verify_key, max_age_s=self.settings.max_push_age_s
            )
        except ValueError as exc:
            self._last_refused = payload
            self.pushes["rejected"] += 1
            log.warning("config push refused: %s", exc)
            self._set("rejected", f"push refused: {exc}")
            return
        if push.version <= self.st.highest_seen:
            self.pushes["ignored"] += 1
            log.debug("config version %d already handled (highest %d)", push.version, self.st.highest_seen)
            return
        self.st.highest_seen = push.version
        self.st.desired_version = push.version
        log.info(
            "config version %d pushed by %s: %s", push.version, push.issued_by or "?", push.reason or "-"
        )
        try:
            cfg = effective_config(self.local, push, write_push(self.root, push))
        except (ValidationReport, ManagedStateError) as exc:
            problems = exc.problems if isinstance(exc, ValidationReport) else []
            why = summarise(problems) if problems else str(exc)
            self.pushes["rejected"] += 1
            log.warning("config version %d rejected: %s", push.version, why)
            prune_versions(self.root, self._kept())
            self._set("rejected", why)
            return
        await self._apply(push, cfg)

    async def _apply(self, push: ConfigPush, cfg: GatewayConfig) -> None:
        self._set("applying")
        try:
            await self.host.apply_config(cfg)
        except Exception as exc:
            log.exception("config version %d could not be applied", push.version)
            await self._rollback(f"version {push.version} could not be applied: {exc}")
            return
        self.st.applied = VersionRef(push.version, push.sha256)
        self.st.probation = push.version
        self._probation_started = self._last_connected = time.monotonic()
        self.pushes["applied"] += 1
        log.info(
            "config version %d applied; on probation for %.0f s", push.version, self.settings.rollback_after_s
        )
        self._set("applied")

    # probation --------------------------------------------------------------------------------
    async def check_probation(self) -> None:
        """Roll back when the broker stayed unreachable for `rollback_after_s` since the apply, or when
        more than `max_failing_share` of the devices fail at the end of the probation; else pass it."""
        if self.st.probation is None:
            return
        now = time.monotonic()
        limit = self.settings.rollback_after_s
        if self.host.broker_connected():
            self._last_connected = now
        elif now - max(self._last_connected, self._probation_started) >= limit:
            await self._rollback(
                f"broker not reachable for {limit:g} s after applying version {self.st.probation}"
            )
            return
        if now - self._probation_started < limit or not self.host.broker_connected():
            return
        stats = [s for s in self.host.device_stats() if s.state != "starting"]
        failing = [s.device for s in stats if s.state == "failing"]
        if stats and len(failing) / len(stats) > self.settings.max_failing_share:
            names = ", ".join(sorted(failing)[:5]) + (", …" if len(failing) > 5 else "")
            await self._rollback(
                f"{len(failing)} of {len(stats)} devices failing {limit:g} s after applying version "
                f"{self.st.probation} (more than {self.settings.max_failing_share:g}): {names}"
            )
            return
        log.info("config version %d passed its probation", self.st.probation)
        self.st.last_good = self.st.applied
        self.st.probation = None
        self._save()
        prune_versions(self.root, self._kept())

    async def _rollback(self, why: str) -> None:
        bad = self.st.probation or self.st.desired_version
        target = self.st.last_good
        try:
            cfg = self._config_of(target)
        except (ManagedStateError, ValidationReport) as exc:
            log.error("last good version %s unusable (%s); returning to the local file", target, exc)
            target, cfg = None, self.local
        log.warning(
            "rolling back from version %s to %s: %s",
            bad,
            f"version {target.version}" if target else "the local file",
            why,
        )
        try:
            await self.host.apply_config(cfg)
        except Exception:
            log.exception("rollback failed; running the local file")
            target = None
            await self.host.apply_config(self.local)
        self.st.applied = target
        self.st.probation = None
        self.pushes["rolled_back"] += 1
        self._set("rolled_back", why)

    def _kept(self) -> set[int]:
        st = self.st
        return {r.version for r in (st.applied, st.last_good) if r is not None}
