"""Benchmark: one gateway process polling N simulated meters, spool and uplink included.

    python bench/gateway.py --devices 200 --interval 1 --duration 60

Each meter serves 20 float32 values (40 input registers, one request per poll) from a
ModbusSimulator (the simulators run in this process, several servers standing in for
Modbus TCP converters with up to `--per-endpoint` meters each). The gateway runs as its own
process (`python -m gateway run`), with a private Mosquitto; a subscriber here counts what
reaches the broker. CPU and RSS are measured for the gateway process alone (psutil); poll lag
comes from the gateway's /healthz over the measurement window.

The last line is JSON: {"devices", "interval_s", "readings_per_s", "cpu_percent", "rss_mb",
"poll_lag_p99_ms"}. Goal: < 10 % of one core, < 60 MB RSS, p99 poll lag < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parkpulse.services import MosquittoBroker, free_port  # noqa: E402
from simulators.modbus import ModbusSimulator  # noqa: E402

# 20 float32 values at input registers 0x0000..0x0027 of the simulated SDM630 block
# (the meter answers the whole 0x0000-0x004F block); mapped to 20 catalogue metrics so the
# gateway does its full work per value (decode, range check, counters for the cumulative ones).
BENCH_METRICS = [
    ("voltage_l1_v", "V"),
    ("voltage_l2_v", "V"),
    ("voltage_l3_v", "V"),
    ("current_l1_a", "A"),
    ("current_l2_a", "A"),
    ("current_l3_a", "A"),
    ("active_power_kw", "kW"),
    ("reactive_power_kvar", "kvar"),
    ("power_factor", "1"),
    ("frequency_hz", "Hz"),
    ("elec_import_kwh", "kWh"),
    ("elec_export_kwh", "kWh"),
    ("elec_reactive_kvarh", "kvarh"),
    ("temperature_c", "degC"),
    ("humidity_pct", "%"),
    ("pressure_kpa", "kPa"),
    ("gas_flow_m3_h", "m3/h"),
    ("steam_flow_t_h", "t/h"),
    ("o2_pct", "%"),
    ("flue_temp_c", "degC"),
]


class Counter:
    def __init__(self, port: int, park: str) -> None:
        self.readings = 0
        self.batches = 0
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self.on_message
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"pp/v1/{park}/+/+/data", qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        n = json.loads(msg.payload)["readings"]
        with self.lock:
            self.readings += len(n)
            self.batches += 1

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.readings, self.batches

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds (after warm-up)")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--per-endpoint", type=int, default=20, help="meters behind one simulated TCP endpoint")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pp-bench-gw-"))
    profiles = work / "profiles"
    profiles.mkdir()
    (profiles / "bench-float20.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "bench-float20",
                "manufacturer": "benchmark",
                "model": "20 float32 values",
                "source": {
                    "document": "bench/gateway.py: 20 float32 input registers of the simulated SDM630 block",
                    "edition": "1",
                },
                "address_base": 0,
                "defaults": {"function": "input", "type": "f32", "word_order": "big", "byte_order": "big"},
                "registers": [
                    {"metric": m, "address": 2 * i, "unit": u} for i, (m, u) in enumerate(BENCH_METRICS)
                ],
            }
        ),
        encoding="utf-8",
    )
    broker = MosquittoBroker().start()
    sims: list[ModbusSimulator] = []
    devices = []
    buses = []
    for i in range(args.devices):
        if i % args.per_endpoint == 0:
            sim = ModbusSimulator(host="127.0.0.1", port=0)
            sims.append(sim)
        unit = i % args.per_endpoint + 1
        sims[-1].add_device(device_id=unit, model="eastron-sdm630", seed=i)
    for k, sim in enumerate(sims):
        sim.start()
        buses.append(
            {"name": f"ep{k}", "type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout_s": 1.0}
        )
    for i in range(args.devices):
        devices.append(
            {
                "id": f"m{i:04d}",
                "bus": f"ep{i // args.per_endpoint}",
                "device_id": i % args.per_endpoint + 1,
                "profile": "bench-float20",
                "interval_s": args.interval,
            }
        )
    http_port = free_port()
    park = "bench"
    cfg = {
        "gateway": {"park": park, "firm": "f1", "id": "gw-bench"},
        "uplink": {"url": broker.url},
        "spool": {"path": str(work / "spool.db"), "max_mb": 256},
        "batching": {"max_readings": 2000, "max_age_s": 1.0},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "profiles_dir": str(profiles),
        "log_level": "WARNING",
        "buses": buses,
        "devices": devices,
    }
    cfg_path = work / "gateway.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    counter = Counter(broker.port, park)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(work / "gateway.log", "wb") as log:
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(cfg_path)], cwd=ROOT, env=env, stderr=log
        )
    proc = psutil.Process(gw.pid)
    try:
        print(
            f"gateway pid {gw.pid}: {args.devices} meters × 20 values every {args.interval:g} s on {len(sims)} endpoints; "
            f"warm-up {args.warmup:g} s",
            flush=True,
        )
        time.sleep(args.warmup)
        if gw.poll() is not None:
            print((work / "gateway.log").read_text()[-3000:], file=sys.stderr)
            return 1
        c0 = proc.cpu_times()
        t0 = time.monotonic()
        r0, b0 = counter.snapshot()
        rss_max = 0
        while time.monotonic() - t0 < args.duration:
            time.sleep(1.0)
            rss_max = max(rss_max, proc.memory_info().rss)
        c1 = proc.cpu_times()
        t1 = time.monotonic()
        r1, b1 = counter.snapshot()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{http_port}/healthz?lag_window_s={args.duration:g}", timeout=10
        ) as resp:
            health = json.loads(resp.read())
        wall = t1 - t0
        cpu = (c1.user - c0.user + c1.system - c0.system) / wall * 100.0
        print(
            f"broker received {r1 - r0} readings in {b1 - b0} batches over {wall:.1f} s; "
            f"spool depth {health['spool_depth']}; overruns {health['overruns']}; failing {len(health['devices_failing'])}; "
            f"lag samples {health['poll_lag_samples']}",
            flush=True,
        )
        result = {
            "devices": args.devices,
            "interval_s": args.interval,
            "readings_per_s": round((r1 - r0) / wall, 1),
            "cpu_percent": round(cpu, 2),
            "rss_mb": round(rss_max / 1048576, 1),
            "poll_lag_p99_ms": round(health["poll_lag_p99_ms"] or 0.0, 2),
        }
        print(json.dumps(result), flush=True)
        return 0
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(20)
        except subprocess.TimeoutExpired:
            gw.kill()
        counter.close()
        for s in sims:
            s.stop()
        broker.close()


if __name__ == "__main__":
    raise SystemExit(main())
