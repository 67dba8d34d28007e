"""Prometheus metrics of one ingest process and the small HTTP server for /metrics and /healthz."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["HealthServer", "IngestMetrics"]


class IngestMetrics:
    """Every counter ingest exports. A private registry, so several services can share a process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.readings = Counter("pp_ingest_readings_stored", "readings committed to the database", registry=r)
        self.batches = Counter(
            "pp_ingest_batches_stored", "batches committed (new gateway/seq keys)", registry=r
        )
        self.messages = Counter("pp_ingest_messages_received", "MQTT messages received", ["kind"], registry=r)
        self.dead_letters = Counter(
            "pp_ingest_dead_letters", "rows written to dead_letters", ["scope"], registry=r
        )
        self.dead_letters_minimal = Counter(
            "pp_ingest_dead_letters_minimal",
            "refused messages whose full dead letter was refused too: stored as topic, size, sha256 and reason",
            registry=r,
        )
        self.dead_letters_lost = Counter(
            "pp_ingest_dead_letters_lost",
            "refused messages acknowledged although not even a minimal dead letter could be stored (see the log)",
            registry=r,
        )
        self.duplicate_batches = Counter(
            "pp_ingest_duplicate_batches_skipped",
            "redelivered or re-sent batches (same gateway, seq) skipped",
            registry=r,
        )
        self.redeliveries = Counter(
            "pp_ingest_redeliveries", "messages the broker flagged as redelivered (DUP)", registry=r
        )
        self.duplicate_rows = Counter(
            "pp_ingest_duplicate_rows_skipped",
            "readings already stored under another batch, skipped",
            registry=r,
        )
        self.commit_seconds = Histogram(
            "pp_ingest_commit_seconds",
            "time of one flush transaction (COPY + bookkeeping + commit)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.flush_readings = Histogram(
            "pp_ingest_flush_readings",
            "readings per transaction",
            buckets=(1, 10, 100, 1000, 10_000, 50_000, 100_000, 500_000),
            registry=r,
        )
        self.queue_depth = Gauge("pp_ingest_queue_depth", "messages waiting to be decoded", registry=r)
        self.queue_bytes = Gauge("pp_ingest_queue_bytes", "payload bytes waiting to be decoded", registry=r)
        self.unacked = Gauge(
            "pp_ingest_unacked_messages", "messages received and not yet acknowledged", registry=r
        )
        self.seq_gaps = Counter(
            "pp_ingest_seq_gaps_detected", "gaps (spans of missing batches) detected", registry=r
        )
        self.seq_gap_batches = Counter(
            "pp_ingest_seq_gap_batches",
            "batches found missing when a later sequence number arrived",
            registry=r,
        )
        self.open_gaps = Gauge(
            "pp_ingest_open_seq_gaps", "open sequence gaps in the database (all gateways)", registry=r
        )
        self.open_gap_batches = Gauge(
            "pp_ingest_open_seq_gap_batches",
            "batches still missing in the database (all gateways)",
            registry=r,
        )
        self.seq_gaps_filled = Counter(
            "pp_ingest_seq_gap_batches_filled", "missing batches that arrived late", registry=r
        )
        self.db_errors = Counter("pp_ingest_db_errors", "failed transactions (retried)", ["kind"], registry=r)
        self.mqtt_connects = Counter("pp_ingest_mqtt_connects", "successful broker connections", registry=r)
        self.mqtt_connected = Gauge("pp_ingest_mqtt_connected", "1 while connected to the broker", registry=r)
        self.db_ok = Gauge("pp_ingest_db_ok", "1 when the last transaction committed", registry=r)
        self.last_commit = Gauge(
            "pp_ingest_last_commit_timestamp_seconds", "unix time of the last commit", registry=r
        )
        self.cache_refreshes = Counter("pp_ingest_registry_refreshes", "registry cache refreshes", registry=r)
        self.resend_requests = Counter(
            "pp_ingest_resend_requests", "resend requests published to gateways (gap fill)", registry=r
        )
        self.resend_gave_up = Counter(
            "pp_ingest_resend_gave_up", "seq gaps given up on after resend_max_attempts requests", registry=r
        )
        self.rollup_runs = Counter("pp_ingest_rollup_refreshes", "rollup refresher runs", registry=r)
        self.rollup_buckets = Counter(
            "pp_ingest_rollup_buckets_refreshed",
            "15-minute buckets brought up to date in the rollups",
            registry=r,
        )
        self.rollup_lag = Gauge(
            "pp_ingest_rollup_lag_seconds",
            "how long the oldest unrefreshed dirty-bucket mark has waited (0 when the rollups are complete)",
            registry=r,
        )
        self.rollup_dirty = Gauge(
            "pp_ingest_rollup_dirty_buckets", "15-minute buckets waiting for a refresh", registry=r
        )
        self.replica_lag = Gauge(
            "pp_store_replica_replay_lag_seconds",
            "per streaming standby of the store, seconds its replay is behind (pg_stat_replication)",
            ["standby"],
            registry=r,
        )
        self.replica_lag_bytes = Gauge(
            "pp_store_replica_replay_lag_bytes",
            "per streaming standby of the store, WAL bytes written and not yet replayed there",
            ["standby"],
            registry=r,
        )

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/metrics":
            body, ctype, code = self.server.metrics.text(), CONTENT_TYPE_LATEST, 200
        elif self.path.split("?")[0] == "/healthz":
            h = self.server.health()
            body, ctype = json.dumps(h).encode(), "application/json"
            code = 200 if h.get("status") not in ("down", "failing") else 503
        else:
            body, ctype, code = b"not found\n", "text/plain", 404
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    metrics: IngestMetrics
    health: Callable[[], dict[str, Any]]


class HealthServer:
    """`/metrics` (Prometheus text) and `/healthz` (JSON) on a thread; stop() joins it."""

    def __init__(
        self, host: str, port: int, metrics: IngestMetrics, health: Callable[[], dict[str, Any]]
    ) -> None:
        self._srv = _Server((host, port), _Handler)
        self._srv.metrics = metrics
        self._srv.health = health
        self._thread = threading.Thread(
            target=self._srv.serve_forever, kwargs={"poll_interval": 0.2}, name="ingest-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._srv.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._srv.shutdown()
            self._thread.join(5)
        self._srv.server_close()
