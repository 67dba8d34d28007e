"""The service as a library: `async with IngestService(...)`, injected shutdown trigger, no thread left behind."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request

from ingest_testkit import Park, readings_of, send

from ingest import IngestService, IngestSettings
from ingest.harness import wait_stored
from parkpulse.services import MosquittoBroker


def test_in_process_lifecycle(db: str, broker: MosquittoBroker, park: Park, unique_id: str) -> None:
    s = IngestSettings(
        database_url=db,
        mqtt_url=broker.url,
        client_id=f"pp-inproc-{unique_id}",
        park=unique_id,
        http_port=0,
        flush_interval_s=0.05,
        rollup_interval_s=0,
    )
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        box["loop"], box["stop"] = asyncio.get_running_loop(), stop
        async with IngestService(s, shutdown=stop) as svc:
            box["svc"] = svc
            ready.set()
            await svc.run()

    t = threading.Thread(target=asyncio.run, args=(main(),), name="test-ingest-inproc")
    t.start()
    try:
        assert ready.wait(20)
        svc = box["svc"]
        assert isinstance(svc, IngestService)
        deadline = time.monotonic() + 10
        while not svc.mqtt.subscribed and time.monotonic() < deadline:
            time.sleep(0.05)
        g = park.gateways[0]
        send(broker.url, [(g.topic, g.batch(int(time.time() * 1000) - 600_000, 100))])
        wait_stored(db, {g.gateway: 0}, timeout=20)
        assert readings_of(db, park) == (100, 100)
        assert svc.http is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.http.port}/metrics", timeout=2) as r:
            assert b"pp_ingest_readings_stored_total 100.0" in r.read()
    finally:
        loop, stop = box.get("loop"), box.get("stop")
        if isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event):
            loop.call_soon_threadsafe(stop.set)
        t.join(20)
    assert not t.is_alive()
    assert svc.totals.readings == 100
