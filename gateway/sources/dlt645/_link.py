"""One DL/T 645 line: a serial port (RS-485) or a TCP connection to a serial-to-Ethernet
converter in transparent mode. One request at a time (the caller holds `lock`), a silence of
`inter_frame_gap_ms` after each exchange, the reply's end found by its length byte."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import serial

from gateway.sources.dlt645._config import SerialBus, TcpBus
from gateway.sources.dlt645._errors import FrameError, TransportError
from gateway.sources.dlt645._frame import Frame, find_frame

__all__ = ["Link"]


class Link:
    def __init__(self, bus: SerialBus | TcpBus) -> None:
        self.bus = bus
        self.key = (
            f"{bus.name}:{bus.port}" if isinstance(bus, SerialBus) else f"{bus.name}:{bus.host}:{bus.port}"
        )
        self.lock = asyncio.Lock()
        self.gap_s = bus.inter_frame_gap_ms / 1000.0
        self.preamble = bus.preamble
        self.connects = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self._serial: Any = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._arrived = asyncio.Event()
        self._last_end = 0.0

    # -- connection ----------------------------------------------------------------------------

    async def _ensure(self, timeout: float) -> None:
        if isinstance(self.bus, SerialBus):
            if self._serial is None:
                self._open_serial(self.bus)
            return
        if self._writer is None or self._writer.is_closing():
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.bus.host, self.bus.port), timeout
                )
            except (TimeoutError, OSError) as exc:
                self._reader = self._writer = None
                raise TransportError(f"cannot connect to {self.key}: {type(exc).__name__}: {exc}") from None
            self.connects += 1

    def _open_serial(self, b: SerialBus) -> None:
        try:
            ser = serial.Serial(
                b.port,
                baudrate=b.baudrate,
                parity={"E": serial.PARITY_EVEN, "N": serial.PARITY_NONE, "O": serial.PARITY_ODD}[b.parity],
                stopbits=b.stopbits,
                bytesize=8,
                timeout=0,
                write_timeout=0,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(
                f"cannot open {b.port} ({b.baudrate} 8{b.parity}{b.stopbits}): {exc}"
            ) from None
        self._serial = ser
        self.connects += 1
        asyncio.get_running_loop().add_reader(ser.fileno(), self._on_serial_data)

    def _on_serial_data(self) -> None:
        try:
            data = os.read(self._serial.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._buf += data
            self.bytes_in += len(data)
        self._arrived.set()

    async def _write(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self._serial is not None:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self._serial.fileno(), view)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                    continue
                view = view[n:]
            return
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def _read_some(self, deadline: float) -> None:
        """Wait for more bytes until `deadline` (monotonic); TimeoutError when none came."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if self._serial is not None:
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), left)
            return
        assert self._reader is not None
        chunk = await asyncio.wait_for(self._reader.read(4096), left)
        if not chunk:
            raise ConnectionResetError("connection closed by the converter")
        self._buf += chunk
        self.bytes_in += len(chunk)

    # -- one exchange --------------------------------------------------------------------------

    async def transact(self, request: bytes, timeout: float, expect_reply: bool = True) -> Frame | None:
        """Send one request frame and return the reply frame. Raises TransportError (FrameError for garbled bytes)."""
        wait = self._last_end + self.gap_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await self._ensure(timeout)
            self._buf.clear()  # whatever arrived late belongs to an earlier exchange
            await self._write(request)
            if not expect_reply:
                return None
            return await self._await_reply(time.monotonic() + timeout)
        except TimeoutError:
            raise TransportError(f"no reply within {timeout:g} s on {self.key}") from None
        except FrameError:
            raise
        except OSError as exc:
            self.close()
            raise TransportError(f"{self.key}: {type(exc).__name__}: {exc}") from None
        finally:
            self._last_end = time.monotonic()

    async def _await_reply(self, deadline: float) -> Frame:
        while True:
            frame, used = find_frame(self._buf)
            if frame is not None:
                del self._buf[:used]
                if frame.is_reply:  # an RS-485 adapter may echo the request: skip it
                    return frame
                continue
            del self._buf[:used]
            await self._read_some(deadline)

    def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = self._reader = None
