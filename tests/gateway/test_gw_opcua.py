"""The `opcua` source against a real asyncua server (simulators/opcua_line.py): subscriptions,
polling, browse paths, Basic256Sha256 with user and password, a server restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.counters import CounterTracker
from gateway.sources import SourceContext
from gateway.sources.opcua import OpcuaServer, OpcuaSource
from simulators.opcua_line import OpcuaLine, write_certificate

STATE_MAP = {100: "off", 110: "idle", 120: "running", 130: "fault", 140: "planned_stop"}


@pytest.fixture
def line() -> Iterator[OpcuaLine]:
    sim = OpcuaLine("line1", ("filler", "capper"), port=0, update_s=0.2, time_scale=60)
    sim.start()
    yield sim
    sim.close()


def _server(sim: OpcuaLine, devices: list[dict[str, Any]], **extra: Any) -> OpcuaServer:
    doc: dict[str, Any] = {
        "name": "plc",
        "url": sim.url,
        "publishing_interval_ms": 100,
        "sampling_interval_ms": 100,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1,
        "timeout_s": 2,
        "devices": devices,
        **extra,
    }
    return OpcuaServer.model_validate(doc)


def _machine(sim: OpcuaLine, machine: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"line1-{machine}",
        "nodes": [
            {"node": sim.node_id(machine, "State"), "metric": "machine_state", "value_map": STATE_MAP},
            {"browse_path": sim.browse_path(machine, "GoodCount"), "metric": "good_count"},
            {"node": sim.node_id(machine, "RejectCount"), "metric": "reject_count"},
            {"node": sim.node_id(machine, "EnergyKWh"), "metric": "elec_import_kwh"},
            {"node": sim.node_id(machine, "IdealRate"), "metric": "ideal_rate_pcs_h"},
        ],
        **extra,
    }


class Rows:
    def __init__(self) -> None:
        self.rows: list[list[Any]] = []

    def emit(self, rows: list[list[Any]]) -> None:
        self.rows.extend(rows)

    def of(self, device: str, metric: str) -> list[list[Any]]:
        return [r for r in self.rows if r[0] == device and r[1] == metric]


async def _run(
    server: OpcuaServer,
    until: Callable[[Rows, OpcuaSource], bool],
    timeout: float = 15.0,
    during: Callable[[Rows, OpcuaSource], Any] | None = None,
) -> tuple[Rows, OpcuaSource]:
    rows = Rows()
    src = OpcuaSource(server, SourceContext(emit=rows.emit, counters=CounterTracker()))
    task = asyncio.create_task(src.run())
    try:
        if during is not None:
            await during(rows, src)
        deadline = time.monotonic() + timeout
        while not until(rows, src):
            assert time.monotonic() < deadline, f"timed out; stats {[s.as_dict() for s in src.stats()]}"
            assert not task.done(), task
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not src.connected
    return rows, src


def test_subscriptions_deliver_changes_with_the_state_mapped_and_a_browse_path_resolved(
    line: OpcuaLine,
) -> None:
    server = _server(line, [_machine(line, "filler"), _machine(line, "capper")])

    async def change_state(rows: Rows, src: OpcuaSource) -> None:
        while not rows.of("line1-filler", "machine_state"):
            await asyncio.sleep(0.05)
        line.set_state("filler", 3)  # fault: code 130 on the server

    rows, src = asyncio.run(
        _run(
            server,
            lambda r, s: (
                any(x[3] == 3.0 for x in r.of("line1-filler", "machine_state"))
                and len({x[3] for x in r.of("line1-capper", "good_count")}) >= 2
            ),
            during=change_state,
        )
    )
    states = [x[3] for x in rows.of("line1-filler", "machine_state")]
    assert states[-1] == 3.0 and set(states) <= {0.0, 1.0, 2.0, 3.0, 4.0}, (
        "the server's 130 arrived as fault (3)"
    )
    goods = [x[3] for x in rows.of("line1-capper", "good_count")]
    assert goods == sorted(goods) and goods[-1] > goods[0], "counts read through the browse path rise"
    assert all(x[4] == 0 for x in rows.rows), "every value good"
    st = {s.device: s for s in src.stats()}
    assert st["line1-filler"].ok > 0 and st["line1-filler"].exception_errors == 0
    assert src.sessions == 1 and src.subscriptions == 1


def test_polling_fallback_per_device_and_per_node(line: OpcuaLine) -> None:
    polled = _machine(line, "filler", mode="poll", poll_interval_s=0.3)
    mixed = _machine(line, "capper")
    mixed["nodes"][3]["mode"] = "poll"  # the energy counter polled, the rest subscribed
    server = _server(line, [polled, mixed], poll_interval_s=0.3)
    rows, src = asyncio.run(
        _run(server, lambda r, s: {x.device: x for x in s.stats()}["line1-filler"].ok >= 4, timeout=10)
    )
    st = {s.device: s for s in src.stats()}
    assert st["line1-filler"].ok >= 4 and st["line1-filler"].lags_ms, "polled on its schedule"
    assert len(rows.of("line1-filler", "machine_state")) >= 4, (
        "a polled state is sent on every poll, changed or not"
    )
    assert rows.of("line1-capper", "elec_import_kwh") and rows.of("line1-capper", "good_count")
    assert src.subscriptions == 1


def test_a_missing_browse_path_is_named_and_the_other_nodes_go_on(
    line: OpcuaLine, caplog: pytest.LogCaptureFixture
) -> None:
    dev = _machine(line, "filler")
    dev["nodes"][1]["browse_path"] = "0:Objects/2:line1/2:filler/2:GoodCounter"
    server = _server(line, [dev, _machine(line, "capper")])
    with caplog.at_level(logging.WARNING, logger="parkpulse.gateway.opcua"):
        rows, src = asyncio.run(
            _run(
                server,
                lambda r, s: (
                    bool(r.of("line1-capper", "good_count")) and bool(r.of("line1-filler", "reject_count"))
                ),
            )
        )
    st = {s.device: s for s in src.stats()}["line1-filler"]
    assert st.exception_errors == 1
    assert (
        st.last_error is not None
        and "browse path '0:Objects/2:line1/2:filler/2:GoodCounter' not found" in st.last_error
    )
    assert rows.of("line1-filler", "good_count")[0][3:5] == [None, 4], "sent as bad"
    assert "GoodCounter" in caplog.text


def test_an_unknown_node_id_is_counted_on_its_device(line: OpcuaLine) -> None:
    dev = _machine(line, "filler")
    dev["nodes"][2]["node"] = "ns=2;s=line1.filler.NoSuchThing"
    server = _server(line, [dev])
    _rows, src = asyncio.run(
        _run(
            server,
            lambda r, s: bool(r.of("line1-filler", "good_count")) and s.stats()[0].exception_errors > 0,
        )
    )
    st = src.stats()[0]
    assert "ns=2;s=line1.filler.NoSuchThing" in (st.last_error or "") and "BadNodeIdUnknown" in (
        st.last_error or ""
    )


def test_server_restart_recreates_the_subscription_and_counts_the_outage(line: OpcuaLine) -> None:
    server = _server(line, [_machine(line, "filler")])
    restarted: dict[str, float] = {}

    async def restart(rows: Rows, src: OpcuaSource) -> None:
        while not rows.of("line1-filler", "good_count"):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(line.stop)
        await asyncio.sleep(1.5)  # down long enough for a failed reconnect or two
        await asyncio.to_thread(line.start)
        restarted["at_ms"] = time.time() * 1000

    def flowing_again(rows: Rows, src: OpcuaSource) -> bool:
        t = restarted.get("at_ms")
        return t is not None and any(
            x[3] is not None and x[2] >= t for x in rows.of("line1-filler", "good_count")
        )

    rows, src = asyncio.run(_run(server, flowing_again, timeout=20, during=restart))
    st = src.stats()[0]
    assert line.starts == 2
    assert src.sessions == 2 and src.subscriptions == 2, "a new session and a new subscription"
    assert st.transport_errors >= 1, "the outage counted as transport errors"
    assert st.exception_errors == 0
    assert any(x[3] is None and x[4] == 4 for x in rows.of("line1-filler", "good_count")), (
        "the outage sent as bad"
    )
    assert st.consecutive_failures == 0


def test_repeat_sends_a_steady_value_again(line: OpcuaLine) -> None:
    line.set_state("filler", 4)  # planned stop: nothing changes for an hour
    time.sleep(2 * line.update_s)  # the server has published it
    server = _server(
        line,
        [
            {
                "id": "f",
                "nodes": [
                    {
                        "node": line.node_id("filler", "State"),
                        "metric": "machine_state",
                        "value_map": STATE_MAP,
                    }
                ],
            }
        ],
        repeat_s=0.5,
    )
    rows, _ = asyncio.run(_run(server, lambda r, s: len(r.of("f", "machine_state")) >= 3, timeout=10))
    got = rows.of("f", "machine_state")
    assert {x[3] for x in got} == {4.0} and got[-1][2] > got[0][2]


@pytest.fixture
def secure_line(tmp_path: Path) -> Iterator[OpcuaLine]:
    sim = OpcuaLine(
        "line1",
        ("filler",),
        port=0,
        security="basic256sha256",
        users={"gateway": "s3cret-pw"},
        cert_dir=tmp_path / "server",
        update_s=0.2,
        time_scale=60,
    )
    sim.start()
    yield sim
    sim.close()


def _secure(sim: OpcuaLine, tmp_path: Path, password: str) -> OpcuaServer:
    cert, key = tmp_path / "gw-cert.der", tmp_path / "gw-key.pem"
    if not cert.exists():
        write_certificate(cert, key, name="gw", uri="urn:parkpulse:gateway:test", server=False)
    (tmp_path / "pw").write_text(password + "\n", encoding="utf-8")
    return _server(
        sim,
        [_machine(sim, "filler")],
        security={
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(cert),
            "private_key": str(key),
            "server_certificate": str(sim.server_certificate),
        },
        username="gateway",
        password_file=str(tmp_path / "pw"),
    )


def test_basic256sha256_sign_and_encrypt_with_user_and_password(
    secure_line: OpcuaLine, tmp_path: Path
) -> None:
    _rows, src = asyncio.run(
        _run(
            _secure(secure_line, tmp_path, "s3cret-pw"), lambda r, s: bool(r.of("line1-filler", "good_count"))
        )
    )
    assert src.stats()[0].exception_errors == 0 and src.stats()[0].transport_errors == 0


def test_a_wrong_password_is_refused_with_a_clear_error(
    secure_line: OpcuaLine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        rows, src = asyncio.run(
            _run(_secure(secure_line, tmp_path, "not-it"), lambda r, s: s.stats()[0].exception_errors >= 1)
        )
    st = src.stats()[0]
    assert st.transport_errors == 0, "a refusal is the server's answer, not a transport failure"
    assert "BadUserAccessDenied" in (st.last_error or "") and "wrong user name or password" in (
        st.last_error or ""
    )
    assert "as 'gateway'" in (st.last_error or "")
    assert "not-it" not in caplog.text and "not-it" not in (st.last_error or "")
    assert all(x[3] is None and x[4] == 4 for x in rows.rows)


def test_a_server_with_another_certificate_is_refused(secure_line: OpcuaLine, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_certificate(other / "cert.der", other / "key.pem", name="impostor", uri="urn:x", server=True)
    server = _secure(secure_line, tmp_path, "s3cret-pw").model_copy(deep=True)
    server.security.server_certificate = other / "cert.der"
    rows, src = asyncio.run(_run(server, lambda r, s: s.stats()[0].polls >= 2, timeout=15))
    st = src.stats()[0]
    assert st.ok == 0 and st.last_error is not None, "no values from a server that is not the trusted one"
    assert rows.rows and all(x[3] is None for x in rows.rows), st.last_error
