"""A Patroni cluster on this machine, for the HA tests and bench/ha_sync_cost.py: one etcd and two
Patroni-managed PostgreSQL 15 clusters (a primary and a streaming replica), each with its own ports
and data directory under one temporary folder. Nothing here touches the 5432/5433/5434 servers.

Real processes only: `etcd`, `patroni` (Debian packages `etcd-server`, `patroni`) and the
PostgreSQL 15 binaries. When they are missing, `PatroniCluster.start` raises `HaKitUnavailable`
naming the package: the HA tests fail loudly (they are not skipped), because `./run setup`
installs them.

PostgreSQL refuses to run as root: when the tests run as root, Patroni (and so PostgreSQL) runs as
the `postgres` system user, and the folder is handed to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from parkpulse.errors import ParkPulseError
from parkpulse.services import free_port, wait_port

__all__ = ["HaKitUnavailable", "PatroniCluster", "PatroniNode", "find_binaries"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NEEDED = {"etcd": "etcd-server", "patroni": "patroni", "patronictl": "patroni"}


class HaKitUnavailable(ParkPulseError):
    """A binary the HA kit needs is not installed."""


def find_binaries() -> dict[str, str]:
    """Paths of etcd, patroni, patronictl; HaKitUnavailable names the Debian package of a missing one."""
    out: dict[str, str] = {}
    missing: list[str] = []
    for exe, pkg in NEEDED.items():
        path = shutil.which(exe)
        if path is None:
            missing.append(f"{exe} (Debian package {pkg})")
        else:
            out[exe] = path
    if not (PG_BIN / "postgres").exists():
        missing.append(f"{PG_BIN / 'postgres'} (Debian package postgresql-15)")
    if missing:
        raise HaKitUnavailable(
            "the HA kit needs " + ", ".join(missing) + "; `./run setup` installs them "
            "(apt-get install -y patroni etcd-server etcd-client)"
        )
    return out


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) of the postgres user when running as root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


@dataclass
class PatroniNode:
    name: str
    root: Path
    pg_port: int
    api_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    @property
    def config_path(self) -> Path:
        return self.root / f"{self.name}.yml"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{dbname}"

    def api(self, path: str = "patroni") -> dict[str, Any] | None:
        """GET the node's REST API (any status: Patroni answers 503 on /primary of a replica)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/{path}", timeout=2) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError):
                return dict(json.loads(exc.read()))
            return None
        except (OSError, ValueError):
            return None

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill_postgres(self) -> list[int]:
        """SIGKILL the postmaster and every process of it at once (a crash of the server, not a
        shutdown: no checkpoint, no last WAL sent). Returns the pids killed."""
        pid = self.postmaster_pid()
        if pid is None:
            raise ParkPulseError(f"{self.name}: no postmaster.pid: postgres is not running")
        kids = _children(pid)
        killed = []
        for p in [pid, *kids]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
                killed.append(p)
        return killed


@dataclass
class PatroniCluster:
    """etcd + two Patroni nodes. `with PatroniCluster() as c:` starts and waits for a leader and a
    streaming replica; leaving the block stops everything and removes the folder."""

    scope: str = field(default_factory=lambda: f"pp-ha-{os.getpid()}-{time.monotonic_ns() % 100000}")
    synchronous_mode: bool = False
    maximum_lag_on_failover: int = 1 << 30
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pp-ha-")))
    nodes: list[PatroniNode] = field(default_factory=list)
    etcd_port: int = 0
    etcd: subprocess.Popen[bytes] | None = None
    bins: dict[str, str] = field(default_factory=dict)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> PatroniCluster:
        try:
            self.bins = find_binaries()
        except HaKitUnavailable:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        owner = _run_as()
        if owner:
            os.chown(self.root, *owner)
        self.nodes = [PatroniNode(f"node{i}", self.root, free_port(), free_port()) for i in (1, 2)]
        try:
            self._start_etcd()
            for node in self.nodes:
                node.config_path.write_text(self._config(node))
                if owner:
                    os.chown(node.config_path, *owner)
            self._start_node(self.nodes[0])
            self.wait_leader(timeout)
            self._start_node(self.nodes[1])
            self.wait_streaming(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> PatroniCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_etcd(self) -> None:
        self.etcd_port, peer = free_port(), free_port()
        data = self.root / "etcd"
        cmd = [
            self.bins["etcd"],
            "--name=etcd0",
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=etcd0=http://127.0.0.1:{peer}",
            "--initial-cluster-state=new",
            "--log-level=warn",
        ]
        with open(self.root / "etcd.log", "ab") as out:
            self.etcd = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        if not wait_port("127.0.0.1", self.etcd_port, 20):
            raise ParkPulseError(f"etcd did not listen on {self.etcd_port}; see {self.root / 'etcd.log'}")

    def _config(self, node: PatroniNode) -> str:
        """The node's Patroni YAML (JSON is YAML). Trust authentication on 127.0.0.1 only: these
        clusters live as long as a test."""
        cfg: dict[str, Any] = {
            "scope": self.scope,
            "namespace": "/parkpulse/",
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{node.api_port}",
                "connect_address": f"127.0.0.1:{node.api_port}",
            },
            "etcd3": {"hosts": f"127.0.0.1:{self.etcd_port}"},
            "bootstrap": {
                "dcs": {
                    "ttl": 20,
                    "loop_wait": 1,
                    "retry_timeout": 5,
                    "maximum_lag_on_failover": self.maximum_lag_on_failover,
                    # a crashed primary is failed over at once instead of restarted in place
                    "primary_start_timeout": 0,
                    "synchronous_mode": self.synchronous_mode,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",
                            "max_wal_senders": 5,
                            "max_replication_slots": 5,
                            "max_connections": 60,
                            "shared_buffers": "64MB",
                            "fsync": "on",
                            "synchronous_commit": "on",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(self.root / f"{node.name}.pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "unused-trust-auth"},
                    "replication": {"username": "replicator", "password": "unused-trust-auth"},
                    "rewind": {"username": "postgres", "password": "unused-trust-auth"},
                },
                "parameters": {"unix_socket_directories": str(self.root)},
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication replicator 127.0.0.1/32 trust",
                    "host replication postgres 127.0.0.1/32 trust",
                ],
            },
        }
        return json.dumps(cfg, indent=1)

    def _start_node(self, node: PatroniNode) -> None:
        owner = _run_as()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PARKPULSE_"))}
        env["HOME"] = str(self.root)
        with open(node.log_path, "ab") as out:
            node.proc = subprocess.Popen(
                [self.bins["patroni"], str(node.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                user=owner[0] if owner else None,
                group=owner[1] if owner else None,
                start_new_session=True,
            )

    def close(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(30)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
            pid = node.postmaster_pid()  # Patroni stops its postgres; a leftover one is ours to end
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.terminate()
            try:
                self.etcd.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
                self.etcd.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- state -----------------------------------------------------------------------------------
    def members(self) -> list[dict[str, Any]]:
        for node in self.nodes:
            c = node.api("cluster")
            if c and "members" in c:
                return list(c["members"])
        return []

    def leader(self) -> PatroniNode | None:
        """The node Patroni says leads and whose postgres accepts writes."""
        for m in self.members():
            if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running":
                node = self.node(m["name"])
                if _writable(node.dsn()):
                    return node
        return None

    def node(self, name: str) -> PatroniNode:
        return next(n for n in self.nodes if n.name == name)

    def other(self, node: PatroniNode) -> PatroniNode:
        return next(n for n in self.nodes if n is not node)

    def wait_leader(self, timeout: float = 60.0, not_: PatroniNode | None = None) -> PatroniNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            lead = self.leader()
            if lead is not None and lead is not not_:
                return lead
            time.sleep(0.2)
        raise ParkPulseError(
            f"no Patroni leader within {timeout:.0f} s: {self.members()}; logs in {self.root}"
        )

    def wait_streaming(self, timeout: float = 60.0) -> PatroniNode:
        """Wait until the replica streams from the leader (pg_stat_replication on the leader)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            lead = self.leader()
            if lead is not None:
                with (
                    contextlib.suppress(psycopg.Error),
                    psycopg.connect(lead.dsn(), autocommit=True, connect_timeout=2) as c,
                ):
                    replica = self.other(lead)
                    n = c.execute(
                        "SELECT count(*) FROM pg_stat_replication "
                        "WHERE state = 'streaming' AND application_name = %s",
                        (replica.name,),
                    ).fetchone()
                    if n and n[0] >= 1:
                        return replica
            time.sleep(0.2)
        raise ParkPulseError(
            f"no streaming replica within {timeout:.0f} s: {self.members()}; logs in {self.root}"
        )

    def _check_alive(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                tail = node.log_path.read_text(errors="replace")[-2000:] if node.log_path.exists() else ""
                raise ParkPulseError(f"patroni {node.name} exited with {node.proc.returncode}:\n{tail}")

    def multi_host_url(self, dbname: str) -> str:
        """The libpq multi-host URL the services use: whichever node accepts writes."""
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)
        return f"postgresql://postgres@{hosts}/{dbname}?target_session_attrs=read-write&connect_timeout=3"

    def create_database(self, dbname: str) -> None:
        lead = self.wait_leader()
        with psycopg.connect(lead.dsn(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{dbname}"')

    def patronictl(self, *args: str, timeout: float = 60.0) -> str:
        owner = _run_as()
        r = subprocess.run(
            [self.bins["patronictl"], "-c", str(self.nodes[0].config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "HOME": str(self.root)},
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
        )
        if r.returncode != 0:
            raise ParkPulseError(f"patronictl {' '.join(args)} failed ({r.returncode}): {r.stderr[-1500:]}")
        return r.stdout

    def switchover(self, timeout: float = 60.0) -> PatroniNode:
        """`patronictl switchover` to the replica; returns the new leader once it accepts writes."""
        old = self.wait_leader()
        new = self.other(old)
        self.patronictl("switchover", self.scope, "--leader", old.name, "--candidate", new.name, "--force")
        return self.wait_leader(timeout, not_=old)

    def set_synchronous_mode(self, on: bool, timeout: float = 60.0) -> None:
        """Switch Patroni's synchronous_mode and wait until the replica is (or is no longer) the
        synchronous standby on the leader."""
        self.patronictl(
            "edit-config", self.scope, "--force", "--set", f"synchronous_mode={'true' if on else 'false'}"
        )
        want = "sync" if on else "async"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lead = self.leader()
            if lead is not None:
                with (
                    contextlib.suppress(psycopg.Error),
                    psycopg.connect(lead.dsn(), autocommit=True, connect_timeout=2) as c,
                ):
                    states = [r[0] for r in c.execute("SELECT sync_state FROM pg_stat_replication")]
                    if states and all(s == want for s in states):
                        return
            time.sleep(0.2)
        raise ParkPulseError(f"synchronous_mode={on}: replica not {want} within {timeout:.0f} s")

    def wal_sender_pid(self, primary: PatroniNode) -> int:
        """The primary's WAL sender serving the other node."""
        with psycopg.connect(primary.dsn(), autocommit=True) as c:
            row = c.execute(
                "SELECT pid FROM pg_stat_replication WHERE application_name = %s",
                (self.other(primary).name,),
            ).fetchone()
        if not row or not row[0]:
            raise ParkPulseError(f"{primary.name} has no WAL sender for the replica")
        return int(row[0])

    def wait_replayed(self, replica: PatroniNode, quiet_s: float = 0.5, timeout: float = 20.0) -> None:
        """Until the replica has replayed all it received and receives nothing more for quiet_s."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        with psycopg.connect(replica.dsn(), autocommit=True) as c:
            while time.monotonic() < deadline:
                row = c.execute(
                    "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()"
                ).fetchone()
                assert row is not None
                if row[0] != last:
                    last, since = row[0], time.monotonic()
                elif row[1] and time.monotonic() - since >= quiet_s:
                    return
                time.sleep(0.05)
        raise ParkPulseError(f"{replica.name} kept receiving WAL for {timeout:.0f} s")

    def logs(self) -> Iterator[tuple[str, str]]:
        for p in sorted(self.root.glob("*.log")):
            yield p.name, p.read_text(errors="replace")


def _writable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as c:
            row = c.execute("SELECT NOT pg_is_in_recovery()").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False
