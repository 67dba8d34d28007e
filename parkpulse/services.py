"""Local services for tests, the demo and ./run: PostgreSQL and Mosquitto.

`ensure_postgres()` / `ensure_system_mosquitto()` start the machine's own services if they are
installed but stopped. `MosquittoBroker` runs a private broker with ParkPulse's configuration.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from types import TracebackType

from parkpulse.errors import ParkPulseError

__all__ = [
    "MosquittoBroker",
    "ServiceUnavailable",
    "ensure_postgres",
    "ensure_system_mosquitto",
    "free_port",
    "port_open",
    "wait_port",
]


class ServiceUnavailable(ParkPulseError):
    """A service the command needs is neither running nor installed here."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 20.0, *, up: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port) == up:
            return True
        time.sleep(0.1)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_postgres(host: str = "127.0.0.1", port: int = 5432, timeout: float = 30.0) -> None:
    """Start the Debian PostgreSQL cluster when it is installed but stopped."""
    if port_open(host, port):
        return
    if not shutil.which("pg_ctlcluster"):
        raise ServiceUnavailable(
            f"PostgreSQL is not reachable on {host}:{port} and not installed here: "
            "apt-get install postgresql, or set PARKPULSE_DATABASE_URL"
        )
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise ServiceUnavailable("PostgreSQL is installed but has no cluster in /etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
    )
    if not wait_port(host, port, timeout):
        raise ServiceUnavailable(f"started PostgreSQL {versions[-1]} but {host}:{port} does not answer")


def ensure_system_mosquitto(host: str = "127.0.0.1", port: int = 1883, timeout: float = 10.0) -> None:
    """Start the machine's Mosquitto when it is installed but stopped."""
    if port_open(host, port):
        return
    exe = mosquitto_binary()
    subprocess.run([exe, "-d", "-c", "/etc/mosquitto/mosquitto.conf"], check=False, capture_output=True)
    if not wait_port(host, port, timeout):
        raise ServiceUnavailable(f"started Mosquitto but {host}:{port} does not answer")


def mosquitto_binary() -> str:
    exe = shutil.which("mosquitto") or next(iter(glob.glob("/usr/sbin/mosquitto")), None)
    if not exe:
        raise ServiceUnavailable("Mosquitto is not installed: apt-get install mosquitto")
    return exe


def _hand_to_broker_user(folder: Path) -> None:
    """Started as root, Mosquitto drops to its `mosquitto` user: give it the data folder, or it
    cannot write its persistence file and sessions would not survive a restart."""
    if os.geteuid() != 0:
        return
    try:
        import pwd

        pw = pwd.getpwnam("mosquitto")
    except (KeyError, ImportError):
        return
    os.chown(folder, pw.pw_uid, pw.pw_gid)
    for parent in folder.parents:  # the user must be able to reach it
        if str(parent).startswith(tempfile.gettempdir()) and parent != Path(tempfile.gettempdir()):
            parent.chmod(parent.stat().st_mode | 0o711)


class MosquittoBroker:
    """A private Mosquitto with ParkPulse's configuration (no silent drops, persistence on)."""

    def __init__(
        self, port: int | None = None, data_dir: str | Path | None = None, bind: str = "127.0.0.1"
    ) -> None:
        self.port = port or free_port()
        self.bind = bind
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pp-mosquitto-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _hand_to_broker_user(self.data_dir)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.bind}:{self.port}"

    def config_text(self) -> str:
        tmpl = resources.files("parkpulse.broker").joinpath("mosquitto.conf.in").read_text(encoding="utf-8")
        return (
            tmpl.replace("@PORT@", str(self.port))
            .replace("@DATA@", str(self.data_dir))
            .replace("@BIND@", self.bind)
        )

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(self.config_text(), encoding="utf-8")
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_port(self.bind, self.port, timeout):
            self.stop()
            log = (
                (self.data_dir / "mosquitto.log").read_text(errors="replace")[-2000:]
                if (self.data_dir / "mosquitto.log").exists()
                else ""
            )
            raise ServiceUnavailable(f"private Mosquitto on port {self.port} did not start\n{log}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        wait_port(self.bind, self.port, 5.0, up=False)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _main(argv: list[str]) -> int:
    if argv[:1] == ["ensure"]:
        try:
            ensure_postgres()
            ensure_system_mosquitto()
        except ServiceUnavailable as exc:
            print(f"parkpulse: {exc}", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m parkpulse.services ensure", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
