"""Run the park's services as child processes, each with its own log, and stop them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "Supervisor"]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        self.logdir = logdir
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.children: dict[str, Child] = {}

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> Child:
        log = self.logdir / f"{name}.log"
        fh = log.open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**self.env, **(extra_env or {})},
            start_new_session=True,
        )
        fh.close()
        child = Child(name, proc, log)
        self.children[name] = child
        return child

    def stop(self, name: str, timeout: float = 15.0) -> None:
        child = self.children.pop(name, None)
        if child is None or not child.alive():
            return
        child.proc.send_signal(signal.SIGTERM)
        try:
            child.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()

    def kill(self, name: str) -> None:
        child = self.children.get(name)
        if child and child.alive():
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()

    def dead(self) -> list[Child]:
        return [c for c in self.children.values() if not c.alive()]

    def stop_all(self, order: list[str] | None = None, timeout: float = 15.0) -> None:
        names = list(order or []) + [n for n in reversed(list(self.children)) if n not in (order or [])]
        for n in names:
            self.stop(n, timeout)

    @staticmethod
    def wait_for(predicate: object, timeout: float, interval: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(predicate) and predicate():
                return True
            time.sleep(interval)
        return False
