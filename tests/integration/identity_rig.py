"""Real parts for identity tests: a PKI on disk, a Core process with TLS, the delivery actors.

``CoreProcess`` runs ``python -m probe core serve`` with the flags an operator would give
and reads its counters file; ``IdentityRig`` runs the real buffer, signer and uplink
actors under a supervisor whose halt strategy is the application's ``IdentityGuard``.
Tests feed event batches straight into the signer, as a dissection process would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

import pykka

from actors.buffer import BufferActor
from actors.credit import Window
from actors.messages import EventBatch
from actors.metrics import Metrics
from actors.sequencer import Sequencer
from actors.signer import SignerActor
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorHooks
from actors.uplink import TransmissionGate, UplinkActor, UplinkSettings
from probe import pki
from probe.identity import IdentityGuard, ProbeIdentity
from storage.buffer import TieredBuffer
from storage.core_store import CoreStore
from storage.memtier import MemoryTier
from storage.spool import Spool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, period: float = 0.02) -> Any:
    """Poll ``condition`` until it is truthy; return its value (or the last falsy one)."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(period)
        value = condition()
    return value


class Pki:
    """A CA directory with helpers to issue probe and Core certificates into ``root``."""

    def __init__(self, root: str, name: str = "test-ca") -> None:
        self.root = root
        self.dir = os.path.join(root, name)
        pki.init_ca(self.dir, name=name, now=time.time() - 30 * 86400)
        self.ca_pem = pki.ca_paths(self.dir)[1]
        self.crl = pki.ca_paths(self.dir)[2]

    def probe(self, probe_id: str, out: str, **kwargs: Any) -> pki.Issued:
        return pki.issue_probe(self.dir, probe_id, kwargs.pop("days", 30), os.path.join(self.root, out), **kwargs)

    def core(self, out: str = "core-cert") -> pki.Issued:
        return pki.issue_core(self.dir, "core", ["127.0.0.1"], 30, os.path.join(self.root, out))

    def revoke(self, issued: pki.Issued) -> None:
        pki.revoke(self.dir, [issued.info.serial])


class CoreProcess:
    """The reference Core as a child process on loopback."""

    def __init__(self, data_dir: str, *, tls: pki.Issued | None = None, client_ca: str | None = None, crl: str | None = None, port: int = 0) -> None:
        self.data_dir = data_dir
        self.args = ["--data-dir", data_dir]
        if tls is not None:
            self.args += ["--tls-cert", tls.cert_path, "--tls-key", tls.key_path]
        if client_ca:
            self.args += ["--client-ca", client_ca]
        if crl:
            self.args += ["--crl", crl]
        self.scheme = "wss" if tls is not None else "ws"
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> str:
        os.makedirs(self.data_dir, exist_ok=True)
        ready = os.path.join(self.data_dir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "core", "serve", "--listen", f"127.0.0.1:{self.port}", "--ready-file", ready, *self.args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.data_dir, "core.log"), "ab"),
        )
        if not wait_for(lambda: os.path.exists(ready) or self.proc.poll() is not None, timeout) or not os.path.exists(ready):
            raise RuntimeError(f"Core did not start; see {self.data_dir}/core.log")
        with open(ready) as fh:
            self.port = int(fh.read().strip().rpartition(":")[2])
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        return self.url

    def counters(self) -> dict[str, int]:
        try:
            with open(os.path.join(self.data_dir, "counters.json")) as fh:
                return json.load(fh)
        except (FileNotFoundError, ValueError):
            return {}

    def log(self) -> str:
        with open(os.path.join(self.data_dir, "core.log")) as fh:
            return fh.read()

    def stored(self) -> list[tuple[str, int, bytes]]:
        store = CoreStore(os.path.join(self.data_dir, "store"))
        try:
            return list(store.events())
        finally:
            store.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class IdentityRig:
    """Signer, buffer and uplink actors with a real spool, halted by the application's guard."""

    def __init__(self, root: str, identity: ProbeIdentity, core_url: str, **uplink: Any) -> None:
        self.root = root
        self.identity = identity
        self.metrics = Metrics()
        self.directory = Directory()
        self.gate = TransmissionGate()
        self.spool = Spool(os.path.join(root, "spool"), 64 << 20)
        identity.boot_seq = self.spool.next_seq
        self.buffer = TieredBuffer(self.spool, MemoryTier(10_000, 64 << 20))
        self.sequencer = Sequencer(self.spool.next_seq, self.spool.source_progress)
        self.signer_window = Window(8)
        self.buffer_window = Window(8)
        self.guard = IdentityGuard(identity, self.gate, self.directory, self.metrics)
        settings = UplinkSettings(url=core_url, backoff_initial=0.05, backoff_max=0.5, **uplink)
        self.supervisor = Supervisor.start(
            [
                ChildSpec("buffer", lambda sup: BufferActor.start(sup, buffer=self.buffer, directory=self.directory, inbox=self.buffer_window, metrics=self.metrics)),
                ChildSpec(
                    "signer",
                    lambda sup: SignerActor.start(
                        sup, identity=identity, sequencer=self.sequencer, directory=self.directory,
                        inbox=self.signer_window, downstream=self.buffer_window, metrics=self.metrics,
                    ),
                ),
                ChildSpec(
                    "uplink",
                    lambda sup: UplinkActor.start(
                        sup, settings=settings, buffer=self.buffer, identity=identity, sequencer=self.sequencer,
                        gate=self.gate, directory=self.directory, metrics=self.metrics,
                    ),
                ),
            ],
            self.directory,
            hooks=SupervisorHooks(halt=self.guard.halt),
        )

    def feed(self, source: str, first_ordinal: int, events: list) -> None:
        assert self.signer_window.acquire(timeout=10)
        assert self.directory.tell("signer", EventBatch(source, first_ordinal, events))

    def settled(self) -> bool:
        """Every fed batch is signed and buffered."""
        return self.signer_window.outstanding == 0 and self.buffer_window.outstanding == 0

    def delivered(self) -> bool:
        return self.settled() and self.buffer.pending == 0

    def stop(self) -> None:
        self.supervisor.stop(block=True, timeout=30)
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        self.spool.close()
