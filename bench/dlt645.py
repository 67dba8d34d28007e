"""Benchmark: a DL/T 645 bus of 32 meters on a pseudo-terminal at 2400 and 9600 baud (8E1 timing).

    python -m bench.dlt645 [--meters 32] [--cycles 2] [--reply-delay-ms 0]

The simulator emulates the line: a request is received after its wire time (11 bits per byte),
the meter answers after `--reply-delay-ms`, the reply arrives after its own wire time. The
gateway's DL/T 645 source (its `poll()` on one `Link`) reads every meter once per cycle: energy
and active power, two requests per meter with 4 FE wake-up bytes each. Figures per baud rate:

- wire limit: every byte that crossed the line (counted by the link) × 11 bits / baud, plus the
  meters' reply delay per exchange: no master can poll faster on this line;
- baseline: the same requests written and their replies read by a bare pyserial loop (no frame
  checks, no decoding), measured in the same run;
- cycle: the median time of the gateway source to read all meters once.

Goal: cycle ≤ 1.3 × wire limit. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import serial

from gateway.config import parse_config
from gateway.sources.dlt645 import Link, encode_frame, plan_meter, poll
from simulators.dlt645 import Dlt645Bus

METRICS = ["elec_import_kwh", "active_power_kw"]


def _config(port: str, baud: int, meters: int) -> Any:
    return parse_config(
        {
            "gateway": {"park": "bench", "firm": "f", "id": "g"},
            "uplink": {"url": "mqtt://127.0.0.1:1883"},
            "spool": {"path": "unused.db"},
            "dlt645_buses": [
                {
                    "name": "b",
                    "type": "serial",
                    "port": port,
                    "baudrate": baud,
                    "parity": "N",  # a pty refuses parity; the simulator times the line at 8E1
                    "timeout_s": 2.0,
                    "inter_frame_gap_ms": 0,
                }
            ],
            "dlt645_meters": [
                {
                    "id": f"m{i}",
                    "bus": "b",
                    "address": i,
                    "profile": "dlt645-2007-generic",
                    "metrics": METRICS,
                }
                for i in range(1, meters + 1)
            ],
        },
        "bench",
    )


async def _gateway_cycles(cfg: Any, cycles: int) -> tuple[list[float], int, int]:
    """Median-able cycle times, and bytes out/in of one cycle."""
    link = Link(cfg.dlt645_bus("b"))
    plans = [plan_meter(cfg, m) for m in cfg.dlt645_meters]
    times: list[float] = []
    per_cycle = (0, 0)
    try:
        for _ in range(cycles):
            out0, in0 = link.bytes_out, link.bytes_in
            t0 = time.perf_counter()
            for p in plans:
                res = await poll(p, link, None)
                if res.error is not None:
                    raise SystemExit(f"meter {p.meter.id}: {res.error}")
            times.append(time.perf_counter() - t0)
            per_cycle = (link.bytes_out - out0, link.bytes_in - in0)
    finally:
        link.close()
    return times, per_cycle[0], per_cycle[1]


def _baseline_cycle(port: str, cfg: Any) -> float:
    """Bare loop: write each request, read its reply by its length byte."""
    reqs = [
        encode_frame(p.meter.address, 0x11, bytes(reversed(bytes.fromhex(r.di))), 4)
        for p in (plan_meter(cfg, m) for m in cfg.dlt645_meters)
        for r in p.reads
    ]
    with serial.Serial(port, baudrate=9600, timeout=2.0) as ser:
        t0 = time.perf_counter()
        for req in reqs:
            ser.write(req)
            head = ser.read(10)
            ser.read(head[9] + 2)
        return time.perf_counter() - t0


def run_one(baud: int, meters: int, cycles: int, reply_delay_ms: float) -> dict[str, Any]:
    bus = Dlt645Bus(transport="pty", baudrate=baud, parity="E", reply_delay_ms=reply_delay_ms)
    for i in range(1, meters + 1):
        bus.add_meter(f"{i:012d}", seed=i)
    with bus:
        cfg = _config(bus.port_path, baud, meters)
        times, out_b, in_b = asyncio.run(_gateway_cycles(cfg, cycles))
        baseline = _baseline_cycle(bus.port_path, cfg)
    exchanges = meters * len(METRICS)
    limit = (out_b + in_b) * 11 / baud + exchanges * reply_delay_ms / 1000.0
    cycle = statistics.median(times)
    return {
        "baud": baud,
        "meters": meters,
        "exchanges": exchanges,
        "bytes_per_cycle": out_b + in_b,
        "wire_limit_s": round(limit, 3),
        "baseline_s": round(baseline, 3),
        "cycle_s": round(cycle, 3),
        "ratio_to_wire": round(cycle / limit, 3),
        "ratio_to_baseline": round(cycle / baseline, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--meters", type=int, default=32)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--reply-delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    results = []
    for baud in (2400, 9600):
        r = run_one(baud, args.meters, args.cycles if baud == 2400 else args.cycles + 1, args.reply_delay_ms)
        results.append(r)
        print(
            f"{baud:5d} baud 8E1, {r['meters']} meters, {r['exchanges']} exchanges, {r['bytes_per_cycle']} bytes: "
            f"wire limit {r['wire_limit_s']:.3f} s, baseline {r['baseline_s']:.3f} s, "
            f"gateway cycle (median) {r['cycle_s']:.3f} s = {r['ratio_to_wire']:.3f} × wire, "
            f"{r['ratio_to_baseline']:.3f} × baseline",
            flush=True,
        )
    worst = max(r["ratio_to_wire"] for r in results)
    print(json.dumps({"bench": "dlt645", "results": results, "worst_ratio_to_wire": worst, "goal": 1.3}))
    return 0 if worst <= 1.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
