"""`parkpulse-sim`: run simulated meters, RTU buses, line sensors or a whole virtual park.

Every serving command runs until Ctrl-C or SIGTERM (or `--duration` seconds) and stops cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from simulators.errors import ScenarioError, SimulatorError
from simulators.modbus import MODELS, ModbusSimulator
from simulators.mqtt_sensors import LineSensor
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
