"""A whole virtual park: every simulated device of a scenario, started together, with a manifest.

Per gateway: one Modbus TCP server (all its tcp devices, one port), one RTU pty bus (its rtu
devices), one LineSensor per line, one DL/T 645 bus (its DL/T 645 meters, on a TCP port as a
transparent converter, or a pty), one OPC UA server (a line whose machines are its opcua-line
devices) and one HJ 212 data logger per stack, which connects to the port the gateway is to
listen on (chosen here, written to the manifest) and retries until it does. Scheduled faults
(`sim.faults`) run on a timeline thread relative to start().

Simulator manifest: {"devices": [{"gateway", "device", "model", "transport", "host", "port",
"device_id", "serial_port", "topic"}]} — every key present, null where it does not apply — plus
"park", "broker", "started_at" (epoch ms) and "gateways": [{"gateway", "firm", "sim"}].
Transport `dlt645` adds "address", "edition" and "serial" ({baudrate, parity, stopbits}; host
and port for a converter, serial_port for a pty); `hj212` gives the address the gateway listens
on as host/port and adds "mn", "password", "edition"; `opcua` adds "url", "machine", "nodes"
(catalogue metric → node id) and "value_map" (the machine's state code → catalogue state).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from simulators._stack_logger import StackLogger
from simulators.device import SimulatedDevice
from simulators.dlt645 import Dlt645Bus, Dlt645Meter
from simulators.errors import SimulatorError
from simulators.modbus import ModbusSimulator
from simulators.mqtt_sensors import LineSensor
from simulators.opcua_line import STATE_CODES, OpcuaLine
from simulators.rtu import RtuSimulator
from simulators.scenario import DLT645_MODELS, HJ212_MODELS, DeviceSpec, GatewaySpec, Scenario

__all__ = ["Park", "write_manifest"]

log = logging.getLogger("simulators.park")

_Part = ModbusSimulator | RtuSimulator | LineSensor | Dlt645Bus | OpcuaLine
# OPC UA variable of a machine -> catalogue metric (what the gateway maps it to)
_OPCUA_METRICS = {
    "State": "machine_state",
    "GoodCount": "good_count",
    "RejectCount": "reject_count",
    "IdealRate": "ideal_rate_pcs_h",
    "EnergyKWh": "elec_import_kwh",
}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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
        self.dlt645: dict[str, Dlt645Bus] = {}
        self.dlt645_meters: dict[tuple[str, str], Dlt645Meter] = {}
        self.opcua: dict[str, OpcuaLine] = {}
        self.hj212_ports: dict[str, int] = {}
        self.stack_loggers: dict[tuple[str, str], StackLogger] = {}
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
                elif d.transport == "dlt645":
                    self._add_dlt645(gw, d)
                elif d.transport == "hj212":
                    self._add_stack_logger(gw, d)
                elif d.transport in ("tcp", "rtu"):
                    self._add_modbus(gw, d)
            self._add_opcua_line(gw)

    def _add_modbus(self, gw: GatewaySpec, d: DeviceSpec) -> None:
        assert d.unit_id is not None
        key = (gw.id, d.id)
        if d.transport == "tcp":
            sim = self.tcp.get(gw.id) or self.tcp.setdefault(gw.id, ModbusSimulator(host=self.host, port=0))
            self.modbus_devices[key] = sim.add_device(d.unit_id, d.model, seed=d.seed, params=d.params)
            return
        bus = gw.sim.get("rtu") or {}
        rtu = self.rtu.get(gw.id) or self.rtu.setdefault(
            gw.id,
            RtuSimulator(
                baudrate=int(bus.get("baudrate", 9600)),
                parity=str(bus.get("parity", "N")),
                stopbits=int(bus.get("stopbits", 1)),
            ),
        )
        self.modbus_devices[key] = rtu.add_device(d.unit_id, d.model, seed=d.seed, params=d.params)

    def _add_dlt645(self, gw: GatewaySpec, d: DeviceSpec) -> None:
        """The meter on its gateway's DL/T 645 bus (a transparent TCP converter unless `pty`)."""
        cfg = gw.sim.get("dlt645") or {}
        bus = self.dlt645.get(gw.id) or self.dlt645.setdefault(
            gw.id,
            Dlt645Bus(
                transport=str(cfg.get("transport", "tcp")),
                baudrate=int(cfg.get("baudrate", 9600)),
                parity=str(cfg.get("parity", "E")),
                host=self.host,
                port=0,
            ),
        )
        p = d.params
        self.dlt645_meters[(gw.id, d.id)] = bus.add_meter(
            str(p["address"]),
            edition=DLT645_MODELS[d.model],
            seed=d.seed,
            rated_power_kw=float(p.get("rated_power_kw", 50.0)),
            import_kwh=float(p.get("import_kwh", 1000.0)),
            time_scale=float(p.get("time_scale", 1.0)),
        )

    def _add_stack_logger(self, gw: GatewaySpec, d: DeviceSpec) -> None:
        """The stack's data logger, pointed at the port its gateway will listen on."""
        port = self.hj212_ports.get(gw.id) or self.hj212_ports.setdefault(
            gw.id, _free_port(self.advertised_host)
        )
        p = d.params
        self.stack_loggers[(gw.id, d.id)] = StackLogger(
            self.advertised_host,
            port,
            mn=str(p["mn"]),
            password=str(p["password"]),
            edition=HJ212_MODELS[d.model],
            seed=d.seed,
            params=p,
        )

    def _add_opcua_line(self, gw: GatewaySpec) -> None:
        """One OPC UA server per gateway with opcua-line devices: one line, a machine per device."""
        machines = [d for d in gw.devices if d.transport == "opcua"]
        if not machines:
            return
        p = machines[0].params
        self.opcua[gw.id] = OpcuaLine(
            str((gw.sim.get("opcua") or {}).get("line_id") or gw.id),
            tuple(d.id for d in machines),
            host=self.advertised_host,
            port=0,
            seed=machines[0].seed,
            ideal_rate=float(p.get("ideal_rate", 1200.0)),
            reject_ratio=float(p.get("reject_ratio", 0.02)),
            rated_kw=float(p.get("rated_kw", 15.0)),
            time_scale=float(p.get("time_scale", 1.0)),
        )

    def start(self) -> Park:
        started: list[_Part] = []
        parts: list[_Part] = [
            *self.tcp.values(),
            *self.rtu.values(),
            *self.lines.values(),
            *self.dlt645.values(),
            *self.opcua.values(),
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
        for lg in self.stack_loggers.values():
            lg.start()
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
            target: SimulatedDevice | LineSensor | Dlt645Meter | None = (
                self.modbus_devices.get(key) or self.lines.get(key) or self.dlt645_meters.get(key)
            )
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
            elif d.transport in _PROTOCOL_ENTRIES:
                entry.update(_PROTOCOL_ENTRIES[d.transport](self, key, d))
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
        for lg in self.stack_loggers.values():
            lg.stop()
        parts: list[_Part] = [
            *self.lines.values(),
            *self.opcua.values(),
            *self.dlt645.values(),
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


def _dlt645_entry(park: Park, key: tuple[str, str], d: DeviceSpec) -> dict[str, Any]:
    bus = park.dlt645[key[0]]
    where: dict[str, Any] = (
        {"host": park.advertised_host, "port": bus.port}
        if bus.transport == "tcp"
        else {"serial_port": bus.port_path}
    )
    return {
        **where,
        "address": park.dlt645_meters[key].address,
        "edition": DLT645_MODELS[d.model],
        "serial": {"baudrate": bus.baudrate, "parity": bus.parity, "stopbits": bus.stopbits},
    }


def _hj212_entry(park: Park, key: tuple[str, str], d: DeviceSpec) -> dict[str, Any]:
    lg = park.stack_loggers[key]
    return {
        "host": lg.host,
        "port": lg.port,
        "mn": lg.mn,
        "password": lg.logger.password,
        "edition": lg.edition,
    }


def _opcua_entry(park: Park, key: tuple[str, str], d: DeviceSpec) -> dict[str, Any]:
    line = park.opcua[key[0]]
    return {
        "url": line.url,
        "machine": d.id,
        "nodes": {metric: line.node_id(d.id, var) for var, metric in _OPCUA_METRICS.items()},
        "value_map": {str(code): state for state, code in STATE_CODES.items()},
    }


_PROTOCOL_ENTRIES = {"dlt645": _dlt645_entry, "hj212": _hj212_entry, "opcua": _opcua_entry}
