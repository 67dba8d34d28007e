"""A whole virtual park: every simulated device of a scenario, started together, with a manifest.

Per gateway: one Modbus TCP server (all its tcp devices, one port), one RTU pty bus (its rtu
devices) and one LineSensor per line. Scheduled faults (`sim.faults`) run on a timeline
thread relative to start().

Simulator manifest: {"devices": [{"gateway", "device", "model", "transport", "host", "port",
"device_id", "serial_port", "topic"}]} — every key present, null where it does not apply — plus
"park", "broker", "started_at" (epoch ms) and "gateways": [{"gateway", "firm", "sim"}].
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from simulators.device import SimulatedDevice
from simulators.errors import SimulatorError
from simulators.modbus import ModbusSimulator
from simulators.mqtt_sensors import LineSensor
from simulators.rtu import RtuSimulator
from simulators.scenario import DeviceSpec, Scenario

__all__ = ["Park", "write_manifest"]

log = logging.getLogger("simulators.park")


def write_manifest(manifest: dict[str, Any], path: str | Path) -> None:
    """Write atomically (a reader never sees half a file)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)


class Park:
    """Start/stop every simulated device of a scenario."""

    def __init__(
        self, scenario: Scenario, host: str = "127.0.0.1", broker_url: str = "mqtt://127.0.0.1:1883"
    ) -> None:
        self.scenario = scenario
        self.host = host
        self.broker_url = broker_url
        self.tcp: dict[str, ModbusSimulator] = {}
        self.rtu: dict[str, RtuSimulator] = {}
        self.lines: dict[tuple[str, str], LineSensor] = {}
        self.modbus_devices: dict[tuple[str, str], SimulatedDevice] = {}
        self._specs: dict[tuple[str, str], DeviceSpec] = {}
        self._stop = threading.Event()
        self._timeline: threading.Thread | None = None
        self.started_at: float | None = None
        self._build()

    def _build(self) -> None:
        for gw in self.scenario.gateways:
            for d in gw.devices:
                key = (gw.id, d.id)
                self._specs[key] = d
                if d.transport == "mqtt":
                    self.lines[key] = LineSensor(
                        d.line_id,
                        broker_url=self.broker_url,
                        interval_s=float(d.params.get("interval_s", 5.0)),
                        ideal_rate=float(d.params.get("ideal_rate", 1200.0)),
                        reject_ratio=float(d.params.get("reject_ratio", 0.02)),
                        time_scale=float(d.params.get("time_scale", 1.0)),
                        seed=d.seed,
                    )
                    continue
                assert d.unit_id is not None
                if d.transport == "tcp":
                    sim = self.tcp.get(gw.id) or self.tcp.setdefault(
                        gw.id, ModbusSimulator(host=self.host, port=0)
                    )
                    self.modbus_devices[key] = sim.add_device(
                        d.unit_id, d.model, seed=d.seed, params=d.params
                    )
                else:
                    bus = gw.sim.get("rtu") or {}
                    rtu = self.rtu.get(gw.id) or self.rtu.setdefault(
                        gw.id,
                        RtuSimulator(
                            baudrate=int(bus.get("baudrate", 9600)),
                            parity=str(bus.get("parity", "N")),
                            stopbits=int(bus.get("stopbits", 1)),
                        ),
                    )
                    self.modbus_devices[key] = rtu.add_device(
                        d.unit_id, d.model, seed=d.seed, params=d.params
                    )

    def start(self) -> Park:
        started: list[ModbusSimulator | RtuSimulator | LineSensor] = []
        parts: list[ModbusSimulator | RtuSimulator | LineSensor] = [
            *self.tcp.values(),
            *self.rtu.values(),
            *self.lines.values(),
        ]
        try:
            for part in parts:
                part.start()
                started.append(part)
        except BaseException:
            for part in reversed(started):
                with contextlib.suppress(Exception):
                    part.stop()
            raise
        self.started_at = time.time()
        self._stop.clear()
        self._timeline = threading.Thread(
            target=self._run_timeline, name="parkpulse-sim-park-faults", daemon=True
        )
        self._timeline.start()
        return self

    def _events(self) -> list[tuple[float, tuple[str, str], str | None]]:
        events: list[tuple[float, tuple[str, str], str | None]] = []
        for key, d in self._specs.items():
            for f in d.faults:
                events.append((float(f["at_s"]), key, f["fault"]))
                if f.get("for_s"):
                    events.append((float(f["at_s"]) + float(f["for_s"]), key, None))
        return sorted(events, key=lambda e: e[0])

    def _run_timeline(self) -> None:
        assert self.started_at is not None
        for at_s, key, fault in self._events():
            if self._stop.wait(max(0.0, self.started_at + at_s - time.time())):
                return
            target: SimulatedDevice | LineSensor | None = self.modbus_devices.get(key) or self.lines.get(key)
            if target is None:
                continue
            try:
                target.inject(fault)
                log.info("fault %s on %s/%s at +%.0f s", fault, key[0], key[1], at_s)
            except SimulatorError as exc:
                log.warning("fault %s on %s/%s failed: %s", fault, key[0], key[1], exc)

    @property
    def advertised_host(self) -> str:
        """The address clients use (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("", "0.0.0.0") else "::1" if self.host == "::" else self.host

    def manifest(self) -> dict[str, Any]:
        devices = []
        for key, d in self._specs.items():
            gw, dev = key
            entry: dict[str, Any] = {
                "gateway": gw,
                "device": dev,
                "model": d.model,
                "transport": d.transport,
                "host": None,
                "port": None,
                "device_id": d.unit_id,
                "serial_port": None,
                "topic": None,
                "firm": d.firm,
                "kind": d.kind,
            }
            if d.transport == "tcp":
                entry["host"], entry["port"] = self.advertised_host, self.tcp[gw].port
            elif d.transport == "rtu":
                bus = self.rtu[gw]
                entry["serial_port"] = bus.port_path
                entry["serial"] = {
                    "baudrate": bus.baudrate,
                    "parity": bus.parity,
                    "stopbits": bus.stopbits,
                    "bytesize": bus.bytesize,
                }
            else:
                entry["topic"] = self.lines[key].topic
            devices.append(entry)
        return {
            "park": self.scenario.park_id,
            "broker": self.broker_url,
            "started_at": int((self.started_at or time.time()) * 1000),
            "gateways": [{"gateway": g.id, "firm": g.firm, "sim": g.sim} for g in self.scenario.gateways],
            "devices": devices,
        }

    def stop(self) -> None:
        self._stop.set()
        if self._timeline is not None:
            self._timeline.join(5.0)
            self._timeline = None
        errors: list[str] = []
        parts: list[ModbusSimulator | RtuSimulator | LineSensor] = [
            *self.lines.values(),
            *self.rtu.values(),
            *self.tcp.values(),
        ]
        for part in parts:
            try:
                part.stop()
            except Exception as exc:
                errors.append(str(exc))
        if errors:
            raise SimulatorError("; ".join(errors))

    def __enter__(self) -> Park:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
