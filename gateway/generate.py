"""Gateway configs and a registry file from a simulator scenario and its manifest (the scenario-file and manifest contracts, docs/architecture.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from parkpulse.errors import ConfigError, FieldError, ValidationReport
from parkpulse.registry import ParkFile

__all__ = ["LINE_FIELDS", "generate", "strip_scenario"]

SIM_ONLY_DEVICE_KEYS = ("model", "sim")
SIM_ONLY_GATEWAY_KEYS = ("sim",)
# the JSON a line sensor publishes → catalogue metrics
LINE_FIELDS = {
    "state": "machine_state",
    "good": "good_count",
    "reject": "reject_count",
    "ideal_rate": "ideal_rate_pcs_h",
}


def strip_scenario(doc: dict[str, Any]) -> dict[str, Any]:
    """The registry part of a scenario: simulator-only keys removed; profile defaults to the model."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    for firm in out.get("firms") or []:
        for gw in firm.get("gateways") or []:
            for k in SIM_ONLY_GATEWAY_KEYS:
                gw.pop(k, None)
            for dev in gw.get("devices") or []:
                model = dev.get("model")
                for k in SIM_ONLY_DEVICE_KEYS:
                    dev.pop(k, None)
                if model and not dev.get("profile") and dev.get("kind") in ("meter", "cems"):
                    dev["profile"] = model
    return out


def generate(
    scenario: Path,
    manifest: Path,
    out_dir: Path,
    *,
    uplink_url: str,
    spool_dir: Path | None = None,
    http_base_port: int | None = None,
) -> list[Path]:
    """Write `<gateway>.yaml` per gateway and `park.yaml`; returns the files written."""
    try:
        doc = yaml.safe_load(scenario.read_text(encoding="utf-8"))
        man = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read scenario/manifest: {exc}") from None
    if not isinstance(doc, dict):
        raise ValidationReport(str(scenario), [FieldError("(file)", type(doc).__name__, "must be a mapping")])
    park_doc = strip_scenario(doc)
    try:
        pf = ParkFile.model_validate(park_doc)
    except Exception as exc:
        raise ConfigError(f"{scenario}: not a valid park once simulator keys are stripped: {exc}") from None
    entries = man.get("devices") if isinstance(man, dict) else None
    if not isinstance(entries, list):
        raise ValidationReport(str(manifest), [FieldError("devices", entries, "must be a list")])
    by_key = {(e.get("gateway"), e.get("device")): e for e in entries if isinstance(e, dict)}
    out_dir.mkdir(parents=True, exist_ok=True)
    spool_dir = spool_dir or out_dir / "spool"
    written: list[Path] = []
    missing: list[FieldError] = []
    n = 0
    for fi, firm in enumerate(pf.firms):
        for gi, gw in enumerate(firm.gateways):
            buses: dict[str, dict[str, Any]] = {}
            devices: list[dict[str, Any]] = []
            topics: dict[str, list[dict[str, Any]]] = {}
            for di, dev in enumerate(gw.devices):
                if not dev.enabled:
                    continue
                e = by_key.get((gw.id, dev.id))
                if e is None:
                    missing.append(
                        FieldError(f"firms[{fi}].gateways[{gi}].devices[{di}]", dev.id, "not in the manifest")
                    )
                    continue
                interval = dev.poll_interval_s or 5.0
                transport = e.get("transport")
                if transport == "mqtt":
                    url = (
                        f"mqtt://{e['host']}:{e.get('port') or 1883}"
                        if e.get("host")
                        else str(man.get("broker") or uplink_url)
                    )
                    topics.setdefault(url, []).append(
                        {
                            "topic": e["topic"],
                            "device": dev.id,
                            "fields": dict(LINE_FIELDS),
                            "timestamp_field": "ts",
                        }
                    )
                    continue
                bus = _bus(e)
                if bus is None:
                    missing.append(
                        FieldError(
                            f"manifest {gw.id}/{dev.id}.transport", transport, "must be tcp, rtu or mqtt"
                        )
                    )
                    continue
                buses.setdefault(bus["name"], bus)
                d: dict[str, Any] = {
                    "id": dev.id,
                    "bus": bus["name"],
                    "device_id": int(e.get("device_id") or 1),
                    "profile": e.get("model") or dev.profile,
                    "interval_s": interval,
                }
                if dev.rated_power_kw:
                    d["rated_power_kw"] = dev.rated_power_kw
                devices.append(d)
            cfg: dict[str, Any] = {
                "gateway": {"park": pf.park.id, "firm": firm.id, "id": gw.id},
                "uplink": {"url": uplink_url},
                "spool": {"path": str(spool_dir / f"{gw.id}.db"), "max_mb": 256},
                "batching": {"max_readings": 2000, "max_age_s": 1.0},
                "http": {"listen": f"127.0.0.1:{http_base_port + n}" if http_base_port else None},
                "buses": list(buses.values()),
                "devices": devices,
            }
            if topics:
                cfg["mqtt"] = [
                    {"name": f"sensors-{i}", "url": url, "topics": ts}
                    for i, (url, ts) in enumerate(topics.items())
                ]
            path = out_dir / f"{gw.id}.yaml"
            path.write_text(
                f"# generated by parkpulse-gateway generate from {scenario.name}\n"
                + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True),
                encoding="utf-8",
            )
            written.append(path)
            n += 1
    if missing:
        raise ValidationReport(str(manifest), missing)
    park_path = out_dir / "park.yaml"
    park_path.write_text(
        f"# registry generated from {scenario.name} (simulator-only keys removed)\n"
        + yaml.safe_dump(park_doc, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    written.append(park_path)
    return written


def _bus(e: dict[str, Any]) -> dict[str, Any] | None:
    """The `buses` entry a manifest device is reached through (None for an unknown transport)."""
    if e.get("transport") == "tcp":
        name = f"tcp-{e['host']}-{e['port']}".replace(".", "-").replace(":", "-")
        return {"name": name, "type": "tcp", "host": e["host"], "port": int(e["port"])}
    if e.get("transport") == "rtu":
        serial = e.get("serial") or {}
        port = str(e["serial_port"])
        return {
            "name": "rtu-" + Path(port).name.replace(".", "-"),
            "type": "rtu",
            "port": port,
            "baudrate": int(serial.get("baudrate") or 9600),
            # a pseudo-terminal (the simulator's stand-in for RS-485) refuses parity bits
            "parity": "N" if port.startswith("/dev/pts/") else str(serial.get("parity") or "N"),
            "stopbits": int(serial.get("stopbits") or 1),
            "bytesize": int(serial.get("bytesize") or 8),
        }
    return None
