"""Real parts for the operations tests: a Core process we can stall, and the probe's config.

The Core is ``python -m probe core serve`` in its own process; ``stall()`` and
``resume()`` send it SIGSTOP and SIGCONT, so the probe sees a Core that accepts TCP
connections (the kernel does) but answers nothing, as a wedged or overloaded Core would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from probe.config import Config, build_config
from probe.core.trust import TrustStore
from probe.identity import create_key, public_key_hex
from protocols.events.envelope import decode_canonical, split_signed
from storage.core_store import CoreStore

REPO = Path(__file__).resolve().parents[2]
PROBE_ID = "ops-probe"


class CoreProcess:
    """A real Core on 127.0.0.1, its store in ``data_dir``."""

    def __init__(self, data_dir: Path, credit: int = 20_000) -> None:
        self.data_dir = data_dir
        self.credit = credit
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.stalled = False

    def enroll(self, probe_id: str, key_hex: str) -> None:
        TrustStore(str(self.data_dir / "trusted")).enroll(probe_id, key_hex)

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready = self.data_dir / "ready"
        ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "core", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
             "--credit", str(self.credit), "--ready-file", str(ready), "--log-level", "warning"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.data_dir / "core.log", "ab"),
        )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            assert self.proc.poll() is None, (self.data_dir / "core.log").read_text()
            assert time.monotonic() < deadline, "the Core did not come up"
            time.sleep(0.02)
        host, _, port = ready.read_text().strip().rpartition(":")
        self.url = f"ws://{host}:{port}"
        return self.url

    def stall(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.stalled = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.stalled = False

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every event the Core stored (envelope and body), in sequence order."""
        store = CoreStore(str(self.data_dir / "store"))
        try:
            out = []
            for _, seq, record in store.events():
                event = decode_canonical(split_signed(record)[1])
                if kind is None or event.kind == kind:
                    out.append({"seq": seq, "kind": event.kind, **event.body})
            return out
        finally:
            store.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def enrolled_key(data_dir: Path, core: CoreProcess, probe_id: str = PROBE_ID) -> str:
    """Create the probe's key where the probe will look for it and enroll it at ``core``."""
    path = data_dir / "identity" / "probe.key"
    key = create_key(str(path))
    core.enroll(probe_id, public_key_hex(key))
    return str(path)


def probe_config(data_dir: Path, pcap: Path | str, core_url: str, **settings: Any) -> Config:
    """A config for a run against ``core_url``; ``settings`` are dotted keys (``alerts.drops_window``)."""
    overrides = {
        "probe.id": PROBE_ID,
        "probe.data_dir": str(data_dir),
        "capture.pcap": str(pcap),
        "uplink.core_url": core_url,
        "uplink.backoff_initial": 0.05,
        "uplink.backoff_max": 0.5,
        "alerts.evaluate_interval": 0.2,
        "resources.check_interval": 0.2,
    }
    overrides.update({k.replace("__", "."): v for k, v in settings.items()})
    return build_config({}, overrides)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, poll: float = 0.05, message: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout:g} s" + (f": {message()}" if message else ""))
        time.sleep(poll)


