"""The HJ 212 receiver: a TCP server for the park's CEMS data loggers (the gateway is their 上位机).

Per connection: a bounded framer; per packet: CRC, parse, MN and PW, edition, then by CN. Data
packets become readings handed to the gateway's spool; only once the spool has them on disk does
the logger get its data acknowledgement (CN 9014), so a reply means "kept". Refused packets go to
the dead letters with the reason. A logger's missing minutes are counted and asked for again
(CN 2051 with BeginTime/EndTime); what comes back is stored once (ingest keeps one reading per
device, metric and time).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.sources._plugin import Source, SourceContext
from gateway.sources.hj212._config import Hj212Listen, Hj212Logger, split_listen
from gateway.sources.hj212._deadletter import DeadLetters
from gateway.sources.hj212._mapping import MetricInfo, map_data
from gateway.sources.hj212._packet import (
    Frame,
    Framer,
    Junk,
    Packet,
    PacketError,
    build_packet,
    crc16,
    parse_segment,
    sniff_mn,
)
from gateway.sources.hj212._tables import EditionTable, load_tables
from gateway.stats import DeviceStats
from parkpulse.catalogue import load_catalogue

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = ["Hj212Receiver", "build", "dead_letter_path", "summary"]

log = logging.getLogger("parkpulse.gateway.hj212")
MINUTE_MS = 60_000


@dataclass(slots=True)
class _Logger:
    cfg: Hj212Logger
    table: EditionTable
    stats: DeviceStats
    writer: asyncio.StreamWriter | None = None
    st: str = "22"
    last_minute_ms: int | None = None
    last_seen: float | None = None
    missing: collections.deque[tuple[int, int]] = field(default_factory=lambda: collections.deque(maxlen=50))
    history: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    history_requests: int = 0
    recovered_minutes: int = 0
    edition_mismatch: int = 0
    unmapped: set[str] = field(default_factory=set)
    not_stored: collections.Counter[int] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.cfg.device,
            "mn": self.cfg.mn,
            "edition": self.cfg.edition,
            "connected": self.writer is not None,
            "missing_minutes": self.stats.missed_slots,
            "recent_gaps": [list(g) for g in self.missing][-5:],
            "history_requests": self.history_requests,
            "history_open": len(self.history),
            "recovered_minutes": self.recovered_minutes,
            "edition_mismatch": self.edition_mismatch,
            "unmapped_codes": sorted(self.unmapped),
            "received_not_stored": {str(k): v for k, v in self.not_stored.items()},
        }


@dataclass(slots=True)
class _Out:
    """What one read of a connection answers: replies that wait for the spool, and other packets."""

    durable: list[bytes] = field(default_factory=list)
    now: list[bytes] = field(default_factory=list)


def dead_letter_path(spool: Path) -> Path:
    return spool.with_name(spool.name + ".hj212-dead.jsonl")


class Hj212Receiver:
    """One listening socket for every configured data logger."""

    def __init__(
        self, cfg: Hj212Listen, ctx: SourceContext, *, dead_letters: Path | None, reply: bool = True
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.name = f"hj212:{cfg.name}"
        self.reply = reply
        self.tz = ZoneInfo(cfg.timezone)
        tables = load_tables()
        cat = load_catalogue()
        self.info = MetricInfo(
            frozenset(m.name for m in cat.metrics if m.cumulative),
            {m.name: (m.min, m.max) for m in cat.metrics},
        )
        self.loggers = {
            lg.mn: _Logger(lg, tables[lg.edition], DeviceStats(lg.device, "hj212", 60.0))
            for lg in cfg.loggers
        }
        self.dead = DeadLetters(dead_letters, cfg.dead_letter_max_kb * 1024)
        self.counts: collections.Counter[str] = collections.Counter()
        self.port: int | None = None
        self.connections = 0
        self._waiters: list[asyncio.Future[bool]] = []
        self._commit_wake = asyncio.Event()
        self._last_qn = ""
        self.listening = asyncio.Event()
        self._conn_tasks: set[asyncio.Task[Any]] = set()

    # public ---------------------------------------------------------------------------------
    def stats(self) -> list[DeviceStats]:
        return [lg.stats for lg in self.loggers.values()]

    def status(self) -> dict[str, Any]:
        return {
            "listen": self.cfg.listen,
            "port": self.port,
            "connections": self.connections,
            "counts": dict(self.counts),
            "dead_letters": self.dead.summary(),
            "loggers": [lg.as_dict() for lg in self.loggers.values()],
        }

    async def run(self) -> None:
        host, port = split_listen(self.cfg.listen)
        server = await asyncio.start_server(self._connection, host, port, limit=2**16)
        self.port = server.sockets[0].getsockname()[1]
        self.listening.set()
        log.info(
            "hj212 %s listening on %s:%d for %d data logger(s)",
            self.cfg.name,
            host,
            self.port,
            len(self.loggers),
        )
        try:
            async with server, asyncio.TaskGroup() as tg:
                tg.create_task(self._committer(), name=f"{self.name}:commit")
                tg.create_task(self._watchdog(), name=f"{self.name}:watchdog")
                tg.create_task(server.serve_forever(), name=f"{self.name}:serve")
        finally:
            self.listening.clear()
            tasks = list(self._conn_tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # connections ----------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        if self.connections >= self.cfg.max_connections:
            self.counts["connections_refused"] += 1
            log.warning("hj212: connection from %s refused: %d connections open", peer, self.connections)
            writer.close()
            return
        self.connections += 1
        self.counts["connections"] += 1
        me = asyncio.current_task()
        if me is not None:
            self._conn_tasks.add(me)
        framer = Framer(self.cfg.max_segment)
        bound: set[str] = set()
        reason = "closed by the logger"
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), self.cfg.idle_timeout_s)
                if not data:
                    break
                await self._answer(writer, [self._item(it, peer, writer, bound) for it in framer.feed(data)])
        except TimeoutError:
            reason = f"idle for {self.cfg.idle_timeout_s:.0f} s"
            self.counts["idle_closed"] += 1
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
            self._transport_error(bound, reason)
        finally:
            self.connections -= 1
            if me is not None:
                self._conn_tasks.discard(me)
            for mn in bound:
                lg = self.loggers[mn]
                if lg.writer is writer:
                    lg.writer = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            log.debug("hj212: %s disconnected (%s)", peer, reason)

    def _transport_error(self, bound: set[str], reason: str) -> None:
        self.counts["transport_errors"] += 1
        for mn in bound:
            st = self.loggers[mn].stats
            st.transport_errors += 1
            st.last_error = reason

    async def _answer(self, writer: asyncio.StreamWriter, outs: list[_Out | None]) -> None:
        durable = [b for o in outs if o is not None for b in o.durable]
        now = [b for o in outs if o is not None for b in o.now]
        if durable and not await self._durable():
            self.counts["replies_withheld_spool"] += len(durable)
            log.error("hj212: the spool did not take %d packet(s): no acknowledgement sent", len(durable))
            durable = []
        if not self.reply:
            return
        out = durable + now
        if out:
            writer.write(b"".join(out))
            self.counts["replies"] += len(durable)
            await writer.drain()

    async def _durable(self) -> bool:
        """True once the readings emitted so far are in the spool (group commit every ack window)."""
        if self.ctx.flush is None:
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._commit_wake.set()
        return await fut

    async def _committer(self) -> None:
        while True:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            if self.cfg.ack_window_ms > 0:
                await asyncio.sleep(self.cfg.ack_window_ms / 1000)
            waiters, self._waiters = self._waiters, []
            ok = self.ctx.flush() if self.ctx.flush is not None else True
            self.counts["commits"] += 1
            for f in waiters:
                if not f.done():
                    f.set_result(ok)

    async def _watchdog(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(min(60.0, self.cfg.silent_after_s / 3))
            now = time.monotonic()
            for lg in self.loggers.values():
                since = lg.last_seen if lg.last_seen is not None else started
                if now - since > self.cfg.silent_after_s:
                    lg.stats.consecutive_failures += 1
                    lg.stats.last_error = f"no packet for {now - since:.0f} s"

    # packets --------------------------------------------------------------------------------
    def _item(
        self, it: Frame | Junk, peer: str, writer: asyncio.StreamWriter, bound: set[str]
    ) -> _Out | None:
        self.counts["bytes_in"] += len(it.raw)
        if isinstance(it, Junk):
            self.counts["junk"] += 1
            self.dead.add("junk", it.reason, it.raw, peer=peer)
            return None
        self.counts["packets"] += 1
        if not it.crc_ok:
            self._refuse_crc(it, peer, bound)
            return None
        try:
            p = parse_segment(it.segment)
        except PacketError as exc:
            self._dead(it.raw, "malformed", str(exc), peer, sniff_mn(it.raw))
            return None
        lg = self._logger(p, it.raw, peer)
        if lg is None:
            return None
        bound.add(lg.cfg.mn)
        lg.writer = writer
        lg.last_seen = time.monotonic()
        lg.st = p.st
        return self._dispatch(lg, p, it.raw, peer)

    def _refuse_crc(self, it: Frame, peer: str, bound: set[str]) -> None:
        mn = sniff_mn(it.raw)
        reason = f"CRC: packet says {it.crc_sent!r}, the data segment gives {_crc_hex(it.segment)}"
        self._dead(it.raw, "crc", reason, peer, mn)
        lg = self.loggers.get(mn or "")
        if lg is not None and mn in bound:
            lg.stats.transport_errors += 1
            lg.stats.last_error = reason

    def _dead(self, raw: bytes, kind: str, reason: str, peer: str, mn: str | None) -> None:
        self.counts[kind] += 1
        self.dead.add(kind, reason, raw, peer=peer, mn=mn)
        log.warning("hj212 packet from %s (MN %s) refused: %s", peer, mn or "?", reason)

    def _logger(self, p: Packet, raw: bytes, peer: str) -> _Logger | None:
        lg = self.loggers.get(p.mn)
        if lg is None:
            self._dead(raw, "unknown_mn", f"MN {p.mn!r} is not a configured data logger", peer, p.mn)
            return None
        if not hmac.compare_digest(p.pw.encode(), lg.cfg.password.encode()):
            self._dead(raw, "bad_password", f"wrong PW for MN {p.mn!r} (device {lg.cfg.device})", peer, p.mn)
            lg.stats.decode_errors += 1
            lg.stats.last_error = "wrong PW"
            return None
        vb = p.version_bits
        if vb and vb != lg.table.version_bits:
            lg.edition_mismatch += 1
            if lg.edition_mismatch == 1:
                log.warning(
                    "hj212 MN %s: Flag version bits %d, but the logger is configured for %s (version bits %d); "
                    "mapping it as %s",
                    p.mn,
                    vb,
                    lg.table.standard,
                    lg.table.version_bits,
                    lg.table.standard,
                )
        return lg

    def _dispatch(self, lg: _Logger, p: Packet, raw: bytes, peer: str) -> _Out | None:
        cmds = lg.table.commands
        cn = p.cn
        kinds = {cmds.real_time: "real_time", cmds.minute: "minute", cmds.hour: "hour", cmds.day: "day"}
        if cn in kinds:
            return self._data(lg, p, kinds[cn], raw, peer)
        if cn in (cmds.request_answer, cmds.execute_result):
            self._history_reply(lg, p)
            return None
        self.counts["other_cn"] += 1
        lg.not_stored[cn] += 1
        return _Out(now=[self._ack(lg, p)]) if p.reply_wanted and 2000 <= cn < 3000 else None

    def _data(self, lg: _Logger, p: Packet, kind: str, raw: bytes, peer: str) -> _Out | None:
        st = lg.stats
        st.polls += 1
        if kind != lg.cfg.store:
            lg.not_stored[p.cn] += 1
            st.ok += 1
            st.consecutive_failures = 0
            return _Out(now=[self._ack(lg, p)]) if p.reply_wanted else None
        try:
            m = map_data(
                p,
                lg.table,
                device=lg.cfg.device,
                kind=kind,
                tz=self.tz,
                info=self.info,
                counters=self.ctx.counters,
            )
        except PacketError as exc:
            st.decode_errors += 1
            st.consecutive_failures += 1
            st.last_error = str(exc)
            self._dead(raw, "malformed", str(exc), peer, p.mn)
            return None
        if len(lg.unmapped) < 64:
            lg.unmapped |= m.unmapped
        if m.problems:
            st.decode_errors += 1
            st.last_error = "; ".join(m.problems)
            log.warning("hj212 MN %s (%s): %s", p.mn, lg.cfg.device, st.last_error)
        if m.rows:
            self.ctx.emit(m.rows)
            st.readings += len(m.rows)
        st.ok += 1
        st.consecutive_failures = 0
        st.last_ok_ms = int(time.time() * 1000)
        out = _Out()
        if kind == "minute":
            out.now += self._track_minute(lg, m.ts_ms, p.qn)
        if p.reply_wanted:
            out.durable.append(self._ack(lg, p))
        return out

    def _ack(self, lg: _Logger, p: Packet) -> bytes:
        vb = p.version_bits or lg.table.version_bits
        qn = f"QN={p.qn};" if p.qn else ""
        return build_packet(
            f"{qn}ST={lg.table.reply_st};CN={lg.table.commands.data_ack};PW={lg.cfg.password};"
            f"MN={lg.cfg.mn};Flag={vb << 2};CP=&&&&"
        )

    # gaps and history -----------------------------------------------------------------------
    def _track_minute(self, lg: _Logger, ts: int, qn: str | None) -> list[bytes]:
        if qn is not None and qn in lg.history:
            lg.recovered_minutes += 1
            return []
        last = lg.last_minute_ms
        if last is not None and ts <= last:
            return []  # a resend or a late packet: stored again, once in the end (ingest)
        lg.last_minute_ms = ts
        if last is None or ts - last <= MINUTE_MS:
            return []
        begin, end = last + MINUTE_MS, ts - MINUTE_MS
        n = (end - begin) // MINUTE_MS + 1
        lg.stats.missed_slots += n
        lg.missing.append((begin, end))
        self.counts["missing_minutes"] += n
        log.warning(
            "hj212 MN %s (%s): %d minute(s) missing before %s",
            lg.cfg.mn,
            lg.cfg.device,
            n,
            _local(ts, self.tz),
        )
        if not self.cfg.request_history:
            return []
        begin = max(begin, end - (self.cfg.history_max_minutes - 1) * MINUTE_MS)
        return [self._history_request(lg, begin, end)]

    def _new_qn(self) -> str:
        qn = datetime.now(self.tz).strftime("%Y%m%d%H%M%S%f")[:17]
        if qn <= self._last_qn:
            qn = str(int(self._last_qn) + 1)
        self._last_qn = qn
        return qn

    def _history_request(self, lg: _Logger, begin: int, end: int) -> bytes:
        qn = self._new_qn()
        lg.history[qn] = (begin, end, time.monotonic())
        lg.history_requests += 1
        self.counts["history_requests"] += 1
        flag = (lg.table.version_bits << 2) | 1
        return build_packet(
            f"QN={qn};ST={lg.st};CN={lg.table.commands.minute};PW={lg.cfg.password};MN={lg.cfg.mn};"
            f"Flag={flag};CP=&&BeginTime={_local(begin, self.tz)};EndTime={_local(end, self.tz)}&&"
        )

    def _history_reply(self, lg: _Logger, p: Packet) -> None:
        qn = p.qn or ""
        if qn not in lg.history:
            self.counts["unexpected_answers"] += 1
            return
        cmds = lg.table.commands
        key, want = ("QnRtn", "1") if p.cn == cmds.request_answer else ("ExeRtn", "1")
        got = p.cp_value(key)
        if got != want:
            lg.history.pop(qn, None)
            lg.stats.exception_errors += 1
            lg.stats.last_error = f"history request {qn} answered {key}={got}"
            log.warning("hj212 MN %s: history request answered %s=%s", lg.cfg.mn, key, got)
        elif p.cn == cmds.execute_result:
            lg.history.pop(qn, None)
            self.counts["history_done"] += 1


def _crc_hex(segment: bytes) -> str:
    return f"{crc16(segment):04X}"


def _local(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y%m%d%H%M%S")


def _peer(writer: asyncio.StreamWriter) -> str:
    p = writer.get_extra_info("peername")
    return f"{p[0]}:{p[1]}" if isinstance(p, tuple) and len(p) >= 2 else str(p)


def build(cfg: GatewayConfig, ctx: SourceContext) -> list[Source]:
    if cfg.hj212 is None:
        return []
    return [Hj212Receiver(cfg.hj212, ctx, dead_letters=dead_letter_path(cfg.spool.path))]


def summary(cfg: GatewayConfig) -> str:
    if cfg.hj212 is None:
        return "no HJ 212 receiver"
    return f"HJ 212 receiver on {cfg.hj212.listen} for {len(cfg.hj212.loggers)} data logger(s)"
