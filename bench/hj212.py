"""Benchmark: the gateway's HJ 212 receiver, per packet and with many data loggers connected.

    python bench/hj212.py --loggers 1000 --period 60 --duration 60

1. In process: CPU time per minute packet on the receiver's path (framing, CRC, parse, mapping to
   13 readings, the 9014 reply), median of 5 rounds, against the `mqtt` source mapping an
   equivalent JSON message (13 fields) measured in the same run as the baseline.
2. A real run: `python -m gateway run` as its own process (spool and uplink to a private
   Mosquitto included) with `--loggers` TCP connections, each sending one minute packet
   (CN 2051, reply wanted) every `--period` seconds, spread evenly; the gateway's CPU is measured
   with psutil over `--duration` seconds, and the acknowledgement latency on the loggers' side.

Goal: 1,000 loggers sending minute data (16.7 packets/s) at < 5 % of one core. The last line is
JSON: {"loggers", "packets_per_s", "cpu_percent", "cpu_us_per_packet", "cpu_us_per_packet_inproc",
"baseline_mqtt_us_per_message", "ratio_vs_mqtt", "ack_p50_ms", "ack_p99_ms", "extrapolated_1000_loggers_cpu_percent"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.counters import CounterTracker  # noqa: E402
from gateway.sources.hj212 import Framer, MetricInfo, build_packet, load_tables, map_data, parse_segment  # noqa: E402
from gateway.sources.mqtt import MqttTopic, map_message  # noqa: E402
from parkpulse.catalogue import load_catalogue  # noqa: E402
from parkpulse.services import MosquittoBroker, free_port  # noqa: E402
from simulators.hj212 import SHANGHAI, Hj212DataLogger, packet  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")


def _segment_of(mn: str, minute: datetime, qn: str) -> str:
    lg = Hj212DataLogger("127.0.0.1", 0, mn=mn, password="123456")
    return f"QN={qn};ST=31;CN=2051;PW=123456;MN={mn};Flag=5;CP=&&{lg.minute_cp(minute)}&&"


def inproc(n: int) -> tuple[float, float]:
    """(µs CPU per HJ 212 packet, µs CPU per equivalent MQTT JSON message), medians of 5 rounds."""
    cat = load_catalogue()
    info = MetricInfo(
        frozenset(m.name for m in cat.metrics if m.cumulative), {m.name: (m.min, m.max) for m in cat.metrics}
    )
    table = load_tables()["2017"]
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=SHANGHAI)
    pkts = [packet(_segment_of("M1", t0 + timedelta(minutes=i), f"2026030110{i:07d}")) for i in range(n)]
    counters = CounterTracker()
    fields = {
        f"f{i}": m
        for i, m in enumerate(
            [
                "so2_mg_m3",
                "so2_zs_mg_m3",
                "nox_mg_m3",
                "nox_zs_mg_m3",
                "particulate_mg_m3",
                "particulate_zs_mg_m3",
                "o2_pct",
                "flue_flow_m3_h",
                "flue_velocity_m_s",
                "flue_temp_c",
                "flue_pressure_kpa",
                "flue_humidity_pct",
                "cems_flag",
            ]
        )
    }
    topic = MqttTopic.model_validate({"topic": "t", "device": "d", "fields": fields})
    msgs = [
        json.dumps({"ts": 1772330400000 + i * 60000, **{f: 1.5 + i % 7 for f in fields}}).encode()
        for i in range(n)
    ]
    lim = info.limits

    def hj() -> float:
        framer = Framer()
        c0 = time.process_time()
        for raw in pkts:
            for fr in framer.feed(raw):
                p = parse_segment(fr.segment)  # type: ignore[union-attr]
                map_data(p, table, device="d", kind="minute", tz=TZ, info=info, counters=counters)
                build_packet(f"QN={p.qn};ST=91;CN=9014;PW={p.pw};MN={p.mn};Flag=4;CP=&&&&")
        return (time.process_time() - c0) / n * 1e6

    def mq() -> float:
        c0 = time.process_time()
        for m in msgs:
            map_message(
                topic, m, now_ms=1772330400000 + n * 60000, counters=counters, cumulative=set(), limits=lim
            )
        return (time.process_time() - c0) / n * 1e6

    return statistics.median(hj() for _ in range(5)), statistics.median(mq() for _ in range(5))


async def _logger(
    port: int, mn: str, period: float, offset: float, stop_at: float, lat: list[float], sent: list[int]
) -> None:
    await asyncio.sleep(offset)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    minute = datetime.now(SHANGHAI).replace(second=0, microsecond=0) - timedelta(days=1)
    i = 0
    try:
        while time.monotonic() < stop_at:
            t = time.monotonic()
            writer.write(packet(_segment_of(mn, minute + timedelta(minutes=i), f"{mn}{i:06d}")))
            await writer.drain()
            sent[0] += 1
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 30)
            if b"CN=9014" in line:
                lat.append((time.monotonic() - t) * 1000)
            i += 1
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t)))
    finally:
        writer.close()


async def fleet(
    port: int, n: int, period: float, duration: float, warmup: float, proc: psutil.Process
) -> dict[str, float]:
    lat: list[float] = []
    sent = [0]
    stop_at = time.monotonic() + warmup + duration + period
    tasks = [
        asyncio.create_task(_logger(port, f"BENCH{i:06d}", period, i * period / n, stop_at, lat, sent))
        for i in range(n)
    ]
    await asyncio.sleep(warmup + period)  # every logger connected and sending
    c0, s0, l0, t0 = sum(proc.cpu_times()[:2]), sent[0], len(lat), time.monotonic()
    await asyncio.sleep(duration)
    c1, s1, t1 = sum(proc.cpu_times()[:2]), sent[0], time.monotonic()
    window = sorted(lat[l0:])
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall = t1 - t0
    return {
        "packets": s1 - s0,
        "packets_per_s": (s1 - s0) / wall,
        "cpu_percent": (c1 - c0) / wall * 100,
        "cpu_us_per_packet": (c1 - c0) / max(1, s1 - s0) * 1e6,
        "ack_p50_ms": window[len(window) // 2] if window else float("nan"),
        "ack_p99_ms": window[int(len(window) * 0.99)] if window else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loggers", type=int, default=1000)
    ap.add_argument("--period", type=float, default=60.0, help="seconds between one logger's packets")
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--inproc-packets", type=int, default=3000)
    args = ap.parse_args()

    hj_us, mq_us = inproc(args.inproc_packets)
    print(
        f"in process: {hj_us:.1f} µs CPU per HJ 212 minute packet (13 readings + reply); "
        f"mqtt JSON baseline {mq_us:.1f} µs; ratio {hj_us / mq_us:.2f}",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="pp-bench-hj212-"))
    broker = MosquittoBroker().start()
    port = free_port()
    cfg = {
        "gateway": {"park": "benchpark", "firm": "f1", "id": "gwhj"},
        "uplink": {"url": broker.url},
        "spool": {"path": str(work / "spool.db")},
        "log_level": "WARNING",
        "hj212": {
            "listen": f"127.0.0.1:{port}",
            "request_history": False,
            "max_connections": args.loggers + 10,
            "loggers": [
                {"mn": f"BENCH{i:06d}", "password": "123456", "device": f"cems-{i}"}
                for i in range(args.loggers)
            ],
        },
    }
    (work / "gw.yaml").write_text(yaml.safe_dump(cfg))
    log = open(work / "gw.log", "ab")  # noqa: SIM115
    gw = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(work / "gw.yaml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with __import__("socket").create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        r = asyncio.run(
            fleet(port, args.loggers, args.period, args.duration, args.warmup, psutil.Process(gw.pid))
        )
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(20)
        except subprocess.TimeoutExpired:
            gw.kill()
        broker.close()
    extrapolated = r["cpu_us_per_packet"] * (1000 / 60.0) / 1e6 * 100
    print(
        f"real run: {args.loggers} loggers, {r['packets']} packets in {args.duration:.0f} s "
        f"({r['packets_per_s']:.1f}/s); gateway CPU {r['cpu_percent']:.2f} % of a core, "
        f"{r['cpu_us_per_packet']:.0f} µs per packet; ack p50 {r['ack_p50_ms']:.1f} ms, p99 {r['ack_p99_ms']:.1f} ms; "
        f"1,000 loggers at one packet a minute: {extrapolated:.2f} % of a core (goal < 5 %)",
        flush=True,
    )
    print(
        json.dumps(
            {
                "loggers": args.loggers,
                "packets_per_s": round(r["packets_per_s"], 2),
                "cpu_percent": round(r["cpu_percent"], 2),
                "cpu_us_per_packet": round(r["cpu_us_per_packet"], 1),
                "cpu_us_per_packet_inproc": round(hj_us, 1),
                "baseline_mqtt_us_per_message": round(mq_us, 1),
                "ratio_vs_mqtt": round(hj_us / mq_us, 2),
                "ack_p50_ms": round(r["ack_p50_ms"], 1),
                "ack_p99_ms": round(r["ack_p99_ms"], 1),
                "extrapolated_1000_loggers_cpu_percent": round(extrapolated, 2),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
