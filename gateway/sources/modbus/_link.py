"""One Modbus connection (a TCP endpoint or a serial port) shared by the devices behind it.

Requests on one link go one at a time (a lock), with the inter-frame gap after each reply;
different links run concurrently. A transport failure (timeout, lost connection) and an
exception reply from the device are reported as different errors.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.sources.modbus._config import RtuBus, TcpBus

__all__ = ["ExceptionReply", "Link", "TransportError"]


class TransportError(Exception):
    """No usable answer: timeout, connection refused or lost, garbled frame."""


class ExceptionReply(Exception):
    """The device answered with a Modbus exception (e.g. 2 illegal data address)."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"exception reply code {code}")


class Link:
    def __init__(self, bus: TcpBus | RtuBus, host: str | None = None, port: int | None = None) -> None:
        self.bus = bus
        self.key = f"{bus.name}:{host}:{port}" if isinstance(bus, TcpBus) else f"{bus.name}:{bus.port}"
        self.lock = asyncio.Lock()
        self.gap_s = bus.gap_s() if isinstance(bus, RtuBus) else bus.inter_frame_gap_ms / 1000.0
        self.serial = isinstance(bus, RtuBus)
        self._host = host
        self._port = port
        self._client: Any = None
        self._last_end = 0.0
        self.connects = 0

    def _make(self, timeout: float) -> Any:
        b = self.bus
        if isinstance(b, RtuBus):
            return AsyncModbusSerialClient(
                b.port,
                baudrate=b.baudrate,
                parity=b.parity,
                stopbits=b.stopbits,
                bytesize=b.bytesize,
                timeout=timeout,
                retries=0,
                reconnect_delay=0,
                name=f"rtu-{b.name}",
            )
        return AsyncModbusTcpClient(
            self._host or "127.0.0.1",
            port=self._port or 502,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            name=f"tcp-{b.name}",
        )

    async def _ensure(self, timeout: float) -> Any:
        c = self._client
        if c is None:
            c = self._client = self._make(timeout)
        if not c.connected:
            try:
                ok = await asyncio.wait_for(c.connect(), timeout + 1.0)
            except (TimeoutError, OSError, ModbusException) as exc:
                raise TransportError(f"cannot connect to {self.key}: {exc}") from None
            if not ok:
                raise TransportError(f"cannot connect to {self.key}")
            self.connects += 1
        c.comm_params.timeout_connect = timeout
        return c

    async def read(self, function: str, address: int, count: int, unit: int, timeout: float) -> list[int]:
        """Read registers. Raises TransportError or ExceptionReply. Caller holds `lock`."""
        if self.gap_s:
            wait = self._last_end + self.gap_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            c = await self._ensure(timeout)
            if function == "holding":
                rr = await c.read_holding_registers(address, count=count, device_id=unit)
            else:
                rr = await c.read_input_registers(address, count=count, device_id=unit)
        except ModbusException as exc:
            raise TransportError(str(exc).strip() or type(exc).__name__) from None
        except (TimeoutError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._last_end = time.monotonic()
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            if code is None:
                raise TransportError(f"error reply {rr}")
            raise ExceptionReply(int(code))
        regs = list(rr.registers)
        if len(regs) < count:
            raise TransportError(f"short reply: {len(regs)} of {count} registers")
        return regs

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
