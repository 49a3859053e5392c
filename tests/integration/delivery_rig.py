"""A delivery-process rig for tests: real signer, buffer and uplink actors, a real Core.

Tests feed EventBatches straight into the signer (as a dissection process would) and
watch what the Core stores. Also here: bigger captures built from the shared ones, a
free loopback port for a Core that must come back on the same address, and the
probe run as a real process (to be killed with real signals).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pykka

from actors.buffer import BufferActor
from actors.resources import child_pids
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


def conn_events(n: int, start: int = 0) -> list:
    """``n`` distinct encoded conn events shaped like real ones (about 430-byte bodies)."""
    from protocols.events.base import ConnId
    from protocols.events.conn import Conn

    return [
        encode_body(
            Conn(
                1_700_000_000.0 + i * 0.001, f"C{i:017x}", ConnId(f"10.1.{i >> 8 & 255}.{i & 255}", 40000 + i % 20000, "10.0.0.2", 445),
                "tcp", "smb", 1.25, 1000 + i, 2000 + i, "SF", None, None, 0, "ShADadFf", 10, 1500, 12, 2500, None, 6,
            )
        )
        for i in range(start, start + n)
    ]


def rss_anon() -> int:
    """Anonymous resident memory of this process in bytes (the heap; not the spool's mapped file)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class DeliveryRig:
    def __init__(
        self,
        root: str,
        *,
        core_url: str | None = None,
        quota: int = 64 << 20,
        memory_events: int = 10_000,
        memory_bytes: int = 64 << 20,
        uplink: dict | None = None,
        core_args: tuple[str, ...] = (),
        core_listen: str = "127.0.0.1:0",
        start_core: bool = True,
        spool_path: str | None = None,
        spool_map_size: int | None = None,
    ) -> None:
        self.root = root
        self.metrics = Metrics()
        self.directory = Directory()
        self.gate = TransmissionGate()
        self.identity = ProbeIdentity("rig-probe", os.path.join(root, "probe.key"))
        self.spool = Spool(spool_path or os.path.join(root, "spool"), quota, spool_map_size)
        self.buffer = TieredBuffer(self.spool, MemoryTier(memory_events, memory_bytes))
        self.sequencer = Sequencer(self.spool.next_seq, self.spool.source_progress)
        self.signer_window = Window(8)
        self.buffer_window = Window(8)
        self.core: EmbeddedCore | None = None
        if core_url is None:
            self.core = EmbeddedCore(os.path.join(root, "core"), core_listen, core_args)
            self.core.enroll(self.identity.probe_id, self.identity.public_key_hex)
            core_url = self.core.start() if start_core else f"ws://{core_listen}"
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

    def core_account(self) -> Any:
        assert self.core is not None
        store = CoreStore(os.path.join(self.core.data_dir, "store"))
        try:
            return store.account(self.identity.probe_id)
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


# --- real processes ------------------------------------------------------------------


def free_port() -> int:
    """A loopback port free right now (for a Core that must come back on the same address)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def core_stats(data_dir: str) -> dict[str, Any]:
    """The running Core's last stats snapshot ({} before the first)."""
    try:
        with open(os.path.join(data_dir, "stats.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def build_capture(sources: list[Path], copies: int, out: Path) -> int:
    """Write ``copies`` of the sources' packets to the pcap ``out``; return the packets written.

    Each copy gets its own IPv4 addresses (10.HI.LO.N for copy HI*256+LO, N numbering the
    source's addresses; header checksums recomputed) and comes after the previous one in
    time, so every copy yields its own flows and events.
    """
    packets: list[tuple[float, bytes, int]] = []
    for src in sources:
        data = Path(src).read_bytes()
        if data[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack_from("<I", data, 20)[0] != 1:
            raise ValueError(f"{src}: only little-endian microsecond Ethernet pcaps are handled here")
        off = 24
        while off + 16 <= len(data):
            sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
            packets.append((sec + usec / 1e6, data[off + 16 : off + 16 + incl], orig))
            off += 16 + incl
    packets.sort(key=lambda p: p[0])
    t0 = packets[0][0]
    span = packets[-1][0] - t0 + 1.0
    numbers: dict[bytes, int] = {}
    written = 0
    with open(out, "wb") as fh:
        fh.write(b"\xd4\xc3\xb2\xa1" + struct.pack("<HHiIII", 2, 4, 0, 0, 65535, 1))
        for k in range(copies):
            for ts, pkt, orig in packets:
                if len(pkt) >= 34 and pkt[12:14] == b"\x08\x00" and pkt[14] >> 4 == 4:
                    ihl = (pkt[14] & 15) * 4
                    b = bytearray(pkt)
                    for at in (26, 30):
                        n = numbers.setdefault(bytes(b[at : at + 4]), len(numbers) + 1)
                        b[at : at + 4] = bytes((10, k >> 8 & 255, k & 255, n))
                    b[24:26] = b"\0\0"
                    total = sum(struct.unpack_from(f">{ihl // 2}H", b, 14))
                    while total >> 16:
                        total = (total & 0xFFFF) + (total >> 16)
                    b[24:26] = struct.pack(">H", ~total & 0xFFFF)
                    pkt = bytes(b)
                stamp = ts - t0 + 1_700_000_000 + k * span
                sec = int(stamp)
                usec = min(999_999, int(round((stamp - sec) * 1e6)))
                fh.write(struct.pack("<IIII", sec, usec, len(pkt), orig) + pkt)
                written += 1
    if len(numbers) > 254:
        raise ValueError("too many distinct addresses in the sources for the 10.HI.LO.N scheme")
    return written


def event_key(record: bytes) -> tuple[str, float, bytes]:
    """(kind, ts, canonical body) of a signed record: what makes one event that event."""
    import msgpack

    obj = msgpack.unpackb(record[64:], raw=False)
    return obj[5], obj[4], msgpack.packb(obj[6])


def reference_events(pcap: Path) -> collections.Counter:
    """The events the engine yields for ``pcap`` (by :func:`event_key`), straight from dissect_file."""
    from probe.replay import dissect_file

    events, _ = dissect_file(pcap)
    out: collections.Counter = collections.Counter()
    for event in events:
        encoded = encode_body(event)
        out[(encoded.kind, encoded.ts, encoded.body)] += 1
    return out


def _reap(pids: list[int], grace: float) -> list[int]:
    """Wait up to ``grace`` s for ``pids`` to exit, SIGKILL the rest; return those that had to be killed."""
    deadline = time.monotonic() + grace
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        time.sleep(0.05)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "Z"


class ProbeProcess:
    """``python -m probe run`` as a real process against an external Core."""

    def __init__(self, data_dir: Path, pcap: Path, core_url: str, probe_id: str = "test-probe", settings: str = "") -> None:
        self.data_dir = Path(data_dir)
        self.pcap = pcap
        self.core_url = core_url
        self.probe_id = probe_id
        self.log_path = self.data_dir / "probe.log"
        self.config = self.data_dir / "probe.toml"
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = self.data_dir / "identity" / "probe.key"
        if not key.exists():
            from probe.identity import create_key

            create_key(str(key))

    @property
    def public_key_hex(self) -> str:
        from probe.identity import load_key, public_key_hex

        return public_key_hex(load_key(str(self.data_dir / "identity" / "probe.key")))

    def start(self) -> None:
        self.config.write_text(
            f'[probe]\nid = "{self.probe_id}"\n[logging]\nfile = "{self.log_path}"\nlevel = "info"\n{self.settings}\n'
        )
        # files, not pipes: the dissection process inherits them and may outlive a killed probe
        with open(self.data_dir / "stdout.txt", "wb") as out, open(self.data_dir / "stderr.txt", "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "probe", "run", "--config", str(self.config), "--pcap", str(self.pcap),
                 "--core", self.core_url, "--data-dir", str(self.data_dir), "--json-summary"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the run to end; its JSON summary."""
        assert self.proc is not None
        self.proc.wait(timeout=timeout)
        if self.proc.returncode not in (0, 3):
            err = (self.data_dir / "stderr.txt").read_text()[-2000:]
            raise AssertionError(f"probe exited {self.proc.returncode}: {err}")
        return json.loads((self.data_dir / "stdout.txt").read_text().strip().splitlines()[-1])

    def children(self) -> list[int]:
        """Pids of the probe's child processes (its dissection process)."""
        assert self.proc is not None
        return child_pids(b"", self.proc.pid)

    def stop(self, timeout: float = 60) -> dict[str, Any]:
        """SIGTERM, as an operator stops it: the run ends gracefully; its summary."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> list[int]:
        """SIGKILL the delivery process (no shutdown code runs); return the children it left."""
        assert self.proc is not None
        children = self.children()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL
        return _reap(children, grace=1.0)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            children = self.children()
            self.proc.kill()
            self.proc.wait(timeout=30)
            _reap(children, grace=0.0)

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The probe's JSON log lines of one event type, in order."""
        out = []
        if self.log_path.exists():
            for line in self.log_path.read_text().splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("event") == event:
                    out.append(obj)
        return out
