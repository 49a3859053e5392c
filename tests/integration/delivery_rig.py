"""A delivery-process rig for tests: real signer, buffer and uplink actors, a real Core.

Tests feed EventBatches straight into the signer (as a dissection process would) and
watch what the Core stores.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pykka

from actors.buffer import BufferActor
from actors.credit import Window
from actors.messages import EventBatch
from actors.metrics import Metrics
from actors.sequencer import Sequencer
from actors.signer import SignerActor
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorHooks
from actors.uplink import TransmissionGate, UplinkActor, UplinkSettings
from probe.core.embedded import EmbeddedCore
from probe.identity import ProbeIdentity
from protocols.events import Weird, encode_body
from storage.buffer import TieredBuffer
from storage.core_store import CoreStore
from storage.memtier import MemoryTier
from storage.spool import Spool


def weird_events(n: int, start: int = 0) -> list:
    """``n`` distinct encoded events (weirds named by their index)."""
    return [encode_body(Weird(1_700_000_000.0 + i, f"test_{i}")) for i in range(start, start + n)]


class DeliveryRig:
    def __init__(self, root: str, *, core_url: str | None = None, quota: int = 64 << 20, memory_events: int = 10_000, uplink: dict | None = None) -> None:
        self.root = root
        self.metrics = Metrics()
        self.directory = Directory()
        self.gate = TransmissionGate()
        self.identity = ProbeIdentity("rig-probe", os.path.join(root, "probe.key"))
        self.spool = Spool(os.path.join(root, "spool"), quota)
        self.buffer = TieredBuffer(self.spool, MemoryTier(memory_events, 64 << 20))
        self.sequencer = Sequencer(self.spool.next_seq, self.spool.source_progress)
        self.signer_window = Window(8)
        self.buffer_window = Window(8)
        self.core: EmbeddedCore | None = None
        if core_url is None:
            self.core = EmbeddedCore(os.path.join(root, "core"))
            self.core.enroll(self.identity.probe_id, self.identity.public_key_hex)
            core_url = self.core.start()
        self.core_url = core_url
        self.uplink_settings = UplinkSettings(url=core_url, **(uplink or {}))
        self.halts: list[str] = []
        self.supervisor = Supervisor.start(
            [
                ChildSpec("buffer", lambda sup: BufferActor.start(sup, buffer=self.buffer, directory=self.directory, inbox=self.buffer_window, metrics=self.metrics)),
                ChildSpec(
                    "signer",
                    lambda sup: SignerActor.start(
                        sup,
                        identity=self.identity,
                        sequencer=self.sequencer,
                        directory=self.directory,
                        inbox=self.signer_window,
                        downstream=self.buffer_window,
                        metrics=self.metrics,
                    ),
                ),
                ChildSpec(
                    "uplink",
                    lambda sup: UplinkActor.start(
                        sup,
                        settings=self.uplink_settings,
                        buffer=self.buffer,
                        identity=self.identity,
                        sequencer=self.sequencer,
                        gate=self.gate,
                        directory=self.directory,
                        metrics=self.metrics,
                    ),
                ),
            ],
            self.directory,
            hooks=SupervisorHooks(halt=self.halts.append),
        )

    def feed(self, source: str, first_ordinal: int, events: list) -> None:
        assert self.signer_window.acquire(timeout=10)
        assert self.directory.tell("signer", EventBatch(source, first_ordinal, events))

    def wait_delivered(self, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.signer_window.outstanding == 0 and self.buffer_window.outstanding == 0 and self.buffer.pending == 0:
                return True
            time.sleep(0.02)
        return False

    def core_events(self) -> list[tuple[str, int, bytes]]:
        assert self.core is not None
        store = CoreStore(os.path.join(self.core.data_dir, "store"))
        try:
            return list(store.events())
        finally:
            store.close()

    def stop(self) -> None:
        self.supervisor.stop(block=True, timeout=30)
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        if self.core is not None:
            self.core.stop()
        self.spool.close()

    def __enter__(self) -> "DeliveryRig":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
