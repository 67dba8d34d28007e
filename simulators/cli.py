"""`parkpulse-sim`: run simulated meters, RTU buses, line sensors or a whole virtual park.

Every serving command runs until Ctrl-C or SIGTERM (or `--duration` seconds) and stops cleanly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from simulators.errors import ScenarioError, SimulatorError
from simulators.hj212 import SHANGHAI, Hj212DataLogger
from simulators.modbus import MODELS, ModbusSimulator
from simulators.mqtt_sensors import LineSensor
from simulators.opcua_line import OpcuaLine, write_certificate
from simulators.park import Park, write_manifest
from simulators.register_map import load_register_map
from simulators.rtu import RtuSimulator
from simulators.scenario import LINE_MODEL, load_scenario

__all__ = ["app", "main"]

app = typer.Typer(
    help="ParkPulse hardware simulators (Modbus TCP/RTU meters, CEMS, MQTT line sensors).",
    no_args_is_help=True,
)

_DEFAULT_BROKER = os.environ.get("PARKPULSE_MQTT_URL", "mqtt://127.0.0.1:1883")


@contextlib.contextmanager
def _shutdown_signal() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM while the block runs (installed before anything starts)."""
    done = threading.Event()

    def handler(signum: int, frame: object) -> None:
        done.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield done
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _wait(duration: float | None) -> None:
    """Block until SIGINT/SIGTERM or `duration` seconds."""
    with _shutdown_signal() as done:
        done.wait(duration)


def _fail(msg: str | SimulatorError) -> typer.Exit:
    if isinstance(msg, ScenarioError):
        typer.echo(f"error: {msg.source}: {len(msg.problems)} problem(s)", err=True)
        for path, value, reason in msg.problems:
            typer.echo(f"  {path}: {reason} (got {value!r})", err=True)
    else:
        typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


@app.command()
def models() -> None:
    """List the simulated models with their register maps' sources."""
    for m in MODELS:
        rm = load_register_map(m)
        tables = sorted({r.table for r in rm.registers})
        typer.echo(f"{m:20s} {rm.kind:6s} {'/'.join(tables):13s} {len(rm.registers):3d} values  {rm.title}")
        typer.echo(f"{'':20s} source: {rm.source['document']} — {rm.source['edition']}")
    typer.echo(f"{LINE_MODEL:20s} line   mqtt          JSON to factory/{{line_id}}/telemetry")


@app.command()
def meter(
    model: Annotated[str, typer.Option(help=f"one of {', '.join(MODELS)}")],
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port)")] = 5020,
    count: Annotated[int, typer.Option(help="number of devices, ids first-id..")] = 1,
    host: str = "127.0.0.1",
    first_id: int = 1,
    seed: int = 1,
    timeout_ratio: Annotated[float, typer.Option(help="share of requests left unanswered")] = 0.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
) -> None:
    """Serve COUNT simulated devices of one model on one Modbus TCP port."""
    if not 1 <= count <= 247 or not 1 <= first_id <= 248 - count:
        raise _fail(f"--count {count} from --first-id {first_id} does not fit in device ids 1..247")
    try:
        sim = ModbusSimulator(host=host, port=port)
        for i in range(count):
            sim.add_device(first_id + i, model, seed=seed + i, timeout_ratio=timeout_ratio)
        sim.start()
    except SimulatorError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"serving {count} × {model} on {host}:{sim.port} device ids {first_id}..{first_id + count - 1}"
    )
    try:
        _wait(duration)
    finally:
        sim.stop()


@app.command()
def rtu(
    model: Annotated[str, typer.Option(help=f"one of {', '.join(MODELS)}")],
    count: int = 1,
    first_id: int = 1,
    seed: int = 1,
    baudrate: int = 9600,
    parity: str = "N",
    stopbits: int = 1,
    link: Annotated[
        Path | None, typer.Option(help="also make this symlink to the pty (a stable path)")
    ] = None,
    duration: float | None = None,
) -> None:
    """Serve COUNT devices on a Modbus RTU pseudo-terminal; prints the tty path to open."""
    try:
        bus = RtuSimulator(baudrate=baudrate, parity=parity, stopbits=stopbits)
        for i in range(count):
            bus.add_device(first_id + i, model, seed=seed + i)
        bus.start()
    except SimulatorError as exc:
        raise _fail(str(exc)) from None
    try:
        if link is not None:
            if link.is_symlink():
                link.unlink()
            link.symlink_to(bus.port_path)
        typer.echo(
            f"serving {count} × {model} RTU on {bus.port_path}{f' ({link})' if link else ''} "
            f"{baudrate} {parity} {stopbits}; open it with parity N (a pty refuses parity)"
        )
        _wait(duration)
    finally:
        bus.stop()
        if link is not None and link.is_symlink():
            link.unlink()


@app.command()
def dlt645(
    count: Annotated[int, typer.Option(help="meters on the bus, addresses first-address, +1, …")] = 1,
    first_address: Annotated[int, typer.Option(help="address of the first meter (12 digits)")] = 1,
    edition: Annotated[str, typer.Option(help="2007 or 1997")] = "2007",
    transport: Annotated[
        str, typer.Option(help="pty (a serial port) or tcp (a transparent converter)")
    ] = "pty",
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port)")] = 0,
    baudrate: int = 2400,
    parity: str = "E",
    reply_delay_ms: Annotated[float, typer.Option(help="meter turnaround before a reply")] = 20.0,
    time_scale: Annotated[float, typer.Option(help="simulated seconds per real second (counters)")] = 1.0,
    silent: Annotated[
        list[int] | None, typer.Option(help="meter number (1-based) that never answers")
    ] = None,
    seed: int = 1,
    link: Annotated[Path | None, typer.Option(help="also make this symlink to the pty")] = None,
    duration: float | None = None,
) -> None:
    """Serve COUNT DL/T 645 meters on one pseudo-terminal or TCP port; prints where to connect."""
    from simulators.dlt645 import Dlt645Bus

    try:
        bus = Dlt645Bus(
            transport=transport, baudrate=baudrate, parity=parity, port=port, reply_delay_ms=reply_delay_ms
        )
        for i in range(count):
            m = bus.add_meter(
                f"{first_address + i:012d}", edition=edition, seed=seed + i, time_scale=time_scale
            )
            if i + 1 in (silent or []):
                m.inject("silence")
        bus.start()
    except SimulatorError as exc:
        raise _fail(str(exc)) from None
    try:
        where = bus.port_path if transport == "pty" else f"{bus.host}:{bus.port}"
        if link is not None and transport == "pty":
            if link.is_symlink():
                link.unlink()
            link.symlink_to(bus.port_path)
        addrs = f"{first_address:012d}..{first_address + count - 1:012d}"
        typer.echo(f"serving {count} DL/T 645-{edition} meter(s) {addrs} on {where} {baudrate} 8{parity}1")
        _wait(duration)
    finally:
        bus.stop()
        if link is not None and link.is_symlink():
            link.unlink()


@app.command()
def line(
    line_id: Annotated[str, typer.Option("--line", help="line id: topic factory/<line>/telemetry")],
    broker: Annotated[str, typer.Option(help="mqtt://host:port")] = _DEFAULT_BROKER,
    interval: float = 1.0,
    ideal_rate: float = 1200.0,
    reject_ratio: float = 0.02,
    time_scale: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1.0,
    seed: int = 1,
    duration: float | None = None,
) -> None:
    """Publish one line sensor's telemetry."""
    try:
        sensor = LineSensor(
            line_id,
            broker_url=broker,
            interval_s=interval,
            ideal_rate=ideal_rate,
            reject_ratio=reject_ratio,
            time_scale=time_scale,
            seed=seed,
        )
    except SimulatorError as exc:
        raise _fail(str(exc)) from None
    sensor.start()
    typer.echo(f"line {line_id} publishing to {sensor.topic} on {broker} every {interval} s")
    try:
        _wait(duration)
    finally:
        sensor.stop()


@app.command()
def hj212(
    mn: Annotated[str, typer.Option(help="the logger's MN")],
    password: Annotated[str, typer.Option(help="its PW")],
    host: str = "127.0.0.1",
    port: int = 9212,
    edition: Annotated[str, typer.Option(help="2017 or 2025")] = "2017",
    interval: Annotated[float, typer.Option(help="real seconds per minute packet once live")] = 60.0,
    backfill: Annotated[int, typer.Option(help="past minutes sent first")] = 0,
    corrupt_every: Annotated[int, typer.Option(help="every Nth packet leaves with a wrong CRC")] = 0,
    gap_every: Annotated[int, typer.Option(help="every Nth minute is lost on the link")] = 0,
    reply_timeout: float = 5.0,
    duration: float | None = None,
) -> None:
    """A CEMS data logger sending HJ 212 minute data (CN 2051) and hourly data (2061) to its upper system."""
    from datetime import datetime, timedelta

    with _shutdown_signal() as done:
        try:
            lg = Hj212DataLogger(
                host, port, mn=mn, password=password, edition=edition, reply_timeout_s=reply_timeout
            ).connect()
        except SimulatorError as exc:
            raise _fail(exc) from None
        typer.echo(f"data logger {mn} (HJ 212-{edition}) connected to {host}:{port}")
        minute = datetime.now(SHANGHAI).replace(second=0, microsecond=0) - timedelta(minutes=backfill)
        stop_at = None if duration is None else time.monotonic() + duration
        n = 0
        try:
            while not done.is_set() and (stop_at is None or time.monotonic() < stop_at):
                n += 1
                if corrupt_every and n % corrupt_every == 0:
                    lg.corrupt_next()
                if gap_every and n % gap_every == 0:
                    lg.skip_minute(minute)
                else:
                    lg.send_minute(minute)
                if minute.minute == 59:
                    lg.send_hour(minute - timedelta(minutes=59))
                minute += timedelta(minutes=1)
                if minute > datetime.now(SHANGHAI) - timedelta(minutes=1):
                    done.wait(interval)
        finally:
            lg.close()
        typer.echo(json.dumps(lg.summary()))


@app.command()
def opcua(
    line_id: Annotated[str, typer.Option("--line", help="line id: Objects/2:<line>/2:<machine>/…")] = "line1",
    machines: Annotated[str, typer.Option(help="comma-separated machine names")] = "filler,capper,labeller",
    host: str = "127.0.0.1",
    port: int = 4840,
    security: Annotated[str, typer.Option(help="none | basic256sha256")] = "none",
    user: Annotated[str | None, typer.Option(help="user name (anonymous access is then off)")] = None,
    password_env: Annotated[
        str, typer.Option(help="environment variable holding the user's password")
    ] = "PARKPULSE_SIM_OPCUA_PASSWORD",
    cert_dir: Annotated[
        Path | None, typer.Option(help="server certificate here; a gateway certificate pair is written too")
    ] = None,
    time_scale: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1.0,
    seed: int = 1,
    duration: float | None = None,
) -> None:
    """Serve a production line over OPC UA (machine state, good/reject counts, energy, ideal rate)."""
    users: dict[str, str] = {}
    if user:
        pw = os.environ.get(password_env)
        if not pw:
            raise _fail(f"--user {user}: set the password in the environment variable {password_env}")
        users[user] = pw
    try:
        if security not in ("none", "basic256sha256"):
            raise SimulatorError(f"--security must be none or basic256sha256 (got {security!r})")
        sim = OpcuaLine(
            line_id,
            tuple(m.strip() for m in machines.split(",") if m.strip()),
            host=host,
            port=port,
            security="none" if security == "none" else "basic256sha256",
            users=users,
            cert_dir=cert_dir,
            seed=seed,
            time_scale=time_scale,
        )
        if cert_dir is not None and security != "none" and not (cert_dir / "gateway-cert.der").exists():
            write_certificate(
                cert_dir / "gateway-cert.der",
                cert_dir / "gateway-key.pem",
                name="ParkPulse gateway",
                uri="urn:parkpulse:gateway",
                server=False,
            )
        sim.start()
    except SimulatorError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"OPC UA line {line_id} on {sim.url} ({security}{', user ' + user if user else ''})")
    try:
        _wait(duration)
    finally:
        sim.close()


@app.command()
def validate(scenario: Annotated[Path, typer.Option(help="scenario YAML")]) -> None:
    """Check a scenario's simulator part (models, transports, unit ids, faults)."""
    try:
        sc = load_scenario(scenario)
    except SimulatorError as exc:
        raise _fail(exc) from None
    devs = sc.devices()
    typer.echo(f"{scenario}: park {sc.park_id}, {len(sc.gateways)} gateways, {len(devs)} devices — ok")


@app.command()
def park(
    scenario: Annotated[Path, typer.Option(help="scenario YAML")],
    manifest: Annotated[Path, typer.Option(help="where to write the manifest JSON")],
    host: str = "127.0.0.1",
    broker: Annotated[str, typer.Option(help="broker the line sensors publish to")] = _DEFAULT_BROKER,
    duration: float | None = None,
) -> None:
    """Start every simulated device of a scenario, write the manifest, run until Ctrl-C/SIGTERM."""
    with _shutdown_signal() as done:
        try:
            sc = load_scenario(scenario)
            vp = Park(sc, host=host, broker_url=broker)
            vp.start()
        except SimulatorError as exc:
            raise _fail(exc) from None
        try:
            m = vp.manifest()
            write_manifest(m, manifest)
            typer.echo(f"park {sc.park_id}: {len(m['devices'])} devices running; manifest {manifest}")
            sys.stdout.flush()
            done.wait(duration)
        finally:
            vp.stop()
    typer.echo(f"park {sc.park_id}: stopped")


def main() -> None:
    level = os.environ.get("PARKPULSE_SIM_LOG", "WARNING").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        level = "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    app()


if __name__ == "__main__":
    main()
