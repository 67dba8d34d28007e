"""Managed configuration without a broker: merging a push with the local file, its profiles on
disk, every problem reported, the persisted state, and which sources an apply keeps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from push_keys import KEY, PUBLIC_PEM

from gateway.config import GatewayConfig, parse_config
from gateway.counters import CounterTracker
from gateway.managed import (
    ManagedController,
    ManagedState,
    ManagedStateError,
    VersionRef,
    effective_config,
    load_state,
    read_push,
    reconcile,
    save_state,
    summarise,
    write_push,
)
from gateway.sources import SourceContext, build_sources
from gateway.sources._schedule import DeviceTasks, poll_on_schedule
from gateway.sources.dlt645 import Dlt645Source
from gateway.sources.modbus import PROFILES_DIR, ModbusSource
from gateway.stats import DeviceStats
from parkpulse.errors import ValidationReport
from parkpulse.wire import ConfigPush, config_payload, parse_config_push
from simulators.dlt645 import Dlt645Bus

SOURCES = Path(__file__).resolve().parents[2] / "gateway" / "sources"


def _local(tmp: Path, **extra: Any) -> GatewayConfig:
    doc: dict[str, Any] = {
        "gateway": {"park": "p1", "firm": "f1", "id": "gw1"},
        "uplink": {"url": "mqtt://gw1:s3cret@127.0.0.1:1", "status_interval_s": 7},
        "spool": {"path": str(tmp / "spool.db")},
        "http": {"listen": None},
        "managed": {"rollback_after_s": 5, "state_dir": str(tmp / "state"), "verify_key": str(PUBLIC_PEM)},
        "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": 1502}],
        "devices": [{"id": "m1", "bus": "lan", "device_id": 1, "profile": "chint-dtsu666"}],
        **extra,
    }
    return parse_config(doc, "local")


def _push(
    version: int, config: dict[str, Any], profiles: dict[str, dict[str, Any]] | None = None
) -> ConfigPush:
    return parse_config_push(
        config_payload("gw1", version, config, profiles, issued_by="t", signing_key=KEY), "gw1"
    )


def _bus(port: int = 1502, name: str = "lan") -> dict[str, Any]:
    return {"name": name, "type": "tcp", "host": "127.0.0.1", "port": port}


def _dev(
    id_: str, bus: str = "lan", unit: int = 1, profile: str = "chint-dtsu666", **kw: Any
) -> dict[str, Any]:
    return {"id": id_, "bus": bus, "device_id": unit, "profile": profile, **kw}


def _builtin_as(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((PROFILES_DIR / "chint-dtsu666.yaml").read_text(encoding="utf-8"))
    doc["name"] = name
    return dict(doc)


def test_push_keeps_local_only_keys_and_writes_its_profiles(tmp_path: Path) -> None:
    local = _local(tmp_path)
    push = _push(
        3,
        {"buses": [_bus()], "devices": [_dev("m1"), _dev("m2", unit=2, profile="acme-meter", interval_s=2)]},
        {"modbus": {"acme-meter": _builtin_as("acme-meter")}, "dlt645": {}},
    )
    root = tmp_path / "state"
    vdir = write_push(root, push)
    cfg = effective_config(local, push, vdir)
    assert cfg.uplink == local.uplink and cfg.spool == local.spool and cfg.managed == local.managed
    assert cfg.gateway == local.gateway and cfg.http.listen is None
    assert cfg.profiles_dir == vdir / "profiles" / "modbus"
    assert (vdir / "profiles" / "modbus" / "acme-meter.yaml").is_file()
    assert [d.id for d in cfg.devices] == ["m1", "m2"] and cfg.devices[1].interval_s == 2
    again = read_push(root, 3)
    assert again.sha256 == push.sha256 and again.config == push.config
    assert "s3cret" not in (vdir / "push.json").read_text(), (
        "local credentials are never written to state_dir"
    )


def test_invalid_push_reports_every_problem_with_its_path(tmp_path: Path) -> None:
    local = _local(tmp_path)
    push = _push(
        4,
        {
            "buses": [_bus()],
            "devices": [
                _dev("m1"),
                _dev("m1", unit=2),
                _dev("m3", unit=3, profile="nope"),
                _dev("m4", bus="x"),
            ],
        },
    )
    with pytest.raises(ValidationReport) as exc:
        effective_config(local, push, write_push(tmp_path / "state", push))
    paths = [p.path for p in exc.value.problems]
    assert {"devices[1].id", "devices[2].profile", "devices[3].bus"} <= set(paths)
    line = summarise(exc.value.problems, first=2)
    assert line.count(";") == 2 and line.endswith(f"and {len(paths) - 2} more")
    assert "devices[1].id" in line


@pytest.mark.parametrize(
    ("config", "profiles", "path"),
    [
        ({"devices": []}, {"modbus": {"../evil": {"name": "../evil"}}}, "profiles.modbus.../evil"),
        ({"devices": []}, {"modbus": {"acme": {"name": "other"}}}, "profiles.modbus.acme.name"),
        ({"profiles_dir": "/etc"}, {"modbus": {"acme": {"name": "acme"}}}, "config.profiles_dir"),
        ({"devices": []}, {"bacnet": {"x": {}}}, "profiles.bacnet"),
        ({"devices": []}, {"modbus": {"acme": ["not", "a", "mapping"]}}, "profiles.modbus.acme"),
    ],
)
def test_unusable_profiles_are_refused_before_anything_is_written(
    tmp_path: Path, config: dict[str, Any], profiles: dict[str, Any], path: str
) -> None:
    push = _push(5, config, profiles)
    with pytest.raises(ValidationReport) as exc:
        effective_config(_local(tmp_path), push, tmp_path / "v")
    assert exc.value.problems[0].path == path


def test_a_bad_pushed_profile_is_named(tmp_path: Path) -> None:
    bad = _builtin_as("acme-meter")
    bad["registers"] = [{"metric": "no_such_metric", "address": 0, "type": "f32", "unit": "kWh"}]
    push = _push(
        6, {"buses": [_bus()], "devices": [_dev("m1", profile="acme-meter")]}, {"modbus": {"acme-meter": bad}}
    )
    with pytest.raises(ValidationReport) as exc:
        effective_config(_local(tmp_path), push, write_push(tmp_path / "state", push))
    assert any(p.path == "profiles_dir" and "acme-meter" in str(p) for p in exc.value.problems), (
        exc.value.problems
    )


def test_state_round_trip_and_a_damaged_file_named(tmp_path: Path) -> None:
    st = ManagedState(
        applied=VersionRef(7, "a" * 64),
        last_good=VersionRef(6, "b" * 64),
        probation=7,
        highest_seen=8,
        desired_version=8,
        state="rejected",
        reason="devices[0].profile: unknown",
        at=123,
    )
    save_state(tmp_path, st)
    assert load_state(tmp_path) == st
    assert load_state(tmp_path / "none") == ManagedState()
    (tmp_path / "state.json").write_text('{"applied": {"version": "7"}}')
    with pytest.raises(ManagedStateError, match=r"state\.json: applied"):
        load_state(tmp_path)
    (tmp_path / "state.json").write_text('{"state": "exploded"}')
    with pytest.raises(ManagedStateError, match=r"state: must be one of .*exploded"):
        load_state(tmp_path)


class _Host:
    def __init__(self) -> None:
        self.applied: list[GatewayConfig] = []
        self.stats: list[DeviceStats] = []
        self.connected = True
        self.announced = 0

    async def apply_config(self, cfg: GatewayConfig) -> None:
        self.applied.append(cfg)

    def device_stats(self) -> list[DeviceStats]:
        return self.stats

    def broker_connected(self) -> bool:
        return self.connected

    def announce(self) -> None:
        self.announced += 1


def test_controller_boot_with_damaged_state_runs_the_local_file(tmp_path: Path) -> None:
    local = _local(tmp_path)
    root = tmp_path / "state"
    root.mkdir()
    (root / "state.json").write_text("{not json")
    ctl = ManagedController(local, _Host())
    assert ctl.boot() is local
    assert [p.name.startswith("state.json.damaged-") for p in root.iterdir()].count(True) == 1
    assert ctl.config_state().mode == "managed" and ctl.config_state().applied_version is None


def test_controller_refuses_old_versions_and_keeps_the_state_across_restarts(tmp_path: Path) -> None:
    local = _local(tmp_path)
    host = _Host()
    ctl = ManagedController(local, host)
    ctl.boot()
    good = config_payload(
        "gw1", 2, {"buses": [_bus()], "devices": [_dev("m1", interval_s=9)]}, issued_by="t", signing_key=KEY
    )

    async def go() -> None:
        await ctl.handle(good)
        await ctl.handle(
            config_payload("gw1", 1, {"devices": []}, issued_by="t", signing_key=KEY)
        )  # older: ignored
        await ctl.handle(good)  # redelivered retained message: ignored
        await ctl.handle(b'{"v": 1, "gateway": "gw9"}')

    asyncio.run(go())
    assert len(host.applied) == 1 and host.applied[0].devices[0].interval_s == 9
    assert ctl.pushes == {"applied": 1, "rejected": 1, "rolled_back": 0, "ignored": 2}
    st = ctl.config_state()
    assert (st.applied_version, st.desired_version, st.state) == (2, 2, "rejected")
    assert st.reason is not None and "gateway: config is for 'gw9'" in st.reason
    again = ManagedController(local, _Host())
    cfg = again.boot()
    assert cfg.devices[0].interval_s == 9, "the applied version runs at start"
    assert again.st.probation == 2, "a restart during the probation restarts it"


def test_controller_rolls_back_when_most_devices_fail_at_the_end_of_probation(tmp_path: Path) -> None:
    local = _local(
        tmp_path,
        managed={
            "rollback_after_s": 0.2,
            "max_failing_share": 0.5,
            "state_dir": str(tmp_path / "s"),
            "verify_key": str(PUBLIC_PEM),
        },
    )
    host = _Host()
    ctl = ManagedController(local, host)
    ctl.boot()
    failing = [DeviceStats(d, "modbus", 1.0, polls=3, consecutive_failures=3) for d in ("a", "b")]
    host.stats = [*failing, DeviceStats("c", "modbus", 1.0, polls=3)]

    async def go() -> None:
        await ctl.handle(
            config_payload(
                "gw1", 1, {"buses": [_bus()], "devices": [_dev("m1")]}, issued_by="t", signing_key=KEY
            )
        )
        await ctl.check_probation()
        assert ctl.st.probation == 1, "not judged before the probation ends"
        await asyncio.sleep(0.25)
        await ctl.check_probation()

    asyncio.run(go())
    st = ctl.config_state()
    assert (st.state, st.applied_version, st.desired_version) == ("rolled_back", None, 1)
    assert st.reason is not None and "2 of 3 devices failing" in st.reason and "a, b" in st.reason
    assert host.applied[-1] is local, "back to the local file (no version passed a probation yet)"


def _sources(cfg: GatewayConfig) -> list[Any]:
    return build_sources(cfg, SourceContext(emit=lambda rows: None, counters=CounterTracker()))


def test_reconcile_keeps_unchanged_links_and_rebuilds_changed_ones(tmp_path: Path) -> None:
    local = _local(
        tmp_path,
        buses=[_bus(1502, "a"), _bus(1503, "b"), _bus(1504, "c")],
        devices=[_dev("a1", "a"), _dev("b1", "b"), _dev("c1", "c")],
    )
    running = _sources(local)
    new = _local(
        tmp_path,
        buses=[_bus(1502, "a"), _bus(1503, "b"), _bus(1505, "d")],
        devices=[_dev("a1", "a"), _dev("b1", "b", interval_s=1), _dev("d1", "d")],
    )
    plan = reconcile(running, _sources(new))
    assert plan.keep == [running[0]], "link a unchanged: its running source is kept"
    assert [(u.running, u.same) for u in plan.update] == [(running[1], frozenset())], (
        "link b unchanged, its one device changed: updated in place, the device restarts"
    )
    assert [s.name for s in plan.stop] == [running[2].name]
    assert [s.name for s in plan.start] == ["modbus:d:127.0.0.1:1505"]
    assert plan.sources[:2] == running[:2] and len(plan.sources) == 3

    class Unknown:
        name = "x"

    assert reconcile([Unknown()], [Unknown()]).keep == [], "a kind not known is always rebuilt"  # type: ignore[list-item]


@pytest.mark.parametrize("sample", sorted(p.parent.name for p in SOURCES.glob("*/sample.yaml")))
def test_every_source_kind_built_twice_from_one_config_is_kept(sample: str, tmp_path: Path) -> None:
    raw = yaml.safe_load((SOURCES / sample / "sample.yaml").read_text(encoding="utf-8"))
    raw.setdefault("gateway", {"park": "p1", "firm": "f1", "id": "gw1"})
    raw.setdefault("uplink", {"url": "mqtt://127.0.0.1:1"})
    raw.setdefault("spool", {"path": str(tmp_path / "s.db")})
    cfg = parse_config(raw, sample)
    running = _sources(cfg)
    plan = reconcile(running, _sources(cfg))
    assert running and plan.keep == running and not plan.start and not plan.stop


def test_a_changed_profile_under_the_same_name_restarts_its_devices(tmp_path: Path) -> None:
    local = _local(tmp_path)
    prof = _builtin_as("acme-meter")
    cfg_push = {"buses": [_bus()], "devices": [_dev("m1", profile="acme-meter")]}
    p1 = _push(1, cfg_push, {"modbus": {"acme-meter": prof}})
    running = _sources(effective_config(local, p1, write_push(tmp_path / "s", p1)))
    same = _push(2, cfg_push, {"modbus": {"acme-meter": prof}})
    assert (
        reconcile(running, _sources(effective_config(local, same, write_push(tmp_path / "s", same)))).keep
        == running
    )
    changed = _builtin_as("acme-meter")
    reg = changed["registers"][0]
    reg["scale"] = float(reg.get("scale", 1.0)) * 10
    p3 = _push(3, cfg_push, {"modbus": {"acme-meter": changed}})
    plan = reconcile(running, _sources(effective_config(local, p3, write_push(tmp_path / "s", p3))))
    assert plan.keep == [] and plan.stop == []
    assert [(u.running, u.same) for u in plan.update] == [(running[0], frozenset())], (
        "same link, m1's registers changed: m1 restarts on the running link"
    )


def test_pushed_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    push = _push(9, {"devices": []}, {"modbus": {"acme-meter": _builtin_as("acme-meter")}})
    vdir = write_push(tmp_path / "state", push)
    for f in (vdir / "push.json", vdir / "profiles" / "modbus" / "acme-meter.yaml"):
        assert f.stat().st_mode & 0o777 == 0o600, f


def test_controller_refuses_forged_unsigned_and_stale_pushes(tmp_path: Path) -> None:
    """Only the platform's key may configure a gateway, and only with a fresh push."""
    host = _Host()
    ctl = ManagedController(_local(tmp_path), host)
    ctl.boot()
    cfg = {"buses": [_bus()], "devices": [_dev("m1", interval_s=9)]}
    forged = config_payload("gw1", 5, cfg, issued_by="attacker", signing_key=Ed25519PrivateKey.generate())
    unsigned = config_payload("gw1", 6, cfg, issued_by="t")
    stale = config_payload(
        "gw1", 7, cfg, issued_by="t", signing_key=KEY, now_ms=int(time.time() * 1000) - 8 * 86_400_000
    )
    tampered = bytearray(config_payload("gw1", 8, cfg, issued_by="t", signing_key=KEY))
    i = tampered.index(b'"version":8')
    tampered[i : i + 11] = b'"version":9'
    reasons = []

    async def go() -> None:
        for payload in (forged, unsigned, stale, bytes(tampered)):
            await ctl.handle(payload)
            reasons.append(ctl.config_state().reason or "")

    asyncio.run(go())
    assert host.applied == [], "nothing refused may be applied"
    assert ctl.pushes["rejected"] == 4 and ctl.config_state().state == "rejected"
    assert "sig: does not verify" in reasons[0]
    assert "sig: a signed push is required" in reasons[1]
    assert "issued_at: stale" in reasons[2]
    assert "sig: does not verify" in reasons[3], "a changed version breaks the signature"
    good = config_payload("gw1", 10, cfg, issued_by="t", signing_key=KEY)
    asyncio.run(ctl.handle(good))
    assert len(host.applied) == 1 and ctl.config_state().applied_version == 10


def test_a_managed_gateway_without_a_readable_verify_key_does_not_start(tmp_path: Path) -> None:
    local = _local(
        tmp_path,
        managed={"state_dir": str(tmp_path / "s"), "verify_key": str(tmp_path / "missing.pub")},
    )
    with pytest.raises(
        ManagedStateError, match=r"managed\.verify_key: .*missing\.pub: not a readable PEM public key"
    ):
        ManagedController(local, _Host())


def _by_device(src: Any) -> dict[str, DeviceStats]:
    return {s.device: s for s in src.stats()}


def test_a_meter_added_on_a_link_updates_it_in_place_and_keeps_the_unchanged_devices(
    tmp_path: Path,
) -> None:
    running = _sources(_local(tmp_path, devices=[_dev("m1"), _dev("m2", unit=2), _dev("m4", unit=4)]))
    (src,) = running
    assert isinstance(src, ModbusSource)
    stats, plans, link = _by_device(src), src.device_plans(), src.link
    new = _local(
        tmp_path, devices=[_dev("m1"), _dev("m2", unit=2, interval_s=9), _dev("m3", unit=3, interval_s=2)]
    )
    plan = reconcile(running, _sources(new))
    assert (plan.keep, plan.start, plan.stop) == ([], [], [])
    (upd,) = plan.update
    assert upd.running is src and upd.same == {"m1"}, "m2's plan changed, m3 is new, m4 is gone"
    assert plan.sources == [src]
    assert upd.apply() == [], "a source not running has no task to wait for"
    after = _by_device(src)
    assert list(after) == ["m1", "m2", "m3"] and src.link is link
    assert after["m1"] is stats["m1"] and src.device_plans()["m1"] is plans["m1"]
    assert after["m2"] is not stats["m2"] and after["m2"].interval_s == 9
    assert after["m3"].interval_s == 2 and after["m3"].polls == 0


@pytest.mark.parametrize(
    ("bus", "change"),
    [
        (_bus(), {"port": 1509}),
        (_bus(), {"timeout_s": 2.5}),
        (_bus(), {"inter_frame_gap_ms": 5}),
        ({"name": "lan", "type": "rtu", "port": "/dev/ttyUSB0", "baudrate": 9600}, {"baudrate": 19200}),
        ({"name": "lan", "type": "rtu", "port": "/dev/ttyUSB0", "parity": "N"}, {"parity": "E"}),
    ],
)
def test_a_changed_link_rebuilds_its_source_even_with_a_device_added(
    tmp_path: Path, bus: dict[str, Any], change: dict[str, Any]
) -> None:
    devices = [_dev("m1"), _dev("m2", unit=2)]
    running = _sources(_local(tmp_path, buses=[bus], devices=devices))
    built = _sources(_local(tmp_path, buses=[{**bus, **change}], devices=[*devices, _dev("m3", unit=3)]))
    plan = reconcile(running, built)
    assert plan.update == [] and plan.keep == []
    assert plan.stop == running and plan.start == built, change


def test_a_device_moved_to_its_own_endpoint_leaves_its_old_link(tmp_path: Path) -> None:
    running = _sources(_local(tmp_path, devices=[_dev("m1"), _dev("m2", unit=2)]))
    built = _sources(_local(tmp_path, devices=[_dev("m1"), _dev("m2", unit=2, port=1600)]))
    plan = reconcile(running, built)
    (upd,) = plan.update
    assert upd.running is running[0] and upd.same == {"m1"}
    assert [s.name for s in plan.start] == ["modbus:lan:127.0.0.1:1600"] and plan.stop == []


def test_a_retired_device_stops_between_polls_never_inside_one() -> None:
    """The link's request under way is answered before the device goes (one request at a time)."""

    async def go() -> None:
        tasks = DeviceTasks("t")
        started, release = asyncio.Event(), asyncio.Event()
        finished: list[str] = []

        async def slow_poll() -> float:
            started.set()
            await release.wait()
            finished.append("x")
            return 0.0

        async def quick_poll() -> float:
            return 0.0

        sx, sy = DeviceStats("x", "modbus", 0.05), DeviceStats("y", "modbus", 30.0)
        runner = asyncio.create_task(
            tasks.run({"x": lambda slot: poll_on_schedule(0.05, 0.0, sx, slow_poll, slot)})
        )
        await asyncio.wait_for(started.wait(), 2)
        (tx,) = tasks.retire(["x"])
        await asyncio.sleep(0.1)
        assert not tx.done(), "a poll under way is not cut"
        release.set()
        await asyncio.wait_for(tx, 2)
        assert finished == ["x"] and not tx.cancelled() and len(sx.lags_ms) == 1
        tasks.start("y", lambda slot: poll_on_schedule(30.0, 10.0, sy, quick_poll, slot))
        await asyncio.sleep(0.01)
        assert tasks.devices == ["y"]
        (ty,) = tasks.retire(["y"])
        await asyncio.wait([ty], timeout=1)
        assert ty.cancelled(), "a device waiting for its slot stops at once"
        assert tasks.retire(["y", "nope"]) == [] and not runner.done(), "the group stays open"
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    asyncio.run(go())


def _dlt_local(tmp: Path, port: int, meters: list[int], interval_s: float = 0.15) -> GatewayConfig:
    return _local(
        tmp,
        buses=[],
        devices=[],
        dlt645_buses=[{"name": "conv", "type": "tcp", "host": "127.0.0.1", "port": port, "timeout_s": 0.5}],
        dlt645_meters=[
            {
                "id": f"d{i}",
                "bus": "conv",
                "address": f"0000123456{i:02d}",
                "profile": "dlt645-2007-generic",
                "interval_s": interval_s,
                "metrics": ["elec_import_kwh", "active_power_kw"],
            }
            for i in meters
        ],
    )


def test_dlt645_bus_takes_a_new_meter_list_while_polling(tmp_path: Path) -> None:
    """A real DL/T 645 converter (the TCP simulator): d1 keeps polling through the update, d2 is
    retired after its poll, d3 starts on the same line."""
    sim = Dlt645Bus(transport="tcp", baudrate=19200, reply_delay_ms=2)
    for i in (1, 2, 3):
        sim.add_meter(f"0000123456{i:02d}", seed=i)
    sim.start()
    rows: list[list[Any]] = []
    ctx = SourceContext(emit=rows.extend, counters=CounterTracker())

    async def until(pred: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    async def go() -> None:
        running = build_sources(_dlt_local(tmp_path, sim.port, [1, 2]), ctx)
        (src,) = running
        assert isinstance(src, Dlt645Source)
        task = asyncio.create_task(src.run())
        await until(lambda: all(s.ok >= 3 for s in src.stats()))
        d1 = _by_device(src)["d1"]
        polls, connects = d1.polls, src.link.connects
        plan = reconcile(running, build_sources(_dlt_local(tmp_path, sim.port, [1, 3]), ctx))
        (upd,) = plan.update
        assert upd.same == {"d1"} and plan.sources == [src] and not plan.stop and not plan.start
        retired = upd.apply()
        assert len(retired) == 1
        _done, pending = await asyncio.wait(retired, timeout=2)
        assert not pending, "d2 stopped"
        d2_rows = sum(r[0] == "d2" for r in rows)
        await until(lambda: _by_device(src)["d3"].ok >= 3)
        assert _by_device(src)["d1"] is d1 and d1.polls > polls and d1.consecutive_failures == 0
        assert sum(r[0] == "d2" for r in rows) == d2_rows, "nothing more from the retired meter"
        assert src.link.connects == connects, "the line was not reopened"
        assert not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(go())
    finally:
        sim.stop()


def test_dlt645_meter_reading_a_refused_block_singly_is_still_the_same_plan(tmp_path: Path) -> None:
    cfg = _dlt_local(tmp_path, 1, [1, 2])
    running = _sources(cfg)
    plan1 = running[0].plans[0]
    plan1.reads[:] = list(plan1.singles.values())  # what a refused block leaves behind
    assert reconcile(running, _sources(cfg)).keep == running
    more = reconcile(running, _sources(_dlt_local(tmp_path, 1, [1, 2, 3])))
    assert more.update[0].same == {"d1", "d2"}
