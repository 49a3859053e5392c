"""A real ``python -m probe run`` in a subprocess, for tests that talk to its console."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from probe.console_client import ConsoleClient, ConsoleUnavailable

REPO = Path(__file__).resolve().parent.parent.parent


class RunningProbe:
    """Starts the probe on ``pcap`` with its data in ``root``; the console is at ``socket``."""

    def __init__(self, root: Path, pcap: Path, config: str = "", args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.data = root / "data"
        self.socket = str(self.data / "console.sock")
        command = [sys.executable, "-m", "probe", "run", "--pcap", str(pcap), "--data-dir", str(self.data), "--json-summary", *args]
        if config:
            path = root / "probe.toml"
            path.write_text(config)
            command += ["--config", str(path)]
        self.stdout = open(root / "stdout", "wb")
        self.stderr = open(root / "stderr", "wb")
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=self.stdout, stderr=self.stderr)

    def wait_ready(self, timeout: float = 30.0) -> ConsoleClient:
        """A client connected to the console, as soon as the socket answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the probe exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if os.path.exists(self.socket):
                try:
                    return ConsoleClient(self.socket, timeout=30)
                except ConsoleUnavailable:
                    pass
            time.sleep(0.01)
        raise AssertionError(f"no console at {self.socket} after {timeout} s: {self.log()[-2000:]}")

    def client(self) -> ConsoleClient:
        return ConsoleClient(self.socket, timeout=30)

    def log(self) -> str:
        self.stderr.flush()
        return (self.root / "stderr").read_text(errors="replace")

    def wait_exit(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def summary(self) -> dict[str, Any]:
        self.stdout.flush()
        return json.loads((self.root / "stdout").read_text().strip().splitlines()[-1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()
        self.stderr.close()


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true; that value (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)
