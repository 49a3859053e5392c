"""Shared parts of the delivery benchmarks: the delivery process's actors and a Core process.

The pipeline is the real one (signer, buffer with its LMDB spool, uplink) in this
process, which plays the delivery process; the reference Core runs as its own process
on loopback. Events enter the signer in batches, as a dissection process hands them
over, from a pool of realistic encoded ``conn`` events (about 430-byte bodies).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pykka  # noqa: E402

from actors.buffer import BufferActor  # noqa: E402
from actors.credit import Window  # noqa: E402
from actors.messages import EventBatch  # noqa: E402
from actors.metrics import Metrics  # noqa: E402
from actors.sequencer import Sequencer  # noqa: E402
from actors.signer import SignerActor  # noqa: E402
from actors.supervisor import ChildSpec, Directory, Supervisor  # noqa: E402
from actors.uplink import TransmissionGate, UplinkActor, UplinkSettings  # noqa: E402
from probe.core.embedded import EmbeddedCore  # noqa: E402
from probe.identity import ProbeIdentity  # noqa: E402
from protocols.events import encode_body  # noqa: E402
from protocols.events.base import ConnId, EncodedEvent  # noqa: E402
from protocols.events.conn import Conn  # noqa: E402
from storage.buffer import TieredBuffer  # noqa: E402
from storage.memtier import MemoryTier  # noqa: E402
from storage.spool import Spool  # noqa: E402


def conn_pool(n: int = 4096) -> list[EncodedEvent]:
    """``n`` distinct encoded conn events shaped like real ones."""
    return [
        encode_body(
            Conn(
                1.7e9 + i * 0.001, f"C{i:017x}", ConnId(f"10.1.{i >> 8 & 255}.{i & 255}", 40000 + i % 20000, "10.0.0.2", 445),
                "tcp", "smb", 1.25, 1000 + i, 2000 + i, "SF", None, None, 0, "ShADadFf", 10, 1500, 12, 2500, None, 6,
            )
        )
        for i in range(n)
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Pipeline:
    """The delivery process's actors over a spool in ``root``, delivering to a Core process."""

    def __init__(
        self,
        root: str,
        *,
        quota: int = 4 << 30,
        memory_events: int = 100_000,
        memory_bytes: int = 64 << 20,
        window: int = 8,
        uplink: dict[str, Any] | None = None,
        core_listen: str = "127.0.0.1:0",
        core_args: tuple[str, ...] = (),
        start_core: bool = True,
    ) -> None:
        self.root = root
        self.metrics = Metrics()
        self.directory = Directory()
        self.identity = ProbeIdentity("bench-probe", os.path.join(root, "probe.key"))
        self.spool = Spool(os.path.join(root, "spool"), quota)
        self.buffer = TieredBuffer(self.spool, MemoryTier(memory_events, memory_bytes))
        self.sequencer = Sequencer(self.spool.next_seq, self.spool.source_progress)
        self.signer_window = Window(window)
        self.buffer_window = Window(window)
        self.core = EmbeddedCore(os.path.join(root, "core"), core_listen, core_args)
        self.core.enroll(self.identity.probe_id, self.identity.public_key_hex)
        self.core_url = self.core.start() if start_core else f"ws://{core_listen}"
        gate = TransmissionGate()
        settings = UplinkSettings(url=self.core_url, **(uplink or {}))
        self.supervisor = Supervisor.start(
            [
                ChildSpec("buffer", lambda sup: BufferActor.start(sup, buffer=self.buffer, directory=self.directory, inbox=self.buffer_window, metrics=self.metrics)),
                ChildSpec(
                    "signer",
                    lambda sup: SignerActor.start(
                        sup, identity=self.identity, sequencer=self.sequencer, directory=self.directory,
                        inbox=self.signer_window, downstream=self.buffer_window, metrics=self.metrics,
                    ),
                ),
                ChildSpec(
                    "uplink",
                    lambda sup: UplinkActor.start(
                        sup, settings=settings, buffer=self.buffer, identity=self.identity, sequencer=self.sequencer,
                        gate=gate, directory=self.directory, metrics=self.metrics,
                    ),
                ),
            ],
            self.directory,
        )

    def feed(self, source: str, first_ordinal: int, events: list[EncodedEvent]) -> None:
        """Hand one batch to the signer, waiting for credit as a dissection process does."""
        self.signer_window.acquire()
        self.directory.tell("signer", EventBatch(source, first_ordinal, events))

    def settled(self) -> bool:
        """Every batch fed is signed and stored."""
        return self.signer_window.outstanding == 0 and self.buffer_window.outstanding == 0

    def wait_delivered(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled() and self.buffer.pending == 0:
                return True
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        self.supervisor.stop(block=True, timeout=60)
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        self.core.stop()
        self.buffer.close()
