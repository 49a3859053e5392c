"""The live capture actor: an AF_PACKET socket with a TPACKET_V3 ring, read a block at a time.

No system call per packet: the actor reads every block the kernel has retired straight
from the shared memory map (``protocols.tpacket``), hands it back, and polls only when no
block is ready. A live capture never holds the kernel up: when the dissector's credit
window is closed the ring keeps the backlog while it is at most half full, and beyond
that the oldest blocks are dropped here, whole, and counted (``capture_dropped:window``),
so the ring never overflows. The kernel still counts what it could not place
(PACKET_STATISTICS, polled every second). No drop is ever silent.

The interface going down or away is a TransientError; the supervisor's replacement waits
for the link to come back and opens a fresh ring. The dissector, which holds the open
flows, is not touched.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import select
import socket
import time
from typing import Any, Callable, Protocol

import attrs

from actors.base import SupervisedActor, handles
from actors.capture import PauseCapture, ResumeCapture, StopCapture, bump
from actors.credit import Window
from actors.messages import FrameBatch, Tick
from actors.supervisor import Directory
from protocols import tpacket
from protocols.errors import TransientError

log = logging.getLogger("probe.capture")

#: seconds between PACKET_STATISTICS reads
STATS_PERIOD = 1.0
#: seconds without traffic after which the dissector gets a clock tick (idle flows expire)
TICK_PERIOD = 1.0
#: longest poll() inside one message (stop, pause and link messages get in between)
POLL_MS = 100
#: blocks read per message at most, so control messages are not starved under load
BLOCKS_PER_MESSAGE = 16
#: seconds a stopping capture waits for the dissector to take each remaining batch
FINAL_CREDIT_WAIT = 20.0
#: seconds to wait for credit while the ring holds a backlog
BLOCKED_WAIT = 0.005
#: seconds a failing capture waits for the dissector to take what it still holds
ABANDON_WAIT = 2.0


class Link(Protocol):
    """The interface's state as netlink reports it (probe.interfaces.LinkWatcher)."""

    state: str  # "up", "down" or "absent"

    def fileno(self) -> int: ...

    def drain(self) -> str: ...

    def refresh(self) -> str: ...


@attrs.frozen
class RingSettings:
    """Everything one ring capture needs; built by the application from [capture]."""

    interface: str
    hw_type: int = tpacket.ARPHRD_ETHER
    snaplen: int = 65535
    block_size: int = 1 << 22
    block_count: int = 64
    block_timeout_ms: int = 100
    batch_packets: int = 2048
    flush_ms: int = 100
    program: tuple[tuple[int, int, int, int], ...] = ()
    fanout_group: int | None = None
    promiscuous: bool = True


@attrs.frozen(slots=True)
class Poll:
    """Self-message: read what the ring holds (or wait for it a little)."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """SO_ATTACH_FILTER: the kernel runs ``program`` on each packet and keeps what it accepts."""
    insns = (_Insn * len(program))(*[_Insn(*i) for i in program])
    fprog = _SockFprog(len(program), ctypes.cast(insns, ctypes.POINTER(_Insn)))
    sock.setsockopt(socket.SOL_SOCKET, tpacket.SO_ATTACH_FILTER, bytes(memoryview(fprog).cast("B")))


class RingCaptureActor(SupervisedActor):
    """Captures one interface into frame batches for the dissector; drops (and counts) when it lags."""

    name = "capture"

    def __init__(
        self,
        supervisor: Any,
        *,
        settings: RingSettings,
        link: Link,
        directory: Directory,
        downstream: Window,
        counters: dict[str, int],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(supervisor)
        self.settings = settings
        self.link = link
        self.directory = directory
        self.downstream = downstream
        self.counters = counters
        self.on_change = on_change  # the ring opened or failed: report the counters now
        self.mode = tpacket.link_mode(settings.hw_type)
        self.geometry = tpacket.RingGeometry(settings.block_size, settings.block_count, settings.block_timeout_ms)
        self.sock: socket.socket | None = None
        self.ring: mmap.mmap | None = None
        self.poller: select.poll | None = None
        self.reader: tpacket.BlockReader | None = None
        self.block = 0
        self.frames: list = []
        self.frames_since = 0.0
        self.last_stats = 0.0
        self.last_handoff = 0.0
        self.paused = False
        self.finished = False
        self.waiting_logged = False

    # --- lifecycle -------------------------------------------------------------------

    def start_child(self) -> None:
        if self.counters.get("capture_starts"):
            bump(self.counters, "capture_restarts")  # a replacement after a failure
        bump(self.counters, "capture_starts")
        self.counters.setdefault("capture_open", 0)
        self.link.refresh()
        if self.link.state == "up":
            self._open()
        self.actor_ref.tell(Poll())

    def stop_child(self) -> None:
        self._close()

    def _open(self) -> None:
        s = self.settings
        problem = self.geometry.problem(mmap.PAGESIZE)
        if problem:
            raise ValueError(problem)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM if self.mode.cooked else socket.SOCK_RAW, 0)
        try:
            # protocol 0 until bind: nothing enters the ring before the filter is on
            sock.setsockopt(tpacket.SOL_PACKET, tpacket.PACKET_VERSION, tpacket.TPACKET_V3)
            if s.program:
                attach_filter(sock, s.program)
            sock.setsockopt(tpacket.SOL_PACKET, tpacket.PACKET_RX_RING, self.geometry.request())
            ring = mmap.mmap(sock.fileno(), self.geometry.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                sock.bind((s.interface, tpacket.ETH_P_ALL))
                if s.promiscuous:
                    ifindex = socket.if_nametoindex(s.interface)
                    sock.setsockopt(tpacket.SOL_PACKET, tpacket.PACKET_ADD_MEMBERSHIP, tpacket.promisc_request(ifindex))
                if s.fanout_group is not None:
                    sock.setsockopt(tpacket.SOL_PACKET, tpacket.PACKET_FANOUT, tpacket.fanout_argument(s.fanout_group))
            except BaseException:
                ring.close()
                raise
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO, errno.ENETDOWN):
                self._fail("interface_vanished" if exc.errno != errno.ENETDOWN else "link_down", f"cannot open {s.interface}: {exc.strerror}")
            raise
        self.sock, self.ring = sock, ring
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN | select.POLLERR)
        self.poller.register(self.link.fileno(), select.POLLIN)
        self.reader = tpacket.BlockReader(self.mode, s.block_size, {})
        self.block = 0
        self.last_stats = time.monotonic()
        self.last_handoff = self.last_stats
        for key in ("kernel_packets", "kernel_drops", "kernel_freezes", "capture_packets"):
            self.counters.setdefault(key, 0)  # present from the start: a zero is a statement too
        self.counters["capture_open"] = 1
        self.waiting_logged = False
        log.info(
            "capturing on %s (%d x %d KiB ring%s%s)",
            s.interface,
            s.block_count,
            s.block_size >> 10,
            f", fanout group {s.fanout_group}" if s.fanout_group is not None else "",
            ", filtered" if len(s.program) > 1 else "",
            extra={"component": "capture", "event": "capture_open", "interface": s.interface},
        )
        self.on_change()

    def _close(self) -> None:
        if self.sock is not None:
            self._read_stats()
            self._merge_reader_counters()
            self.counters["capture_open"] = 0
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.poller = None

    # --- the loop ----------------------------------------------------------------------

    @handles(Poll)
    def on_poll(self, _: Poll) -> None:
        if self.finished:
            return
        if self.sock is None:
            self._wait_for_link()
        else:
            self._capture()
        self.actor_ref.tell(Poll())

    def _wait_for_link(self) -> None:
        if not self.waiting_logged:
            self.waiting_logged = True
            log.warning(
                "interface %s is %s: waiting for it",
                self.settings.interface,
                self.link.state,
                extra={"component": "capture", "event": "link_wait", "interface": self.settings.interface},
            )
        ready, _, _ = select.select([self.link.fileno()], [], [], POLL_MS / 1000)
        if ready:
            self.link.drain()
        if self.link.state == "up":
            self._open()
        elif time.monotonic() - self.last_handoff >= TICK_PERIOD:
            self._tick()

    def _capture(self) -> None:
        ring = self.ring
        reader = self.reader
        assert ring is not None and reader is not None and self.poller is not None
        size = self.settings.block_size
        count = self.settings.block_count
        batch = self.settings.batch_packets
        window = self.downstream
        read = 0
        blocked = False
        while read < BLOCKS_PER_MESSAGE:
            offset = self.block * size
            if not tpacket.block_ready(ring, offset):
                break
            blocked = len(self.frames) >= batch and window.outstanding >= window.size
            if self.paused:
                bump(self.counters, "capture_dropped:paused", tpacket.block_packet_count(ring, offset))
            elif blocked:
                # a batch already waits for credit: the ring holds the backlog while it has
                # room; past half full the oldest block is dropped here, whole and unparsed,
                # so that the kernel never has to drop and the dissector is not slowed further
                if self._backlog() <= count // 2:
                    break
                bump(self.counters, "capture_dropped:window", tpacket.block_packet_count(ring, offset))
            else:
                if not self.frames:
                    self.frames_since = time.monotonic()
                reader.read(ring, offset, self.frames)
            tpacket.release_block(ring, offset)
            self.block = (self.block + 1) % count
            read += 1
        if blocked:
            if window.acquire(timeout=BLOCKED_WAIT):  # wait for the dissector, not for packets
                window.release()
        elif read == 0:
            for fd, events in self.poller.poll(POLL_MS):
                if fd == self.link.fileno():
                    self.link.drain()
                elif events & select.POLLERR:
                    self._socket_error()
        if self.link.state != "up":
            self._abandon()
            self._fail("link_down" if self.link.state == "down" else "interface_vanished", f"interface {self.settings.interface} is {self.link.state}")
        now = time.monotonic()
        if self.frames and (len(self.frames) >= batch or now - self.frames_since >= self.settings.flush_ms / 1000):
            self._hand_off()
        elif not self.frames and now - self.last_handoff >= TICK_PERIOD:
            self._tick()
        if now - self.last_stats >= STATS_PERIOD:
            ready, _, _ = select.select([self.link.fileno()], [], [], 0)  # the poll above may not have run
            if ready:
                self.link.drain()
            self._read_stats()
            self._merge_reader_counters()

    def _backlog(self) -> int:
        """Retired blocks waiting in the ring, from the next one to read."""
        assert self.ring is not None
        size = self.settings.block_size
        count = self.settings.block_count
        waiting = 0
        while waiting < count and tpacket.block_ready(self.ring, ((self.block + waiting) % count) * size):
            waiting += 1
        return waiting

    def _socket_error(self) -> None:
        assert self.sock is not None
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
            self.link.refresh()
            self._abandon()
            reason = "interface_vanished" if self.link.state == "absent" or code != errno.ENETDOWN else "link_down"
            self._fail(reason, f"capture socket on {self.settings.interface}: {errno.errorcode.get(code, code)}")
        if code:
            bump(self.counters, f"capture_socket_errors:{errno.errorcode.get(code, code)}")

    def _fail(self, reason: str, message: str) -> None:
        bump(self.counters, f"capture_failures:{reason}")
        self._close()
        self.on_change()
        raise TransientError(message, reason=reason)

    def _hand_off(self, final: bool = False) -> None:
        """Send the pending frames to the dissector in batches while it has credit.

        What finds the window closed stays pending (one batch's worth; the blocks that
        arrive meanwhile are dropped whole and counted). The final batch always goes.
        """
        size = self.settings.batch_packets
        while self.frames or final:
            last = final and len(self.frames) <= size
            if final:  # stopping: the rest and the final batch must arrive, unless the dissector is stuck
                if not self.downstream.acquire(timeout=FINAL_CREDIT_WAIT):
                    bump(self.counters, "capture_dropped:stopping", len(self.frames))
                    self.frames = []
                    log.error("the dissector took no batch for %g s while stopping", FINAL_CREDIT_WAIT)
                    return
            elif not self.downstream.try_acquire():
                return
            chunk = self.frames[:size]
            del self.frames[:size]
            bump(self.counters, "capture_packets", len(chunk))
            self.directory.tell("dissector", FrameBatch(chunk, final=last))
            self.last_handoff = time.monotonic()
            if last:
                return
            self.frames_since = self.last_handoff

    def _abandon(self) -> None:
        """The capture fails: hand on what the ring and the batch hold (waiting a little for
        credit), count what the dissector could not take as dropped."""
        if self.ring is not None:
            self._read_ready()
        deadline = time.monotonic() + ABANDON_WAIT
        while self.frames and time.monotonic() < deadline:
            if self.downstream.acquire(timeout=0.05):
                self.downstream.release()
                self._hand_off()
        if self.frames:
            bump(self.counters, "capture_dropped:capture_failed", len(self.frames))
            self.frames = []

    def _tick(self) -> None:
        self.last_handoff = time.monotonic()
        if self.downstream.outstanding == 0:
            self.directory.tell("dissector", Tick(time.time()), wait=0)

    def _read_stats(self) -> None:
        self.last_stats = time.monotonic()
        if self.sock is None:
            return
        try:
            raw = self.sock.getsockopt(tpacket.SOL_PACKET, tpacket.PACKET_STATISTICS, tpacket.STATS_SIZE)
        except OSError as exc:
            log.warning("cannot read ring statistics: %s", exc)
            return
        packets, drops, freezes = tpacket.parse_stats(raw)
        bump(self.counters, "kernel_packets", packets)
        bump(self.counters, "kernel_drops", drops)
        bump(self.counters, "kernel_freezes", freezes)
        if drops:
            log.warning(
                "the kernel dropped %d packets on %s: the ring was full",
                drops,
                self.settings.interface,
                extra={"component": "capture", "event": "kernel_drops", "count": drops},
            )

    def _merge_reader_counters(self) -> None:
        if self.reader is None:
            return
        for key, value in self.reader.counters.items():
            bump(self.counters, key, value)
        self.reader.counters.clear()

    # --- control -----------------------------------------------------------------------

    @handles(StopCapture)
    def on_stop_capture(self, _: StopCapture) -> None:
        """Graceful end: take what the ring holds, send the final batch, close the socket."""
        if self.finished:
            return
        if self.ring is not None and self.reader is not None and self.poller is not None:
            # what the ring holds is dissected (at most the whole ring); the block being
            # filled retires within the block timeout, so wait that long for it
            self._read_ready()
            deadline = time.monotonic() + self.settings.block_timeout_ms / 1000 + 0.05
            while not tpacket.block_ready(self.ring, self.block * self.settings.block_size):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.poller.poll(max(1, int(left * 1000)))
            self._read_ready()
            # whatever arrived after that is not dissected: count it, never lose it silently
            bump(self.counters, "capture_dropped:stopping", tpacket.block_packet_count(self.ring, self.block * self.settings.block_size))
        self.paused = False
        self._close()
        self.finished = True
        self._hand_off(final=True)

    def _read_ready(self) -> None:
        """Parse every retired block (one pass round the ring at most)."""
        assert self.ring is not None and self.reader is not None
        for _ in range(self.settings.block_count):
            offset = self.block * self.settings.block_size
            if not tpacket.block_ready(self.ring, offset):
                return
            self.reader.read(self.ring, offset, self.frames)
            tpacket.release_block(self.ring, offset)
            self.block = (self.block + 1) % self.settings.block_count

    @handles(PauseCapture)
    def on_pause(self, pause: PauseCapture) -> None:
        """Operator: discard (and count) what arrives until resumed; frames already handed
        on are still dissected, and the report follows them."""
        self.paused = True
        self.counters["capture_paused"] = 1
        if pause.report is not None:
            self.directory.tell("dissector", pause.report)

    @handles(ResumeCapture)
    def on_resume(self, resume: ResumeCapture) -> None:
        self.paused = False
        self.counters["capture_paused"] = 0
        if resume.report is not None:
            self.directory.tell("dissector", resume.report)
