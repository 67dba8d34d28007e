"""Runs a pymodbus 3 server for a set of SimulatedDevices in a background thread with its own loop.

Recent pymodbus 3 releases model a server's data as `SimDevice`s with an async `action` called on every
access; the action writes the device's current image into the block and answers exceptions.
Silence (a timeout) is produced by raising NoSuchIdException with `ignore_missing_devices=True`,
which makes the request handler drop the request without a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException

from simulators.device import SimulatedDevice, Table
from simulators.errors import SimulatorError

try:
    from pymodbus.simulator import DataType, SimData, SimDevice
except ImportError as exc:  # older pymodbus 3 releases have no SimDevice runtime
    import pymodbus

    raise SimulatorError(
        f"the simulators need a pymodbus 3 release with pymodbus.simulator.SimDevice (3.16 is known good); installed: {pymodbus.__version__}"
    ) from exc

__all__ = ["MODELS", "DeviceSet", "ServerHost", "build_catch_all", "build_sim_device"]

log = logging.getLogger("simulators")

_FC_TABLE: dict[int, Table] = {
    3: "holding",
    4: "input",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
}


def build_sim_device(dev: SimulatedDevice) -> SimDevice:
    """A pymodbus SimDevice whose blocks cover the device's register map."""

    def segments(table: Table) -> list[SimData]:
        blocks = dev.blocks(table)
        if not blocks:
            return [SimData(0, count=1, datatype=DataType.INVALID)]
        return [SimData(start, count=count, values=0, datatype=DataType.REGISTERS) for start, count in blocks]

    async def action(
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS  # measured values are read-only
        outcome = dev.handle_read(table, address, count)
        if outcome.silent:
            raise NoSuchIdException(f"simulated timeout of device {dev.device_id}")
        if outcome.exception is not None:
            return (
                ExcCodes(outcome.exception)
                if outcome.exception in ExcCodes._value2member_map_
                else ExcCodes.DEVICE_FAILURE
            )
        assert outcome.registers is not None
        offset = address - start_address
        registers[offset : offset + count] = outcome.registers
        return None

    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    return SimDevice(
        dev.device_id,
        simdata=(bits, list(bits), segments("holding"), segments("input")),
        action=action,
    )


def build_catch_all(silent: bool) -> SimDevice:
    """Device id 0 = "every id not configured": silence (RTU) or exception 0x0B (TCP gateway)."""

    async def action(
        fc: int, start: int, address: int, count: int, regs: list[int], values: Any
    ) -> ExcCodes | None:
        if silent:
            raise NoSuchIdException("no such device on this bus")
        return ExcCodes.GATEWAY_NO_RESPONSE

    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    regs = [SimData(0, count=65536, values=0, datatype=DataType.REGISTERS)]
    return SimDevice(0, simdata=(bits, list(bits), regs, list(regs)), action=action)


class ServerHost:
    """One asyncio loop in one named thread running one pymodbus server.

    `factory(sim_devices)` is awaited inside the loop and must return a started-able pymodbus
    server (`serve_forever(background=True)` is called here).
    """

    def __init__(
        self, name: str, factory: Callable[[list[SimDevice]], Awaitable[Any]], silent_unknown: bool
    ) -> None:
        self.name = name
        self._factory = factory
        self._silent_unknown = silent_unknown
        self._devices: dict[int, SimulatedDevice] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.server: Any = None
        self.extra_tasks: list[Callable[[], Coroutine[Any, Any, None]]] = []

    @property
    def devices(self) -> dict[int, SimulatedDevice]:
        return self._devices

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add(self, dev: SimulatedDevice) -> None:
        if dev.device_id in self._devices:
            raise SimulatorError(f"device_id {dev.device_id} is already on this server")
        self._devices[dev.device_id] = dev
        if self.running and self._loop is not None:
            done = threading.Event()

            def attach() -> None:
                from pymodbus.simulator.simruntime import SimRuntime  # internal, stable since 3.12

                try:
                    self.server.context.devices[dev.device_id] = SimRuntime(build_sim_device(dev))
                finally:
                    done.set()

            self._loop.call_soon_threadsafe(attach)
            done.wait(5.0)

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise SimulatorError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"parkpulse-sim-{self.name}", daemon=True)
        self._ready.clear()
        self._error = None
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SimulatorError(f"{self.name}: server did not start within {timeout} s")
        error = self._startup_error()
        if error is not None:
            self._thread.join(timeout)
            self._thread = None
            hint = " (is the address in use or not local?)" if "listen" in str(error) else ""
            raise SimulatorError(f"{self.name}: server failed to start: {error}{hint}") from error

    def _startup_error(self) -> BaseException | None:
        # set by the server thread; read through a call so start()'s own reset does not narrow it to None
        return self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start()
            self._error = self._error or exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        sim_devices = [build_sim_device(d) for d in self._devices.values()]
        sim_devices.append(build_catch_all(self._silent_unknown))
        try:
            self.server = await self._factory(sim_devices)
            await self.server.serve_forever(background=True)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        try:
            async with asyncio.TaskGroup() as tg:
                for i, make in enumerate(self.extra_tasks):
                    tg.create_task(make(), name=f"{self.name}-extra-{i}")
                self._ready.set()
                await self._stop.wait()
                raise _Stop
        except* _Stop:
            pass
        finally:
            with contextlib.suppress(Exception):
                await self.server.shutdown()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SimulatorError(f"{self.name}: server thread did not stop within {timeout} s")
        self._thread = None


class _Stop(Exception):
    """Internal: ends the task group on stop()."""


MODELS: tuple[str, ...] = (
    "eastron-sdm630",
    "acrel-adl400",
    "chint-dtsu666",
    "schneider-iem3255",
    "cems-analyser",
    "generic-meter",
)


class DeviceSet:
    """The devices a simulator serves: shared by the TCP and the RTU simulator."""

    _host: ServerHost
    _clock: Callable[[], float]

    def add_device(
        self, device_id: int, model: str, seed: int = 0, params: dict[str, Any] | None = None, **sim: Any
    ) -> SimulatedDevice:
        """Add a device (before or after start). `params`/keyword args are the scenario's `sim:` keys."""
        if model not in MODELS:
            raise SimulatorError(f"unknown model {model!r} (known: {list(MODELS)})")
        dev = SimulatedDevice(
            device_id, model, seed=seed, params={**(params or {}), **sim}, clock=self._clock
        )
        self._host.add(dev)
        return dev

    @property
    def devices(self) -> dict[int, SimulatedDevice]:
        return self._host.devices

    def device(self, device_id: int) -> SimulatedDevice:
        try:
            return self._host.devices[device_id]
        except KeyError:
            raise SimulatorError(f"no device {device_id} on this simulator") from None
