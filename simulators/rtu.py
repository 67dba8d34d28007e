"""Modbus RTU simulator reachable through a serial device: a pseudo-terminal.

    rtu = RtuSimulator(baudrate=9600, parity="N", stopbits=1)
    rtu.add_device(device_id=3, model="chint-dtsu666", seed=3)
    rtu.start()
    rtu.port_path            # e.g. /dev/pts/7 — open it with pyserial / a pymodbus serial client
    rtu.stop()

How it is wired: two pseudo-terminal pairs. The pymodbus serial server opens the slave side of
the first pair (it needs a path, and a pty master has none); the slave side of the second pair is
`port_path`, the "RS-485 port" a gateway opens. A bridge in the server's event loop copies bytes
between the two masters.

What a pty cannot do: it has no baud rate, parity or stop bits. Baud rate and stop bits are
accepted and ignored, so a client with the wrong baud rate still talks fine (on a real bus it
would read garbage). Parity is worse: Linux ptys refuse PARENB (tcsetattr fails with EINVAL),
so a client must open `port_path` with parity "N" whatever `parity` says — the configured parity
only counts in the emulated line timing. There is no inter-frame silence either. With `emulate_timing=True` (default)
the bridge delays every chunk by its transmission time at the configured line settings
(start bit + data bits + parity bit + stop bits per byte) and treats the bus as one half-duplex
line, so request latency and bus occupancy are realistic and a master that talks while a slave
answers destroys both frames (`collisions`); the 3.5-character gap between frames is not
signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import Callable
from types import TracebackType

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimDevice

from simulators._host import DeviceSet, ServerHost
from simulators.errors import SimulatorError

__all__ = ["RtuSimulator"]

_PARITIES = {"N": 0, "E": 1, "O": 1, "M": 1, "S": 1}


class RtuSimulator(DeviceSet):
    """A Modbus RTU server with many simulated devices on one pseudo-terminal "bus"."""

    def __init__(
        self,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        emulate_timing: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(baudrate, int) or baudrate <= 0:
            raise SimulatorError(f"baudrate must be a positive integer (got {baudrate!r})")
        if parity not in _PARITIES:
            raise SimulatorError(f"parity must be one of {sorted(_PARITIES)} (got {parity!r})")
        if stopbits not in (1, 2):
            raise SimulatorError(f"stopbits must be 1 or 2 (got {stopbits!r})")
        if bytesize not in (7, 8):
            raise SimulatorError(f"bytesize must be 7 or 8 (got {bytesize!r})")
        self.baudrate, self.parity, self.stopbits, self.bytesize = baudrate, parity, stopbits, bytesize
        self.emulate_timing = emulate_timing
        self.collisions = 0
        self._clock = clock
        self._fds: list[int] = []
        self._server_path = ""
        self.port_path = ""
        self._host = ServerHost("rtu", self._make_server, silent_unknown=True)
        self._host.extra_tasks.append(self._bridge)

    @property
    def char_time_s(self) -> float:
        """Seconds one character takes on the line at these settings."""
        bits = 1 + self.bytesize + _PARITIES[self.parity] + self.stopbits
        return bits / self.baudrate

    def _open_ptys(self) -> None:
        a_master, a_slave = os.openpty()
        b_master, b_slave = os.openpty()
        for fd in (a_slave, b_slave):
            tty.setraw(fd)  # no echo, no line discipline, before anyone opens the paths
        for fd in (a_master, b_master):
            os.set_blocking(fd, False)
        self._fds = [a_master, a_slave, b_master, b_slave]
        self._server_path = os.ttyname(a_slave)
        self.port_path = os.ttyname(b_slave)

    async def _make_server(self, devices: list[SimDevice]) -> ModbusSerialServer:
        return ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            port=self._server_path,
            baudrate=self.baudrate,
            parity="N",  # a pty refuses PARENB (EINVAL); parity only shapes the line timing
            stopbits=self.stopbits,
            bytesize=self.bytesize,
            ignore_missing_devices=True,
        )

    async def _bridge(self) -> None:
        """Copy bytes between the two pty masters; with emulate_timing, as one half-duplex line.

        Each chunk occupies the line for its transmission time and is delivered when it has
        been "sent". RS-485 is half-duplex: when the master starts talking while a slave's reply
        is still on the line (a gateway polling two devices of one bus at once), both frames are
        destroyed — delivered garbled so CRCs fail — and `collisions` counts it.
        """
        loop = asyncio.get_running_loop()
        a_master, _, b_master, _ = self._fds
        busy_until = 0.0
        sender = -1
        pending: list[tuple[float, int, bytes, asyncio.TimerHandle]] = []

        def deliver(dst: int, data: bytes) -> None:
            with contextlib.suppress(OSError):
                os.write(dst, data)

        def garble(data: bytes) -> bytes:
            return bytes(b ^ 0x5A for b in data)

        def pump(src: int, dst: int) -> None:
            nonlocal busy_until, sender, pending
            try:
                data = os.read(src, 4096)
            except OSError:  # BlockingIOError, EIO while no client has the tty open
                return
            if not data:
                return
            if not self.emulate_timing:
                deliver(dst, data)
                return
            now = loop.time()
            pending = [p for p in pending if p[0] > now]
            if busy_until > now and sender != src:
                self.collisions += 1
                for when, pdst, pdata, handle in pending:
                    handle.cancel()
                    loop.call_at(when, deliver, pdst, garble(pdata))
                done = now + len(data) * self.char_time_s
                loop.call_at(done, deliver, dst, garble(data))
                pending = []
                busy_until = max(busy_until, done)
                return
            start = max(now, busy_until)
            done = start + len(data) * self.char_time_s
            pending.append((done, dst, data, loop.call_at(done, deliver, dst, data)))
            busy_until, sender = done, src

        loop.add_reader(a_master, pump, a_master, b_master)
        loop.add_reader(b_master, pump, b_master, a_master)
        try:
            await asyncio.Event().wait()
        finally:
            loop.remove_reader(a_master)
            loop.remove_reader(b_master)

    def start(self) -> RtuSimulator:
        self._open_ptys()
        try:
            self._host.start()
        except BaseException:
            self._close_fds()
            raise
        return self

    def _close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def stop(self) -> None:
        try:
            self._host.stop()
        finally:
            self._close_fds()

    def __enter__(self) -> RtuSimulator:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
