"""An HJ 212 data logger carrying a simulated stack's physics, as the virtual park runs it.

The logger's minute values come from the same `CemsProcess` as the Modbus CEMS analyser (NOx at
the reference O2 that breaks its limit periodically, calibration and maintenance flags), so a
stack reports the same emissions whichever protocol it speaks. It connects to its gateway (the
upper system) and keeps retrying until the gateway listens; it first sends the backfilled minutes
(from the start of the clock hour `backfill_hours` back, which is also the process's time origin),
then each minute once it is complete. It resends when no acknowledgement comes (the logger's own
rule) and reconnects when the link drops.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from simulators._physics import CemsProcess
from simulators.errors import SimulatorError
from simulators.hj212 import SHANGHAI, Hj212DataLogger

__all__ = ["StackLogger"]

log = logging.getLogger("simulators.park.hj212")

# the process's cems_flag code -> the HJ 212 data flag (N normal, M maintenance, C calibration)
_FLAG_OF_CEMS = {0: "N", 2: "M", 5: "C"}


class _PhysicsLogger(Hj212DataLogger):
    """A data logger whose minute data are the stack process's values at that minute."""

    def __init__(self, host: str, port: int, process: CemsProcess, **kw: Any) -> None:
        super().__init__(host, port, **kw)
        self.process = process
        self._lock = threading.Lock()

    def minute_cp(self, minute: datetime) -> str:
        with self._lock:
            self.process.advance(minute.timestamp())
            v = self.process.values()
        ref = self.process.o2_ref
        zs = (21.0 - ref) / (21.0 - v["o2_pct"])  # HJ 75: C at reference O2 = C × (21 − ref)/(21 − O2)
        flag = _FLAG_OF_CEMS.get(int(v["cems_flag"]), "N")
        groups = [f"DataTime={minute.astimezone(self.tz):%Y%m%d%H%M%S}"]
        for code, key in (("a21026", "so2_mg_m3"), ("a21002", "nox_mg_m3"), ("a34013", "particulate_mg_m3")):
            groups.append(f"{code}-Avg={v[key]:.3f},{code}-ZsAvg={v[key] * zs:.3f},{code}-Flag={flag}")
        groups.append(f"a19001-Avg={v['o2_pct']:.3f},a19001-Flag={flag}")
        # flue gas flow: the process gives m3/h, HJ 212's a00000 is m3/s
        groups.append(f"a00000-Avg={v['flue_flow_m3_h'] / 3600.0:.4f},a00000-Flag=N")
        groups.append(f"a01012-Avg={v['flue_temp_c']:.2f},a01012-Flag=N")
        return ";".join(groups)


class StackLogger:
    """One simulated stack's data logger, run in its own thread against `host:port`."""

    def __init__(
        self, host: str, port: int, *, mn: str, password: str, edition: str, seed: int, params: dict[str, Any]
    ) -> None:
        self.host, self.port, self.mn, self.edition = host, port, mn, edition
        backfill = int(params.get("backfill_hours", 0))
        now = datetime.now(SHANGHAI)
        self.first_minute = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=backfill)
        process_params = {k: v for k, v in params.items() if k not in ("mn", "password", "backfill_hours")}
        process = CemsProcess(seed, process_params, t0=self.first_minute.timestamp())
        self.logger = _PhysicsLogger(
            host, port, process, mn=mn, password=password, edition=edition, seed=seed, reply_timeout_s=5.0
        )
        self.sent_minutes = 0
        self.connected = False
        self._next = self.first_minute
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StackLogger:
        self._thread = threading.Thread(target=self._run, name=f"parkpulse-sim-hj212-{self.mn}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.logger.close()

    def _connect(self) -> bool:
        try:
            self.logger.connect(timeout=2.0)
        except SimulatorError:
            return False
        self.connected = True
        log.info("data logger %s connected to %s:%s", self.mn, self.host, self.port)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.connected and not self._connect():
                self._stop.wait(1.0)
                continue
            try:
                self._send_due()
            except (OSError, SimulatorError) as exc:
                log.warning("data logger %s lost its link (%s); reconnecting", self.mn, exc)
                self.logger.close()
                self.connected = False
                continue
            self._stop.wait(1.0)

    def _send_due(self) -> None:
        """Send every complete minute not yet acknowledged, oldest first."""
        while not self._stop.is_set() and self._next + timedelta(minutes=1) <= datetime.now(SHANGHAI):
            if not self.logger.send_minute(self._next):
                raise SimulatorError(f"minute {self._next:%H:%M} not acknowledged")
            self.sent_minutes += 1
            self._next += timedelta(minutes=1)

    def summary(self) -> dict[str, Any]:
        return {"sent_minutes": self.sent_minutes, "connected": self.connected, **self.logger.summary()}
