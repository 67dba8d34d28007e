"""Modbus TCP simulator: one pymodbus server hosting many device ids on one port.

sim = ModbusSimulator(host="127.0.0.1", port=0)
dev = sim.add_device(device_id=1, model="eastron-sdm630", seed=1)
with sim:                      # or sim.start() ... sim.stop()
    sim.port                   # the bound port
    dev.truth()                # catalogue metric -> value served now
    dev.inject("timeout")      # no reply from this id until dev.inject(None)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimDevice

from simulators._host import MODELS, DeviceSet, ServerHost
from simulators.device import FAULTS, SimulatedDevice
from simulators.errors import SimulatorError

__all__ = ["FAULTS", "MODELS", "ModbusSimulator", "SimulatedDevice"]


class ModbusSimulator(DeviceSet):
    """A Modbus TCP server with many simulated devices, run in a background thread."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise SimulatorError(f"port must be 0..65535 (got {port!r})")
        self.host = host
        self._requested_port = port
        self._clock = clock
        self._host = ServerHost(f"tcp-{host}:{port}", self._make_server, silent_unknown=False)

    async def _make_server(self, devices: list[SimDevice]) -> ModbusTcpServer:
        return ModbusTcpServer(
            devices, address=(self.host, self._requested_port), ignore_missing_devices=True
        )

    @property
    def port(self) -> int:
        """The TCP port actually bound (valid after start())."""
        server = self._host.server
        if server is None or server.transport is None:
            raise SimulatorError("the simulator is not started")
        return int(server.transport.sockets[0].getsockname()[1])

    def start(self) -> ModbusSimulator:
        self._host.start()
        return self

    def stop(self) -> None:
        self._host.stop()

    def __enter__(self) -> ModbusSimulator:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
