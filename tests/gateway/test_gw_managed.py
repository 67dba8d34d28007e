"""Managed configuration end to end: a real Mosquitto (retained config messages), real Modbus
simulators, the gateway in its own thread. Pushes are published with paho and
`parkpulse.wire.config_payload`, as the platform's publisher does."""

from __future__ import annotations

import itertools
import logging
import socket
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from push_keys import KEY, PUBLIC_PEM
from test_gw_helpers import Collector, RunningGateway, collector, make_config, sim_factory  # noqa: F401

from gateway.config import GatewayConfig
from gateway.sources.modbus import PROFILES_DIR, ModbusSource
from parkpulse.tcp_proxy import TcpProxy
from parkpulse.wire import config_digest, config_payload, config_topic

INTERVAL = 0.2
PROBATION = 1.5


def _publish(port: int, topic: str, payload: bytes) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def _push(
    port: int, park: str, version: int, config: dict[str, Any], profiles: dict[str, Any] | None = None
) -> str:
    """Publish a retained push; its sha256."""
    _publish(
        port,
        config_topic(park, "f1", "gw1"),
        config_payload("gw1", version, config, profiles, issued_by="test", signing_key=KEY),
    )
    return config_digest(config, profiles or {})


def _clear(port: int, park: str) -> None:
    _publish(port, config_topic(park, "f1", "gw1"), b"")


def _bus(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "type": "tcp", "host": "127.0.0.1", "port": port, "timeout_s": 0.3}


def _dev(id_: str, bus: str, profile: str = "chint-dtsu666", unit: int = 1) -> dict[str, Any]:
    return {"id": id_, "bus": bus, "device_id": unit, "profile": profile, "interval_s": INTERVAL}


def _sim(factory: Any, seed: int) -> Any:
    s = factory()
    s.add_device(device_id=1, model="chint-dtsu666", seed=seed)
    return s.start()


def _cfg(
    park: str, url: str, tmp: Path, buses: list[Any], devices: list[Any], **managed: Any
) -> GatewayConfig:
    extra: dict[str, Any] = {}
    if managed.get("enabled", True) is not None:
        extra["managed"] = {
            "rollback_after_s": PROBATION,
            "max_failing_share": 0.5,
            "state_dir": str(tmp / "state"),
            "verify_key": str(PUBLIC_PEM),
            **managed,
        }
    return make_config(
        park=park,
        broker_url=url,
        spool=tmp / "spool.db",
        buses=buses,
        devices=devices,
        uplink={"status_interval_s": 0.5},
        **extra,
    )


def _config_states(col: Collector) -> list[dict[str, Any]]:
    with col._lock:
        return [s["config"] for s in col.status if "config" in s]


def _wait_config(col: Collector, timeout: float = 15, **want: Any) -> dict[str, Any]:
    def ok(c: Collector) -> bool:
        return any(all(s.get(k) == v for k, v in want.items()) for s in _config_states(c))

    assert col.wait(ok, timeout), (want, _config_states(col)[-3:])
    return next(s for s in reversed(_config_states(col)) if all(s.get(k) == v for k, v in want.items()))


def _data_batches(col: Collector) -> dict[int, dict[str, Any]]:
    """The data batches by seq (the collector also keeps the config messages it sees)."""
    with col._lock:
        return {b["seq"]: b for b in col.batches if "seq" in b}


def _stats(rg: RunningGateway) -> dict[str, Any]:
    assert rg.gw is not None
    return {s.device: s for s in rg.gw.device_stats()}


def _wait(pred: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _acme_profile() -> dict[str, Any]:
    doc = yaml.safe_load((PROFILES_DIR / "chint-dtsu666.yaml").read_text(encoding="utf-8"))
    doc["name"] = "acme-meter"
    return dict(doc)


def test_push_applied_unchanged_device_keeps_polling_invalid_push_rejected_spool_intact(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim_a, sim_b = _sim(sim_factory, 1), _sim(sim_factory, 2)
    bus_a, bus_b = _bus("lan-a", sim_a.port), _bus("lan-b", sim_b.port)
    cfg = _cfg(unique_id, broker.url, tmp_path, [bus_a], [_dev("a1", "lan-a")])
    try:
        with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
            assert rg.gw is not None
            first = _wait_config(col, mode="managed")
            assert first.get("applied_version") is None, "nothing pushed yet: the local file runs"
            assert _wait(lambda: _stats(rg)["a1"].ok >= 5)
            a1 = _stats(rg)["a1"]
            source_a = rg.gw.sources[0]
            polls_before = a1.polls
            # a push adding a meter on another link, through a profile that comes with the push
            v1 = {
                "buses": [bus_a, bus_b],
                "devices": [_dev("a1", "lan-a"), _dev("b1", "lan-b", "acme-meter")],
            }
            pushed_at_ms = time.time() * 1000
            sha = _push(
                broker.port, unique_id, 1, v1, {"modbus": {"acme-meter": _acme_profile()}, "dlt645": {}}
            )
            done = _wait_config(col, state="applied", applied_version=1)
            assert done["applied_sha256"] == sha and done["desired_version"] == 1
            states = [s.get("state") for s in _config_states(col)]
            assert "applying" in states and states.index("applying") < states.index("applied")
            assert _wait(lambda: "b1" in _stats(rg) and _stats(rg)["b1"].ok >= 3), "the added meter polls"
            assert _stats(rg)["a1"] is a1 and a1.polls > polls_before, (
                "a1's link kept running, its count never reset"
            )
            assert rg.gw.sources[0] is source_a
            # an invalid push: refused with its reasons, nothing changes
            sources = list(rg.gw.sources)
            bad = {
                "buses": [bus_a],
                "devices": [_dev("a1", "lan-a"), _dev("a2", "lan-a", "no-such-profile", 2)],
            }
            _push(broker.port, unique_id, 2, bad)
            rej = _wait_config(col, state="rejected", desired_version=2)
            assert rej["applied_version"] == 1 and rej["applied_sha256"] == sha
            assert "devices[1].profile" in rej["reason"] and "no-such-profile" in rej["reason"]
            time.sleep(3 * INTERVAL)
            assert rg.gw.sources == sources and "b1" in _stats(rg)
            # a forged push (someone else's key, through the real broker): refused, nothing changes
            forged = config_payload(
                "gw1",
                3,
                {"buses": [bus_a], "devices": []},
                issued_by="intruder",
                signing_key=Ed25519PrivateKey.generate(),
            )
            _publish(broker.port, config_topic(unique_id, "f1", "gw1"), forged)
            refused = _wait_config(col, state="rejected", desired_version=2, applied_version=1)
            assert _wait(lambda: "sig: does not verify" in (_config_states(col)[-1].get("reason") or "")), (
                _config_states(col)[-1]
            )
            assert refused["applied_sha256"] == sha
            time.sleep(3 * INTERVAL)
            assert rg.gw.sources == sources and "b1" in _stats(rg), "the forged config changed nothing"
            assert _wait(
                lambda: (
                    rg.gw is not None and rg.gw.managed is not None and rg.gw.managed.st.last_good is not None
                )
            )
            readings_in = rg.gw.readings_in
            rg.stop()
            assert rg.gw.spool.depth == 0, "everything delivered at the stop"
            assert rg.gw.readings_in >= readings_in
            batches = _data_batches(col)
        seqs = sorted(batches)
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[0] == 0, (
            "no seq reused or skipped across the apply"
        )
        assert sum(len(b["readings"]) for b in batches.values()) == rg.gw.readings_in, "nothing lost"
        ts = sorted(
            {
                r[2]
                for b in batches.values()
                for r in b["readings"]
                if r[0] == "a1" and r[1] == "elec_import_kwh"
            }
        )
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        assert ts[0] < pushed_at_ms - 500 and ts[-1] > pushed_at_ms + 1000, "a1 polled well before and after"
        assert max(gaps) < 4 * INTERVAL * 1000, f"a1 kept its pace through the apply (max gap {max(gaps)} ms)"
    finally:
        _clear(broker.port, unique_id)


def test_meter_added_on_a_running_link_leaves_its_neighbours_polling(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    """Issue 14: two meters on one Modbus TCP link, a push adds a third on the same link."""
    sim = sim_factory()
    for unit in (1, 2, 3):
        sim.add_device(device_id=unit, model="chint-dtsu666", seed=20 + unit)
    sim.start()
    lan = _bus("lan", sim.port)
    two = [_dev("m1", "lan", unit=1), _dev("m2", "lan", unit=2)]
    cfg = _cfg(unique_id, broker.url, tmp_path, [lan], two)
    try:
        with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
            assert rg.gw is not None
            assert _wait(lambda: all(_stats(rg)[d].ok >= 5 for d in ("m1", "m2")))
            before = _stats(rg)
            (source,) = rg.gw.sources
            assert isinstance(source, ModbusSource)
            connects = source.link.connects
            seen: dict[str, list[int]] = {"m1": [], "m2": []}

            def sample() -> bool:
                for d, counts in seen.items():
                    counts.append(_stats(rg)[d].polls)
                return True

            pushed_at_ms = time.time() * 1000
            v1 = {"buses": [lan], "devices": [*two, _dev("m3", "lan", unit=3)]}
            sha = _push(broker.port, unique_id, 1, v1)

            def m3_polls() -> bool:
                return sample() and "m3" in _stats(rg) and _stats(rg)["m3"].ok >= 3

            assert _wait(m3_polls), "the added meter polls"
            _wait_config(col, state="applied", applied_version=1, applied_sha256=sha)
            assert _wait(lambda: sample() and time.time() * 1000 > pushed_at_ms + 1500)
            assert rg.gw.sources == [source] and source.link.connects == connects, (
                "the link was updated in place, its connection kept"
            )
            after = _stats(rg)
            for d in ("m1", "m2"):
                assert after[d] is before[d], f"{d} kept its DeviceStats"
                assert seen[d] == sorted(seen[d]) and seen[d][-1] > seen[d][0], f"{d}'s polls never reset"
                assert after[d].consecutive_failures == 0
            rg.stop()
            batches = _data_batches(col)
        readings = [r for b in batches.values() for r in b["readings"] if r[1] == "elec_import_kwh"]
        assert any(r[0] == "m3" and r[3] is not None for r in readings)
        for d in ("m1", "m2"):
            ts = sorted({r[2] for r in readings if r[0] == d})
            gaps = [b - a for a, b in itertools.pairwise(ts)]
            assert ts[0] < pushed_at_ms - 500 and ts[-1] > pushed_at_ms + 1000, f"{d} polled before and after"
            assert max(gaps) < 4 * INTERVAL * 1000, (
                f"{d} kept its pace through the apply (max gap {max(gaps)} ms)"
            )
    finally:
        _clear(broker.port, unique_id)


def test_push_that_makes_most_devices_fail_is_rolled_back_and_not_reapplied(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = _sim(sim_factory, 3)
    lan = _bus("lan", sim.port)
    cfg = _cfg(unique_id, broker.url, tmp_path, [lan], [_dev("m1", "lan")])
    good = {"buses": [lan], "devices": [_dev("m1", "lan")]}
    dead = _bus("lan", _free_port())
    broken = {"buses": [dead], "devices": [_dev("m1", "lan"), _dev("m2", "lan", unit=2)]}
    try:
        with collector(broker.port, unique_id) as col:
            with RunningGateway(cfg) as rg:
                assert rg.gw is not None and rg.gw.managed is not None
                ctl = rg.gw.managed
                sha1 = _push(broker.port, unique_id, 1, good)
                _wait_config(col, state="applied", applied_version=1)
                assert _wait(lambda: ctl.st.last_good is not None and ctl.st.last_good.version == 1), (
                    "probation passed"
                )
                _push(broker.port, unique_id, 2, broken)
                _wait_config(col, state="applied", applied_version=2)
                t_applied = time.monotonic()
                rb = _wait_config(col, timeout=PROBATION + 10, state="rolled_back")
                assert time.monotonic() - t_applied >= PROBATION - 0.3, "judged at the end of the probation"
                assert (rb["applied_version"], rb["applied_sha256"], rb["desired_version"]) == (1, sha1, 2)
                assert "2 of 2 devices failing" in rb["reason"] and "version 2" in rb["reason"]
                assert _wait(lambda: "m2" not in _stats(rg) and _stats(rg)["m1"].ok >= 3), (
                    "back on version 1, polling"
                )
            # restarted: the retained version 2 is delivered again and not re-applied
            n_status = len(col.status)
            with RunningGateway(cfg) as rg2:
                assert rg2.gw is not None and rg2.gw.managed is not None
                assert col.wait(
                    lambda c: len([s for s in c.status[n_status:] if s["state"] == "online"]) >= 3, 15
                )
                assert rg2.gw.managed.pushes["ignored"] >= 1
                last = _config_states(col)[-1]
                assert (last["state"], last["applied_version"]) == ("rolled_back", 1)
                assert _wait(lambda: _stats(rg2)["m1"].ok >= 3) and "m2" not in _stats(rg2)
    finally:
        _clear(broker.port, unique_id)


def test_broker_unreachable_after_a_push_rolls_back_to_the_local_file(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = _sim(sim_factory, 4)
    lan = _bus("lan", sim.port)
    proxy = TcpProxy("127.0.0.1", broker.port).start()
    try:
        cfg = _cfg(unique_id, f"mqtt://127.0.0.1:{proxy.port}", tmp_path, [lan], [_dev("m1", "lan")])
        with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
            assert rg.gw is not None
            slower = {"buses": [lan], "devices": [{**_dev("m1", "lan"), "interval_s": 0.5}]}
            _push(broker.port, unique_id, 1, slower)
            _wait_config(col, state="applied", applied_version=1)
            assert rg.gw.cfg.devices[0].interval_s == 0.5
            proxy.cut()
            assert _wait(
                lambda: rg.gw is not None and rg.gw.config_state().state == "rolled_back", PROBATION + 10
            )
            assert rg.gw.cfg.devices[0].interval_s == INTERVAL, "the local file runs again"
            proxy.restore()
            rb = _wait_config(col, timeout=20, state="rolled_back")
            assert rb.get("applied_version") is None and rb["desired_version"] == 1
            assert "broker not reachable" in rb["reason"]
    finally:
        proxy.close()
        _clear(broker.port, unique_id)


def test_gateway_offline_during_a_push_applies_it_on_return_and_restarts_without_the_broker(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim_a, sim_b = _sim(sim_factory, 5), _sim(sim_factory, 6)
    bus_a, bus_b = _bus("lan-a", sim_a.port), _bus("lan-b", sim_b.port)
    cfg = _cfg(unique_id, broker.url, tmp_path, [bus_a], [_dev("a1", "lan-a")])
    v1 = {"buses": [bus_a, bus_b], "devices": [_dev("a1", "lan-a"), _dev("b1", "lan-b")]}
    try:
        sha = _push(broker.port, unique_id, 1, v1)  # nobody listening: the broker keeps it
        with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
            _wait_config(col, state="applied", applied_version=1, applied_sha256=sha)
            assert _wait(lambda: "b1" in _stats(rg) and _stats(rg)["b1"].ok >= 2)
            assert rg.gw is not None and rg.gw.managed is not None
            ctl = rg.gw.managed
            assert _wait(lambda: ctl.st.last_good is not None)
        # reboot with no broker at all: the last applied version polls from the start
        offline = cfg.model_copy(
            update={"uplink": cfg.uplink.model_copy(update={"url": f"mqtt://127.0.0.1:{_free_port()}"})}
        )
        with RunningGateway(offline) as rg2:
            assert rg2.gw is not None and not rg2.gw.broker_connected()
            assert _wait(
                lambda: "b1" in _stats(rg2) and _stats(rg2)["b1"].ok >= 3 and _stats(rg2)["a1"].ok >= 3
            )
            st = rg2.gw.config_state()
            assert (st.mode, st.applied_version, st.state) == ("managed", 1, "applied")
            time.sleep(PROBATION + 0.5)
            assert rg2.gw.config_state().state == "applied", (
                "a version past its probation is not rolled back offline"
            )
            assert rg2.gw.spool.depth > 0, "readings kept in the spool while offline"
    finally:
        _clear(broker.port, unique_id)


def test_local_gateway_says_so_and_ignores_a_push(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = _sim(sim_factory, 7)
    lan = _bus("lan", sim.port)
    cfg = _cfg(unique_id, broker.url, tmp_path, [lan], [_dev("m1", "lan")], enabled=None)
    assert cfg.managed is None
    caplog.set_level(logging.WARNING, logger="parkpulse.gateway")
    try:
        with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
            assert rg.gw is not None
            assert _wait_config(col, mode="local") == {"mode": "local"}
            sources = list(rg.gw.sources)
            _push(broker.port, unique_id, 1, {"buses": [lan], "devices": []})
            assert _wait(lambda: rg.gw is not None and rg.gw.config_pushes_ignored == 1)
            assert rg.gw.sources == sources and rg.gw.applies == 0
            assert not (tmp_path / "spool.db.managed").exists()
        assert any("config push ignored" in r.getMessage() for r in caplog.records)
        assert orjson.loads(orjson.dumps(_config_states(col)[-1])) == {"mode": "local"}
    finally:
        _clear(broker.port, unique_id)
