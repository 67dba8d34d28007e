"""A CEMS data logger (数采仪) speaking HJ 212-2017 or HJ 212-2025 over TCP to its upper system.

    lg = Hj212DataLogger("127.0.0.1", 9212, mn="88888880000001", password="123456")
    lg.connect()
    lg.send_minute(datetime(2026, 3, 1, 10, 0, tzinfo=SHANGHAI))   # True once CN 9014 came back
    lg.skip_minute(...)     # a minute lost on the link: kept, sent only when asked (history request)
    lg.send_hour(...)       # CN 2061 with the hour's averages
    lg.corrupt_next()       # the next packet leaves with a wrong CRC (a line error)
    lg.close()

Minute data (CN 2051) carries SO2, NOx, particulate (measured -Avg and converted -ZsAvg), O2,
flue gas flow (m3/s), velocity, temperature, pressure and humidity, each with its data flag
(-Flag, N unless `flags` says otherwise). Without a data acknowledgement within `reply_timeout_s`
the packet is sent again, up to `retries` times. A history request from the upper system (CN 2051
with BeginTime/EndTime) is answered with CN 9011 (QnRtn=1), the kept minutes of that span (with
the request's QN) and CN 9012 (ExeRtn=1). Nothing of ParkPulse is imported: the CRC here is its
own bitwise implementation of HJ 212-2017 Annex A.
"""

from __future__ import annotations

import contextlib
import math
import random
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from simulators.errors import SimulatorError

__all__ = ["CODES", "SHANGHAI", "Hj212DataLogger", "crc16_bitwise", "packet"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
VERSION_BITS = {"2017": 1, "2025": 2}
# code → (base value, amplitude, has a converted value); flow a00000 in m3/s
CODES: dict[str, tuple[float, float, bool]] = {
    "a21026": (20.0, 5.0, True),  # SO2 mg/m3
    "a21002": (60.0, 15.0, True),  # NOx mg/m3
    "a34013": (5.0, 1.5, True),  # particulate mg/m3
    "a19001": (9.0, 0.8, False),  # O2 %
    "a00000": (25.0, 3.0, False),  # flue gas flow m3/s
    "a01011": (12.0, 1.0, False),  # velocity m/s
    "a01012": (130.0, 6.0, False),  # temperature degC
    "a01013": (0.3, 0.05, False),  # pressure kPa
    "a01014": (8.0, 1.0, False),  # humidity %
}


def crc16_bitwise(data: bytes) -> int:
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            carry = reg & 1
            reg >>= 1
            if carry:
                reg ^= 0xA001
    return reg


def packet(segment: str, *, corrupt: bool = False) -> bytes:
    raw = segment.encode("ascii")
    crc = crc16_bitwise(raw) ^ (0x0101 if corrupt else 0)
    return b"##%04d%s%04X\r\n" % (len(raw), raw, crc)


def _fields(segment: str) -> tuple[dict[str, str], dict[str, str]]:
    head, _, cp = segment.partition("CP=&&")
    h = dict(p.split("=", 1) for p in head.split(";") if "=" in p)
    c = dict(p.split("=", 1) for g in cp.rstrip("&").split(";") for p in g.split(",") if "=" in p)
    return h, c


class Hj212DataLogger:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        mn: str,
        password: str,
        edition: str = "2017",
        st: str = "31",
        reply_timeout_s: float = 5.0,
        retries: int = 3,
        seed: int = 1,
        tz: ZoneInfo = SHANGHAI,
        flags: dict[str, str] | None = None,
    ) -> None:
        if edition not in VERSION_BITS:
            raise SimulatorError(f"edition must be 2017 or 2025 (got {edition!r})")
        self.host, self.port = host, port
        self.mn, self.password, self.edition, self.st = mn, password, edition, st
        self.reply_timeout_s, self.retries, self.seed, self.tz = reply_timeout_s, retries, seed, tz
        self.flags = dict(flags or {})  # pollutant code → data flag letter for the next minutes
        self.stats: dict[str, int] = dict.fromkeys(
            ("sent", "resent", "acked", "unacked", "corrupted", "history_requests", "history_minutes"), 0
        )
        self.kept: dict[datetime, str] = {}  # minute → its CP, to answer history requests
        self.on_packet: Callable[[dict[str, str], dict[str, str]], None] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._acks: dict[str, threading.Event] = {}
        self._corrupt_next = False
        self._qn_last = 0
        self._closing = False

    # connection -------------------------------------------------------------------------------
    def connect(self, timeout: float = 5.0) -> Hj212DataLogger:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise SimulatorError(
                f"data logger {self.mn}: cannot connect to {self.host}:{self.port}: {exc}"
            ) from exc
        self._sock.settimeout(None)
        self._closing = False
        self._reader = threading.Thread(target=self._read_loop, name=f"hj212-logger-{self.mn}", daemon=True)
        self._reader.start()
        return self

    def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._reader is not None:
            self._reader.join(5)
        self._sock = self._reader = None

    def __enter__(self) -> Hj212DataLogger:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # data ---------------------------------------------------------------------------------------
    def corrupt_next(self) -> None:
        self._corrupt_next = True

    def values(self, minute: datetime) -> dict[str, float]:
        t = minute.timestamp() / 60.0
        rnd = random.Random(hash((self.seed, int(t))))
        return {
            code: round(base + amp * math.sin(t / 30.0 + i) + rnd.uniform(-amp, amp) * 0.2, 4)
            for i, (code, (base, amp, _)) in enumerate(CODES.items())
        }

    def minute_cp(self, minute: datetime) -> str:
        v = self.values(minute)
        groups = [f"DataTime={minute.astimezone(self.tz):%Y%m%d%H%M%S}"]
        for code, (_, _, zs) in CODES.items():
            items = [f"{code}-Avg={v[code]}"]
            if zs:
                items.append(f"{code}-ZsAvg={round(v[code] * 1.1, 4)}")
            items.append(f"{code}-Flag={self.flags.get(code, 'N')}")
            groups.append(",".join(items))
        return ";".join(groups)

    def send_minute(self, minute: datetime, *, wait: bool = True) -> bool:
        """Send the minute's data (CN 2051); True once acknowledged (resent on timeout)."""
        cp = self.minute_cp(minute)
        self.kept[minute] = cp
        return self._send_data(2051, cp, wait=wait)

    def skip_minute(self, minute: datetime) -> None:
        """A minute measured and kept but lost on the link (sent only if the upper system asks)."""
        self.kept[minute] = self.minute_cp(minute)

    def send_hour(self, hour: datetime) -> bool:
        minutes = [hour + timedelta(minutes=i) for i in range(60)]
        vals = [self.values(m) for m in minutes]
        groups = [f"DataTime={hour.astimezone(self.tz):%Y%m%d%H%M%S}"]
        for code in CODES:
            xs = [v[code] for v in vals]
            groups.append(
                f"{code}-Min={min(xs):.4f},{code}-Avg={sum(xs) / len(xs):.4f},{code}-Max={max(xs):.4f},{code}-Flag=N"
            )
        return self._send_data(2061, ";".join(groups))

    def _qn(self) -> str:
        now = datetime.now(self.tz)
        qn = int(f"{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}")
        self._qn_last = max(qn, self._qn_last + 1)
        return str(self._qn_last)

    def _segment(self, cn: int, cp: str, *, qn: str | None, st: str | None = None, reply: bool = True) -> str:
        flag = (VERSION_BITS[self.edition] << 2) | (1 if reply else 0)
        q = f"QN={qn};" if qn else ""
        return f"{q}ST={st or self.st};CN={cn};PW={self.password};MN={self.mn};Flag={flag};CP=&&{cp}&&"

    def _send_data(self, cn: int, cp: str, *, wait: bool = True) -> bool:
        qn = self._qn()
        ev = self._acks.setdefault(qn, threading.Event())
        seg = self._segment(cn, cp, qn=qn)
        try:
            for attempt in range(self.retries + 1):
                corrupt, self._corrupt_next = self._corrupt_next, False
                self._write(packet(seg, corrupt=corrupt))
                self.stats["corrupted" if corrupt else "sent"] += 1
                if attempt:
                    self.stats["resent"] += 1
                if not wait or ev.wait(self.reply_timeout_s):
                    self.stats["acked"] += 1 if wait else 0
                    return True
            self.stats["unacked"] += 1
            return False
        finally:
            self._acks.pop(qn, None)

    def _write(self, data: bytes) -> None:
        if self._sock is None:
            raise SimulatorError(f"data logger {self.mn}: not connected")
        with self._send_lock:
            self._sock.sendall(data)

    # incoming -----------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        buf = b""
        sock = self._sock
        assert sock is not None
        while not self._closing:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                start = line.find(b"##")
                if start >= 0 and len(line) >= start + 10:
                    self._incoming(line[start + 6 : -4].decode("ascii", "replace"))

    def _incoming(self, segment: str) -> None:
        head, cp = _fields(segment)
        if self.on_packet is not None:
            self.on_packet(head, cp)
        if head.get("CN") == "9014":
            ev = self._acks.get(head.get("QN", ""))
            if ev is not None:
                ev.set()
        elif head.get("CN") == "2051" and "BeginTime" in cp:
            self._answer_history(head.get("QN", ""), cp["BeginTime"], cp["EndTime"])

    def _answer_history(self, qn: str, begin: str, end: str) -> None:
        self.stats["history_requests"] += 1
        b = datetime.strptime(begin, "%Y%m%d%H%M%S").replace(tzinfo=self.tz)
        e = datetime.strptime(end, "%Y%m%d%H%M%S").replace(tzinfo=self.tz)
        self._write(packet(self._segment(9011, "QnRtn=1", qn=qn, st="91", reply=False)))
        for minute in sorted(m for m in self.kept if b <= m <= e):
            self._write(packet(self._segment(2051, self.kept[minute], qn=qn)))
            self.stats["history_minutes"] += 1
        self._write(packet(self._segment(9012, "ExeRtn=1", qn=qn, st="91", reply=False)))

    def summary(self) -> dict[str, Any]:
        return {"mn": self.mn, "edition": self.edition, **self.stats}
