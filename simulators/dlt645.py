"""DL/T 645 electricity meters (2007 and 1997 editions) on one pseudo-terminal or TCP port.

    bus = Dlt645Bus(transport="pty", baudrate=2400, parity="E")   # or transport="tcp", port=0
    m = bus.add_meter("000012345678", edition="2007", seed=1, rated_power_kw=80)
    bus.start()
    bus.port_path        # /dev/pts/N (pty) — or bus.port (tcp)
    m.truth()            # {"elec_import_kwh": 1234.56, ...} as served now
    m.inject("silence")  # "abnormal" (error_word=0x02), "bad_checksum", None
    bus.stop()

Like the RTU simulator, a pty has no line: baud rate and parity only shape the emulated timing
(with `emulate_timing`, a request is "received" after its wire time at these settings, the meter
answers `reply_delay_ms` later and the reply arrives after its own wire time); clients open the
pty with parity N (Linux ptys refuse PARENB). Over TCP the bus is a transparent serial-to-Ethernet
converter: every connection reaches every meter, with the same timing.

The simulator keeps its own codec and data table (it imports nothing of ParkPulse): a stand-in
written from the standard, not from the gateway's code. Counters rise in whole hundredths of a
kWh, per tariff, so the tariff counters always sum to the total.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from simulators.errors import SimulatorError

__all__ = ["DATA_ITEMS", "TARIFF_SCHEDULE", "Dlt645Bus", "Dlt645Meter", "bcd_encode", "frame"]

# DI -> (metric, digits before the point, decimals, signed, trailing bytes), from the standard's tables
_Item = tuple[str, int, int, bool, int]
DATA_ITEMS: dict[str, dict[str, _Item]] = {
    "2007": {
        "00000000": ("elec_combined_kwh", 6, 2, True, 0),
        "00010000": ("elec_import_kwh", 6, 2, False, 0),
        "00010100": ("elec_import_kwh_sharp", 6, 2, False, 0),
        "00010200": ("elec_import_kwh_peak", 6, 2, False, 0),
        "00010300": ("elec_import_kwh_flat", 6, 2, False, 0),
        "00010400": ("elec_import_kwh_valley", 6, 2, False, 0),
        "00020000": ("elec_export_kwh", 6, 2, False, 0),
        "00020100": ("elec_export_kwh_sharp", 6, 2, False, 0),
        "00020200": ("elec_export_kwh_peak", 6, 2, False, 0),
        "00020300": ("elec_export_kwh_flat", 6, 2, False, 0),
        "00020400": ("elec_export_kwh_valley", 6, 2, False, 0),
        "00030000": ("elec_reactive_kvarh", 6, 2, True, 0),
        "02010100": ("voltage_l1_v", 3, 1, False, 0),
        "02010200": ("voltage_l2_v", 3, 1, False, 0),
        "02010300": ("voltage_l3_v", 3, 1, False, 0),
        "02020100": ("current_l1_a", 3, 3, True, 0),
        "02020200": ("current_l2_a", 3, 3, True, 0),
        "02020300": ("current_l3_a", 3, 3, True, 0),
        "02030000": ("active_power_kw", 2, 4, True, 0),
        "02040000": ("reactive_power_kvar", 2, 4, True, 0),
        "02050000": ("apparent_power_kva", 2, 4, True, 0),
        "02060000": ("power_factor", 1, 3, True, 0),
        "02800002": ("frequency_hz", 2, 2, False, 0),
        "02800004": ("demand_kw", 2, 4, True, 0),
        "01010000": ("max_demand_kw", 2, 4, False, 5),
    },
    "1997": {
        "9010": ("elec_import_kwh", 6, 2, False, 0),
        "9011": ("elec_import_kwh_sharp", 6, 2, False, 0),
        "9012": ("elec_import_kwh_peak", 6, 2, False, 0),
        "9013": ("elec_import_kwh_flat", 6, 2, False, 0),
        "9014": ("elec_import_kwh_valley", 6, 2, False, 0),
        "9020": ("elec_export_kwh", 6, 2, False, 0),
        "9110": ("elec_reactive_kvarh", 6, 2, False, 0),
        "B611": ("voltage_l1_v", 4, 0, False, 0),
        "B612": ("voltage_l2_v", 4, 0, False, 0),
        "B613": ("voltage_l3_v", 4, 0, False, 0),
        "B621": ("current_l1_a", 2, 2, False, 0),
        "B622": ("current_l2_a", 2, 2, False, 0),
        "B623": ("current_l3_a", 2, 2, False, 0),
        "B630": ("active_power_kw", 2, 4, False, 0),
        "B640": ("reactive_power_kvar", 2, 2, False, 0),
        "B650": ("power_factor", 1, 3, False, 0),
        "A010": ("max_demand_kw", 2, 4, False, 0),
    },
}
_BLOCKS: dict[str, dict[str, list[str]]] = {
    "2007": {
        "0001FF00": ["00010000", "00010100", "00010200", "00010300", "00010400"],
        "0002FF00": ["00020000", "00020100", "00020200", "00020300", "00020400"],
        "0201FF00": ["02010100", "02010200", "02010300"],
        "0202FF00": ["02020100", "02020200", "02020300"],
    },
    "1997": {"901F": ["9010", "9011", "9012", "9013", "9014"]},
}
# control codes per edition: read, read subsequent, read address
_CODES = {"2007": (0x11, 0x12, 0x13), "1997": (0x01, 0x02, None)}
_NO_DATA = {"2007": 0x02, "1997": 0x02}  # 2007 bit 1 无请求数据; 1997 bit 1 数据标识错
_TARIFFS = ("sharp", "peak", "flat", "valley")
# hour ranges -> tariff (an example schedule, not any province's tariff)
TARIFF_SCHEDULE: list[tuple[int, int, str]] = [
    (0, 8, "valley"),
    (8, 10, "flat"),
    (10, 12, "sharp"),
    (12, 17, "peak"),
    (17, 19, "flat"),
    (19, 22, "peak"),
    (22, 24, "valley"),
]
_FAULTS = (None, "silence", "abnormal", "bad_checksum")


def bcd_encode(value: float, digits: int, decimals: int, signed: bool) -> bytes:
    """Packed BCD of `value` in digits.decimals, least significant byte first; sign in the top bit."""
    nbytes = (digits + decimals + 1) // 2
    n = round(abs(value) * 10**decimals)
    limit = 10 ** (2 * nbytes) - 1 if not signed else 8 * 10 ** (2 * nbytes - 1) - 1
    n = min(n, limit)
    raw = bytearray(bytes.fromhex(f"{n:0{2 * nbytes}d}"))
    if signed and value < 0 and n:
        raw[0] |= 0x80
    return bytes(reversed(raw))


def _addr_wire(address: str) -> bytes:
    return bytes(reversed(bytes.fromhex(address)))


def frame(address: str, control: int, data: bytes, preamble: int = 0, corrupt: bool = False) -> bytes:
    """One frame: FE… 68 A0..A5 68 C L DATA(+33H) CS 16."""
    body = bytearray([0x68, *_addr_wire(address), 0x68, control, len(data)])
    body += bytes((b + 0x33) & 0xFF for b in data)
    body.append((sum(body) + (1 if corrupt else 0)) & 0xFF)
    body.append(0x16)
    return b"\xfe" * preamble + bytes(body)


@dataclass(slots=True)
class _Request:
    address: str
    control: int
    data: bytes


def _parse(buf: bytearray) -> tuple[_Request | None, int]:
    """The first whole frame in buf (FE and noise skipped) and the bytes used; bad checksums are dropped."""
    i = buf.find(b"\x68")
    if i < 0:
        return None, len(buf)
    if len(buf) - i < 10:
        return None, i
    if buf[i + 7] != 0x68:
        return None, i + 1
    end = i + 12 + buf[i + 9]
    if len(buf) < end:
        return None, i
    raw = bytes(buf[i:end])
    if sum(raw[:-2]) & 0xFF != raw[-2] or raw[-1] != 0x16:
        return None, end
    data = bytes((b - 0x33) & 0xFF for b in raw[10:-2])
    return _Request(bytes(reversed(raw[1:7])).hex().upper(), raw[8], data), end


class Dlt645Meter:
    """One meter: rising counters per tariff, instantaneous values, faults."""

    def __init__(
        self,
        address: str,
        edition: str = "2007",
        seed: int = 1,
        rated_power_kw: float = 50.0,
        import_kwh: float = 1000.0,
        export_kw: float = 0.0,
        time_scale: float = 1.0,
        max_data_len: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(address) != 12 or not address.isdigit():
            raise SimulatorError(f"address must be 12 decimal digits (got {address!r})")
        if edition not in DATA_ITEMS:
            raise SimulatorError(f"edition must be 2007 or 1997 (got {edition!r})")
        if not 8 <= max_data_len <= 200:
            raise SimulatorError(f"max_data_len must be 8..200 (got {max_data_len!r})")
        self.address, self.edition = address, edition
        self.rated_power_kw, self.export_kw, self.time_scale = rated_power_kw, export_kw, time_scale
        self.max_data_len = max_data_len
        self.fault: str | None = None
        self.error_word = 0x04
        self.reads = 0
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._t0 = clock()
        self._last = self._t0
        # counters in hundredths of a kWh (kvarh): per tariff and direction, totals derived
        start = round(import_kwh * 100)
        self._imp = {t: start // 4 + (start % 4 if t == "valley" else 0) for t in _TARIFFS}
        self._exp = dict.fromkeys(_TARIFFS, 0)
        self._kvarh = round(import_kwh * 40)
        self._rest = [0.0, 0.0, 0.0]
        self._power = rated_power_kw * 0.6
        self._max_demand = self._power
        self._frozen: dict[str, float] | None = None
        self._pending: dict[bytes, list[bytes]] = {}

    # -- physics -----------------------------------------------------------------------------

    def tariff(self, t: float | None = None) -> str:
        hour = time.localtime(self._sim_time(t)).tm_hour
        return next(name for lo, hi, name in TARIFF_SCHEDULE if lo <= hour < hi)

    def _sim_time(self, t: float | None = None) -> float:
        now = self._clock() if t is None else t
        return self._t0 + (now - self._t0) * self.time_scale

    def _advance(self) -> None:
        now = self._clock()
        dt_h = max(0.0, now - self._last) * self.time_scale / 3600.0
        self._last = now
        if self._frozen is not None or dt_h <= 0:
            return
        load = 0.45 + 0.4 * (0.5 + 0.5 * math.sin(self._sim_time(now) / 3600.0))
        self._power = self.rated_power_kw * min(1.0, load + self._rng.uniform(-0.05, 0.05))
        self._max_demand = max(self._max_demand, self._power)
        tariff = self.tariff(now)
        for k, (rate, book) in enumerate(((self._power, self._imp), (self.export_kw, self._exp))):
            self._rest[k] += rate * dt_h * 100
            whole = int(self._rest[k])
            self._rest[k] -= whole
            book[tariff] += whole
        self._rest[2] += self._power * 0.426 * dt_h * 100
        whole = int(self._rest[2])
        self._rest[2] -= whole
        self._kvarh += whole

    def _values(self) -> dict[str, float]:
        p, pf, u = self._power, 0.92, 230.0
        v: dict[str, float] = {
            "elec_import_kwh": sum(self._imp.values()) / 100,
            "elec_export_kwh": sum(self._exp.values()) / 100,
            "elec_reactive_kvarh": self._kvarh / 100,
            "voltage_l1_v": u,
            "voltage_l2_v": u + 1.2,
            "voltage_l3_v": u - 0.8,
            "active_power_kw": p,
            "reactive_power_kvar": p * math.tan(math.acos(pf)),
            "apparent_power_kva": p / pf,
            "power_factor": pf,
            "frequency_hz": 50.0,
            "demand_kw": p,
            "max_demand_kw": self._max_demand,
        }
        for ph, k in (("l1", 1.0), ("l2", 1.01), ("l3", 0.99)):
            v[f"current_{ph}_a"] = p * 1000 / (3 * u * pf) * k
        for t in _TARIFFS:
            v[f"elec_import_kwh_{t}"] = self._imp[t] / 100
            v[f"elec_export_kwh_{t}"] = self._exp[t] / 100
        v["elec_combined_kwh"] = v["elec_import_kwh"] + v["elec_export_kwh"]
        if self._frozen:
            v.update(self._frozen)
        return v

    def _served(self) -> dict[str, tuple[bytes, float]]:
        """Every data item of this edition: its bytes and the value they say."""
        vals = self._values()
        out: dict[str, tuple[bytes, float]] = {}
        for di, (metric, ip, dec, signed, skip) in DATA_ITEMS[self.edition].items():
            raw = bcd_encode(vals[metric], ip, dec, signed)
            shown = round(vals[metric], dec) if abs(vals[metric]) < 10**ip else 10**ip - 10**-dec
            out[di] = (raw + bytes(skip), shown)
        return out

    def truth(self) -> dict[str, float]:
        """The values as served now, by catalogue metric name (rounded as the formats round them)."""
        with self._lock:
            self._advance()
            return {DATA_ITEMS[self.edition][di][0]: v for di, (_, v) in self._served().items()}

    def freeze(self, values: dict[str, float] | None = None) -> None:
        """Hold every value (and optionally set some); counters stop rising."""
        with self._lock:
            self._advance()
            self._frozen = dict(values or {})

    def unfreeze(self) -> None:
        with self._lock:
            self._frozen = None
            self._last = self._clock()

    def inject(self, fault: str | None, error_word: int = 0x04) -> None:
        """silence: no reply; abnormal: an abnormal reply with `error_word`; bad_checksum: replies with a wrong CS."""
        if fault not in _FAULTS:
            raise SimulatorError(f"fault must be one of {_FAULTS} (got {fault!r})")
        self.fault, self.error_word = fault, error_word

    # -- protocol ----------------------------------------------------------------------------

    def matches(self, address: str) -> bool:
        return all(a == b or a == "AA" for a, b in zip(_pairs(address), _pairs(self.address), strict=True))

    def answer(self, req: _Request) -> bytes | None:
        """The reply frame to a request addressed to this meter (None: stay silent)."""
        if self.fault == "silence":
            return None
        read, follow, read_addr = _CODES[self.edition]
        with self._lock:
            self.reads += 1
            self._advance()
            if req.control == read_addr and read_addr is not None:
                return self._reply(read_addr | 0x80, _addr_wire(self.address))
            if self.fault == "abnormal" and req.control in (read, follow):
                return self._reply(req.control | 0xC0, bytes([self.error_word]))
            if req.control == read:
                return self._read(req.data, read)
            if req.control == follow:
                return self._follow(req.data, follow)
        return self._reply(req.control | 0xC0, bytes([0x01]))

    def _reply(self, control: int, data: bytes) -> bytes:
        return frame(self.address, control, data, corrupt=self.fault == "bad_checksum")

    def _payload(self, di: str) -> bytes | None:
        served = self._served()
        if di in served:
            return served[di][0]
        block = _BLOCKS[self.edition].get(di)
        return None if block is None else b"".join(served[x][0] for x in block)

    def _read(self, data: bytes, read: int) -> bytes:
        n_di = 4 if self.edition == "2007" else 2
        di_raw = data[:n_di]
        di = bytes(reversed(di_raw)).hex().upper()
        payload = self._payload(di)
        if payload is None or len(data) != n_di:
            return self._reply(read | 0xC0, bytes([_NO_DATA[self.edition]]))
        room = self.max_data_len - n_di
        if len(payload) <= room:
            return self._reply(read | 0x80, di_raw + payload)
        room_next = room - (1 if self.edition == "2007" else 0)
        chunks = [payload[i : i + room_next] for i in range(room, len(payload), room_next)]
        self._pending[di_raw] = chunks
        return self._reply(read | 0xA0, di_raw + payload[:room])

    def _follow(self, data: bytes, follow: int) -> bytes:
        n_di = 4 if self.edition == "2007" else 2
        di_raw = data[:n_di]
        chunks = self._pending.get(di_raw)
        if not chunks:
            return self._reply(follow | 0xC0, bytes([_NO_DATA[self.edition]]))
        part = chunks.pop(0)
        more = bool(chunks)
        if not more:
            del self._pending[di_raw]
        tail = data[n_di : n_di + 1] if self.edition == "2007" else b""
        return self._reply(follow | (0xA0 if more else 0x80), di_raw + part + tail)


def _pairs(address: str) -> list[str]:
    return [address[i : i + 2].upper() for i in range(0, 12, 2)]


class Dlt645Bus:
    """Meters sharing one line, served on a pseudo-terminal or a TCP port (a transparent converter)."""

    def __init__(
        self,
        transport: str = "pty",
        baudrate: int = 2400,
        parity: str = "E",
        stopbits: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        emulate_timing: bool = True,
        reply_delay_ms: float = 20.0,
    ) -> None:
        if transport not in ("pty", "tcp"):
            raise SimulatorError(f"transport must be pty or tcp (got {transport!r})")
        if not isinstance(baudrate, int) or baudrate <= 0:
            raise SimulatorError(f"baudrate must be a positive integer (got {baudrate!r})")
        if parity not in ("E", "N", "O"):
            raise SimulatorError(f"parity must be E, N or O (got {parity!r})")
        if reply_delay_ms < 0:
            raise SimulatorError(f"reply_delay_ms must be ≥ 0 (got {reply_delay_ms!r})")
        self.transport, self.baudrate, self.parity, self.stopbits = transport, baudrate, parity, stopbits
        self.host, self.port = host, port
        self.emulate_timing = emulate_timing
        self.reply_delay_s = reply_delay_ms / 1000.0
        self.meters: list[Dlt645Meter] = []
        self.port_path = ""
        self.collisions = 0
        self.frames_in = 0
        self._fds: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def char_time_s(self) -> float:
        return (1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits) / self.baudrate

    def add_meter(self, address: str, **kw: Any) -> Dlt645Meter:
        if any(m.address == address for m in self.meters):
            raise SimulatorError(f"address {address} already on this bus")
        m = Dlt645Meter(address, **kw)
        self.meters.append(m)
        return m

    def answers(self, req: _Request) -> list[bytes]:
        """The replies the request draws (several: they collide on the line)."""
        out = []
        for m in self.meters:
            if req.address == "999999999999" or not m.matches(req.address):
                continue
            reply = m.answer(req)
            if reply is not None:
                out.append(reply)
        return out

    async def _serve_stream(self, feed: Callable[[], Any], send: Callable[[bytes], Any]) -> None:
        """Read requests from one side of the line and write the replies, with line timing."""
        buf = bytearray()
        busy_until = 0.0
        loop = asyncio.get_running_loop()
        while True:
            chunk = await feed()
            if not chunk:
                return
            now = loop.time()
            arrived = max(now, busy_until) + (len(chunk) * self.char_time_s if self.emulate_timing else 0.0)
            busy_until = arrived
            buf += chunk
            while True:
                req, used = _parse(buf)
                del buf[:used]
                if req is None:
                    break
                self.frames_in += 1
                replies = self.answers(req)
                if not replies:
                    continue
                data = replies[0]
                if len(replies) > 1:  # two meters talking at once: both frames destroyed
                    self.collisions += 1
                    data = bytes(a ^ b for a, b in zip(replies[0], replies[1], strict=False))
                start = arrived + (self.reply_delay_s if self.emulate_timing else 0.0)
                done = start + (len(data) * self.char_time_s if self.emulate_timing else 0.0)
                busy_until = done
                delay = done - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await send(data)

    async def _serve_pty(self) -> None:
        master = self._fds[0]
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO while no client has the tty open
                    return
                if data:
                    queue.put_nowait(data)

        async def send(data: bytes) -> None:
            with contextlib.suppress(OSError):
                os.write(master, data)

        loop.add_reader(master, readable)
        try:
            await self._serve_stream(queue.get, send)
        finally:
            loop.remove_reader(master)

    async def _serve_tcp(self, clients: set[asyncio.Task[Any]]) -> asyncio.Server:
        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                clients.add(task)

            async def send(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            async def feed() -> bytes:
                return await reader.read(4096)

            try:
                await self._serve_stream(feed, send)
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                if task is not None:
                    clients.discard(task)

        server = await asyncio.start_server(client, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def go() -> None:
            self._stop = asyncio.Event()
            server = None
            task = None
            clients: set[asyncio.Task[Any]] = set()
            if self.transport == "tcp":
                server = await self._serve_tcp(clients)
            else:
                task = asyncio.create_task(self._serve_pty())
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if server is not None:
                    server.close()
                    for c in list(clients):
                        c.cancel()
                    await asyncio.gather(*clients, return_exceptions=True)
                    await server.wait_closed()

        try:
            loop.run_until_complete(go())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self) -> Dlt645Bus:
        if self.transport == "pty":
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._fds = [master, slave]
            self.port_path = os.ttyname(slave)
        self._thread = threading.Thread(target=self._main, name=f"dlt645-{self.transport}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            self.stop()
            raise SimulatorError(f"DL/T 645 bus did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __enter__(self) -> Dlt645Bus:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
