"""The uplink actor: one WebSocket to the Core, sending within credit, reconnecting with backoff.

The connection is the restartable unit: when the Core is unreachable, the actor retries
on its own with exponential backoff (100 ms doubling to 30 s, with jitter, reset after a
stable connection) while capture and buffering go on. Only an identity failure (the
Core refuses authentication) leaves the actor, as an IdentityError the supervisor turns
into a halt. Events are read from the shared buffer in sequence order, merged with the
drop reports that explain gaps, and deleted from it only when the Core acknowledges.
"""

from __future__ import annotations

import collections
import inspect
import logging
import random
import socket
import struct
import threading
import time
from typing import Any, Callable, Protocol

import attrs
import nacl.signing
import websockets
from websockets.sync.client import ClientConnection, connect

from actors.base import SupervisedActor, handles
from actors.messages import Acked, Halt, ResumeTransmission, SequenceReused, Stored, Tick
from actors.metrics import Metrics
from actors.resend import RejectedResends
from actors.sequencer import Sequencer
from actors.supervisor import Directory
from protocols import wire
from protocols.errors import IdentityError
from protocols.identity import tls_peer_verify_failure, tls_refusal_reason
from storage.buffer import TieredBuffer

log = logging.getLogger("probe.uplink")

#: websockets 17 asks for ``legacy=True`` to keep a connection outside a ``with`` block
_CONNECT_EXTRA = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


class _ExplainedConnection(ClientConnection):
    """A failed opening handshake raises the socket's own error (a TLS alert names the reason)."""

    def handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().handshake(*args, **kwargs)
        except (websockets.WebSocketException, OSError, EOFError) as exc:
            cause = getattr(self, "connection_exc", None)
            if isinstance(cause, OSError) and cause is not exc:
                raise cause from exc
            raise


@attrs.frozen(slots=True)
class Connect:
    """Timer message: try to (re)connect now."""


@attrs.frozen(slots=True)
class FrameIn:
    """A message the reader thread received on connection ``generation``."""

    generation: int
    data: bytes | str


@attrs.frozen(slots=True)
class Pump:
    """Timer message: the pacer has credit again, send what is due."""


@attrs.frozen(slots=True)
class ConnectionLost:
    """The reader thread saw connection ``generation`` close."""

    generation: int
    reason: str


@attrs.frozen
class UplinkSettings:
    url: str
    batch_events: int = 1000
    connect_timeout: float = 5.0
    ack_timeout: float = 30.0
    backoff_initial: float = 0.1
    backoff_max: float = 30.0
    backoff_jitter: float = 0.2
    stable_after: float = 10.0
    compression: bool = False
    ssl_context: Any = None


class Pacer:
    """A token bucket holding the send rate to what the Core suggested under backpressure."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.rate = 0.0
        self.tokens = 0.0
        self._at = clock()

    def set_rate(self, rate: float) -> None:
        self._refill()
        self.rate = max(0.0, rate)
        self.tokens = min(self.tokens, self.burst)

    @property
    def burst(self) -> float:
        """At most a quarter second's worth (and one event) saved up."""
        return max(1.0, self.rate * 0.25)

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def allowance(self) -> int:
        """Events that may be sent now."""
        self._refill()
        return int(self.tokens)

    def spend(self, n: int) -> None:
        self.tokens -= n

    def wait_for(self, n: int) -> float | None:
        """Seconds until ``n`` events may go (None: never, the rate is 0)."""
        if self.rate <= 0:
            return None
        self._refill()
        return max(0.0, (min(n, self.burst) - self.tokens) / self.rate)


class TransmissionGate:
    """Whether the probe may transmit; halted on an identity failure until an operator acts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.halted = False
        self.reason: str | None = None
        self.since: float | None = None

    def halt(self, reason: str) -> None:
        with self._lock:
            if not self.halted:
                self.halted, self.reason, self.since = True, reason, time.time()

    def resume(self) -> None:
        with self._lock:
            self.halted, self.reason, self.since = False, None, None


class Identity(Protocol):
    probe_id: str
    boot_id: str
    boot_seq: int

    def signing_key(self) -> nacl.signing.SigningKey: ...

    def certificate(self) -> bytes | None: ...

    def check_current(self) -> None:
        """Raise IdentityError when the identity is not usable right now."""

    def client_ssl_context(self) -> Any:
        """The mutual-TLS context for a wss:// Core (None without a certificate)."""

    def record_failure(self, error: IdentityError) -> None:
        """Note an identity failure found outside the identity (the Core refused it)."""


def bound_blocking_sends(sock: socket.socket, seconds: float) -> None:
    """Make a send that neither the Core nor the network takes within ``seconds`` fail.

    Without it, a cut link (or a Core that stopped reading) fills the socket buffer and
    ``ws.send`` blocks the uplink actor for as long as TCP retransmits (about 15
    minutes on Linux): the ack timeout, which runs in the same actor, never fires and
    the probe looks connected while nothing moves (found by scenarios/core_partition.py).
    SO_SNDTIMEO bounds each blocked send; TCP_USER_TIMEOUT makes the kernel drop a
    connection whose sent data stays unacknowledged that long, which also wakes the
    reader thread.
    """
    whole = int(seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(seconds * 1000)))


def backoff_delay(attempt: int, settings: UplinkSettings, rng: Callable[[], float] = random.random) -> float:
    """Delay before reconnection attempt ``attempt`` (0-based): initial * 2^n, capped, jittered."""
    base = min(settings.backoff_max, settings.backoff_initial * (2 ** min(attempt, 62)))
    jitter = settings.backoff_jitter * (2 * rng() - 1)
    return max(0.0, base * (1 + jitter))


class UplinkActor(SupervisedActor):
    """Delivers buffered events to the Core over protocol v1."""

    name = "uplink"
    DATA_MESSAGES = ()

    def __init__(
        self,
        supervisor: Any,
        *,
        settings: UplinkSettings,
        buffer: TieredBuffer,
        identity: Identity,
        sequencer: Sequencer,
        gate: TransmissionGate,
        directory: Directory,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(supervisor)
        self.settings = settings
        self.buffer = buffer
        self.identity = identity
        self.sequencer = sequencer
        self.gate = gate
        self.directory = directory
        self.metrics = metrics
        self.clock = clock
        self.ws: ClientConnection | None = None
        self.generation = 0
        self.state = "disconnected"
        self.attempt = 0
        self.connected_at = 0.0
        self.credit = 0
        self.acked = 0
        self.sent_upto = 0
        #: frames awaiting their ack: (frame number on this connection, events in it)
        self._flight: collections.deque[tuple[int, int]] = collections.deque()
        self.in_flight = 0
        self.last_ack = 0.0
        self.backpressure = False
        self.backpressure_rate: float | None = None
        self._backpressure_since: float | None = None
        self.pacer = Pacer(clock)
        self._pump_due = False
        self._timers: list[threading.Timer] = []
        self._stopped = False
        self.delays: collections.deque[float] = collections.deque(maxlen=64)
        self.resends = RejectedResends()
        self._frames_out = 0  # events and drops frames sent on this connection (each gets one ack)
        self._acks_in = 0
        self._buffer_acked = 0  # how far the buffer was told to delete

    # --- lifecycle ----------------------------------------------------------------------

    def start_child(self) -> None:
        self._set_state("halted" if self.gate.halted else "disconnected")
        self.actor_ref.tell(Connect())
        self._every(1.0, Tick)

    def stop_child(self) -> None:
        self._stopped = True
        for timer in self._timers:
            timer.cancel()
        self._close("probe stopping")

    def _later(self, delay: float, message: Any) -> None:
        def fire() -> None:
            if not self._stopped:
                try:
                    self.actor_ref.tell(message)
                except Exception:  # the actor is gone; nothing to deliver to
                    return

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _every(self, period: float, factory: Callable[[float], Any]) -> None:
        def loop() -> None:
            while not self._stopped:
                time.sleep(period)
                try:
                    self.actor_ref.tell(factory(self.clock()))
                except Exception:  # the actor is gone; stop ticking
                    return

        threading.Thread(target=loop, name="uplink-tick", daemon=True).start()

    def _set_state(self, state: str) -> None:
        self.state = state
        for name in ("disconnected", "connecting", "connected", "halted"):
            self.metrics.set("uplink_state", 1.0 if name == state else 0.0, state=name)

    # --- connecting ---------------------------------------------------------------------

    @handles(Connect)
    def on_connect(self, _: Connect) -> None:
        if self.gate.halted:
            self._set_state("halted")
            return
        if self.ws is not None:
            return
        self._set_state("connecting")
        try:
            self._open()
        except IdentityError:
            self._close("identity refused")
            raise
        except (OSError, TimeoutError, websockets.WebSocketException, wire.FrameError, ConnectionError) as exc:
            self._close(str(exc))
            refused = tls_refusal_reason(exc)
            if refused is not None:
                raise self._refused(refused, f"the Core's TLS layer refused this probe's certificate ({refused})") from None
            peer = tls_peer_verify_failure(exc)
            if peer is not None:
                self.metrics.inc("uplink_core_certificate_failures_total")
                self._failed(f"the Core's certificate does not verify: {peer}")
                return
            self._failed(f"{type(exc).__name__}: {exc}")

    def _open(self) -> None:
        s = self.settings
        self.identity.check_current()
        tls = s.ssl_context or (self.identity.client_ssl_context() if s.url.startswith("wss://") else None)
        ws = connect(
            s.url,
            subprotocols=[wire.SUBPROTOCOL],
            open_timeout=s.connect_timeout,
            close_timeout=2,
            compression="deflate" if s.compression else None,
            max_size=wire.MAX_FRAME,
            ssl=tls,
            ping_interval=20,
            ping_timeout=20,
            create_connection=_ExplainedConnection,
            **_CONNECT_EXTRA,
        )
        self.ws = ws
        bound_blocking_sends(ws.socket, s.ack_timeout)
        challenge = self._expect(ws, wire.Challenge)
        key = self.identity.signing_key()
        public = bytes(key.verify_key)
        proof = key.sign(wire.hello_proof_message(challenge.nonce, self.identity.probe_id, self.identity.boot_id, public)).signature
        ws.send(
            wire.encode(
                wire.Hello(
                    self.identity.probe_id,
                    self.identity.boot_id,
                    public,
                    proof,
                    self.buffer.first_seq(),
                    self.sequencer.next_seq - 1,
                    self.identity.certificate(),
                    self.identity.boot_seq,
                )
            )
        )
        welcome = self._expect(ws, wire.Welcome)
        self.generation += 1
        self.connected_at = self.clock()
        self.last_ack = self.connected_at
        self.credit = welcome.credit
        self.acked = welcome.resume
        self.sent_upto = welcome.resume
        self.buffer.rewind(welcome.resume)
        self._flight.clear()
        self.in_flight = 0
        self.sequencer.ensure_above(welcome.resume)
        self._frames_out = self._acks_in = 0
        reused = min(welcome.resume, welcome.reused_through)
        if reused and 0 < self.buffer.first_seq() <= reused:
            self._sequence_reused(reused)
        self._release_buffer(wait=5)
        self._set_state("connected")
        self.metrics.inc("uplink_connects_total")
        # one line per connection (reconnections are bounded by the backoff, none is suppressed)
        log.info(
            f"connected to the Core at {s.url}; resuming after {welcome.resume}",
            extra={"component": "uplink", "event": "connected", "resume": welcome.resume, "credit": welcome.credit},
        )
        threading.Thread(target=self._read_loop, args=(ws, self.generation), name="uplink-reader", daemon=True).start()
        self._resend(self.resends.reconnected())
        self._pump()

    def _sequence_reused(self, through: int) -> None:
        """The Core already holds our numbers up to ``through`` (spool wiped or restored, key kept)."""
        self.metrics.inc("uplink_sequence_reused_total")
        log.error(
            f"the Core already holds this probe's sequence numbers up to {through} (the spool was wiped or restored "
            f"while the key was kept): buffered events numbered that low are dropped as sequence_reused; "
            f"new events are numbered from {through + 1}",
            extra={"component": "uplink", "event": "sequence_reused", "reason": "sequence_reused", "through": through},
        )
        self.directory.tell("buffer", SequenceReused(through), wait=5)

    def _expect(self, ws: ClientConnection, kind: type) -> Any:
        data = ws.recv(timeout=self.settings.connect_timeout)
        frame = wire.decode(data)
        if isinstance(frame, wire.Error):
            self._on_error_frame(frame)
            raise ConnectionError(f"Core error {frame.code}: {frame.message}")
        if not isinstance(frame, kind):
            raise wire.FrameError(wire.ErrorCode.UNEXPECTED_FRAME, f"expected {kind.__name__}, got {type(frame).__name__}")
        return frame

    def _failed(self, why: str) -> None:
        self.metrics.inc("uplink_connection_failures_total")
        if self.connected_at and self.clock() - self.connected_at >= self.settings.stable_after:
            self.attempt = 0  # the connection that just ended was stable: start the backoff over
        self.connected_at = 0.0
        delay = backoff_delay(self.attempt, self.settings)
        self.delays.append(delay)
        self.metrics.set("uplink_backoff_seconds", delay)
        self._set_state("disconnected")
        # one line per attempt (the backoff itself bounds their rate, so none is suppressed)
        log.warning(
            f"Core unreachable (attempt {self.attempt}: {why}); retrying in {delay:.3f} s",
            extra={"component": "uplink", "event": "connection_failed", "reason": why, "attempt": self.attempt, "delay": round(delay, 4)},
        )
        self.attempt += 1
        self._later(delay, Connect())

    def _close(self, reason: str) -> None:
        ws, self.ws = self.ws, None
        self.generation += 1
        self._end_backpressure()
        if ws is not None:
            try:
                ws.close()
            except (OSError, websockets.WebSocketException):
                pass

    def _read_loop(self, ws: ClientConnection, generation: int) -> None:
        try:
            while True:
                self.actor_ref.tell(FrameIn(generation, ws.recv()))
        except websockets.ConnectionClosed as exc:
            reason = str(exc)
        except (OSError, websockets.WebSocketException) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        try:
            self.actor_ref.tell(ConnectionLost(generation, reason))
        except Exception:  # the actor is gone
            return

    @handles(ConnectionLost)
    def on_lost(self, lost: ConnectionLost) -> None:
        if lost.generation != self.generation or self.ws is None:
            return
        self._close(lost.reason)
        if not self.gate.halted and not self._stopped:
            self._failed(f"connection lost: {lost.reason}")

    # --- frames from the Core -----------------------------------------------------------

    @handles(FrameIn)
    def on_frame(self, message: FrameIn) -> None:
        if message.generation != self.generation or self.ws is None:
            return
        try:
            frame = wire.decode(message.data)
        except wire.FrameError as exc:
            self.metrics.inc("uplink_bad_frames_total", code=exc.code)
            log.warning("bad frame from the Core: %s", exc, extra={"component": "uplink", "event": "bad_frame", "reason": exc.code})
            self._send(wire.Error(exc.code, str(exc)))
            return
        if isinstance(frame, wire.Ack):
            self._on_ack(frame)
        elif isinstance(frame, wire.Backpressure):
            self._on_backpressure(frame)
        elif isinstance(frame, wire.Error):
            self._on_error_frame(frame)
            if frame.fatal:
                self._close(frame.code)
                self._failed(f"Core closed the session: {frame.code}")
        else:
            self.metrics.inc("uplink_bad_frames_total", code=wire.ErrorCode.UNEXPECTED_FRAME)
            self._send(wire.Error(wire.ErrorCode.UNEXPECTED_FRAME, f"{type(frame).__name__} not expected now"))

    def _on_error_frame(self, frame: wire.Error) -> None:
        self.metrics.inc("uplink_core_errors_total", code=frame.code)
        if frame.code in wire.IDENTITY_CODES:
            raise self._refused(frame.code, f"the Core refused this probe: {frame.code}: {frame.message}")
        log.warning("Core reported %s: %s", frame.code, frame.message, extra={"component": "uplink", "event": "core_error", "reason": frame.code})

    def _on_ack(self, ack: wire.Ack) -> None:
        if ack.seq > self.sent_upto:
            # acknowledging what was never sent would delete it unsent: refuse, count, keep it
            self.metrics.inc("uplink_bad_frames_total", code=wire.ErrorCode.UNEXPECTED_FRAME)
            log.warning(
                "the Core acknowledged %d but only %d was sent; ignored", ack.seq, self.sent_upto,
                extra={"component": "uplink", "event": "bad_frame", "reason": wire.ErrorCode.UNEXPECTED_FRAME},
            )
            self._send(wire.Error(wire.ErrorCode.UNEXPECTED_FRAME, f"ack {ack.seq} beyond the last sequence sent ({self.sent_upto})"))
            return
        self.last_ack = self.clock()
        self._acks_in += 1
        if ack.rejected:
            for seq, code in ack.rejected:
                self.metrics.inc("events_rejected_by_core_total", code=code)
            for seq, code in ack.rejected[:10]:
                log.warning("Core rejected event %d: %s", seq, code, extra={"component": "uplink", "event": "event_rejected", "reason": code})
        resend = self.resends.on_ack(self._acks_in, ack.rejected) if (ack.rejected or self.resends) else []
        # the Core answers each frame with one ack, in order: this one settles the oldest in flight
        while self._flight and self._flight[0][0] <= self._acks_in:
            self.in_flight -= self._flight.popleft()[1]
        if ack.seq > self.acked:
            self.acked = ack.seq
        self._release_buffer(wait=5)
        self.credit = ack.credit
        self._resend(resend)
        self._pump()

    def _release_buffer(self, wait: float) -> None:
        """Let the buffer delete what the Core holds, short of events waiting for their re-send."""
        point = self.resends.ack_point(self.acked)
        refused = self.resends.take_final(point)
        if point != self._buffer_acked or refused:
            self._buffer_acked = point
            self.directory.tell("buffer", Acked(point, refused) if refused else Acked(point), wait=wait)
            for seq, reason in refused:
                log.warning(
                    "event %d refused again by the Core; dropped (%s)", seq, reason,
                    extra={"component": "uplink", "event": "event_dropped", "reason": reason},
                )

    def _resend(self, seqs: list[int]) -> None:
        """Send the buffer's copy of each refused event once more, one frame each."""
        for seq in seqs:
            records = self.buffer.read(seq - 1, 1)
            if not records or records[0][0] != seq:
                self.resends.missing(seq)
                continue
            if not self._send(wire.Events((records[0][1],))):
                return
            self.resends.sent(seq, self._frames_out)
            self.metrics.inc("events_resent_total")
            log.info("re-sending event %d refused by the Core", seq, extra={"component": "uplink", "event": "event_resent"})

    def _on_backpressure(self, frame: wire.Backpressure) -> None:
        now = self.clock()
        if frame.on and not self.backpressure:
            self.backpressure = True
            self._backpressure_since = now
            self.pacer = Pacer(self.clock)
            self.metrics.inc("uplink_backpressure_episodes_total")
            log.warning(
                "the Core asks to slow down (suggested rate %s events/s)", frame.rate,
                extra={"component": "uplink", "event": "backpressure_on", "rate": frame.rate},
            )
        elif not frame.on and self.backpressure:
            self._end_backpressure()
            log.info("the Core lifted backpressure", extra={"component": "uplink", "event": "backpressure_off"})
        if self.backpressure:
            self.backpressure_rate = frame.rate
            if frame.rate is not None:
                self.pacer.set_rate(frame.rate)
            self.metrics.set("uplink_backpressure_rate", frame.rate if frame.rate is not None else -1.0)
        self.metrics.set("uplink_backpressure", 1.0 if self.backpressure else 0.0)
        self._pump()

    def _end_backpressure(self) -> None:
        if self.backpressure and self._backpressure_since is not None:
            self.metrics.inc("uplink_backpressure_seconds_total", self.clock() - self._backpressure_since)
        self.backpressure = False
        self._backpressure_since = None
        self.backpressure_rate = None
        self.metrics.set("uplink_backpressure", 0.0)

    # --- sending ------------------------------------------------------------------------

    @handles(Stored)
    def on_stored(self, _: Stored) -> None:
        self._pump()

    @handles(Tick)
    def on_tick(self, tick: Tick) -> None:
        # all the credit the Core granted is in flight: the Core holds the probe back
        self.metrics.set("uplink_credit_exhausted", 1.0 if self.ws is not None and self.in_flight >= self.credit > 0 else 0.0)
        if self.backpressure and self._backpressure_since is not None:
            self.metrics.inc("uplink_backpressure_seconds_total", tick.now - self._backpressure_since)
            self._backpressure_since = tick.now
        # a Core in backpressure is slow on purpose (it may even be paused): no ack timeout then;
        # the WebSocket's pings still tell a dead connection
        if self.ws is not None and self.in_flight and not self.backpressure and tick.now - self.last_ack > self.settings.ack_timeout:
            self.metrics.inc("uplink_ack_timeouts_total")
            self._close("ack timeout")
            self._failed(f"no ack for {self.settings.ack_timeout:g} s")
        elif self.ws is not None:
            self._pump()

    @handles(Pump)
    def on_pump(self, _: Pump) -> None:
        self._pump_due = False
        self._pump()

    def _window(self) -> int:
        """Events that may be sent now: within the credit, and the pacer's while in backpressure."""
        room = min(self.credit - self.in_flight, self.settings.batch_events)
        if room <= 0 or not self.backpressure:
            return room
        if self.backpressure_rate is None:
            # slow down without a figure: one frame in flight at a time
            return room if self.in_flight == 0 else 0
        allowed = self.pacer.allowance()
        step = max(1, min(room, int(self.pacer.burst)))
        if allowed >= step:
            return min(room, allowed)
        wait = self.pacer.wait_for(step)
        if wait is not None and not self._pump_due:
            self._pump_due = True
            self._later(max(wait, 0.005), Pump())
        return 0

    def _pump(self) -> None:
        """Send drop reports and events after ``sent_upto`` while credit (and the pacer) allow."""
        while self.ws is not None and not self.gate.halted:
            room = self._window()
            if room <= 0:
                return
            out = self.buffer.take(self.sent_upto, room)
            if out is None:
                return
            if out.drops:
                if not self._send(wire.DropReport(out.drops)):
                    return
                self.sent_upto = max(self.sent_upto, out.last)
                self.metrics.inc("drop_reports_sent_total")
                continue
            if not self._send(wire.Events(tuple(r for _, r in out.records))):
                return
            n = len(out.records)
            self.sent_upto = out.last
            if self.backpressure:
                self.pacer.spend(n)
            self.metrics.inc("events_sent_total", n)

    def _send(self, frame: wire.Frame) -> bool:
        if self.ws is None or (self.gate.halted and isinstance(frame, (wire.Events, wire.DropReport))):
            return False
        try:
            self.ws.send(wire.encode(frame))
            if isinstance(frame, (wire.Events, wire.DropReport)):
                # in flight until the ack that answers this frame (re-sends count too: the Core counts them)
                self._frames_out += 1
                n = len(frame.records) if isinstance(frame, wire.Events) else 0
                self._flight.append((self._frames_out, n))
                self.in_flight += n
            return True
        except (OSError, websockets.WebSocketException) as exc:
            self._close(str(exc))
            self._failed(f"send failed: {exc}")
            return False

    # --- identity -----------------------------------------------------------------------

    @handles(Halt)
    def on_halt(self, halt: Halt) -> None:
        self.gate.halt(halt.reason)
        self._close("transmission halted")
        self._set_state("halted")

    def _refused(self, reason: str, message: str) -> IdentityError:
        """An identity failure the Core reported: recorded on the identity, raised to the supervisor."""
        error = IdentityError(message, reason=reason)
        record = getattr(self.identity, "record_failure", None)
        if record is not None:
            record(error)
        return error

    @handles(ResumeTransmission)
    def on_resume(self, _: ResumeTransmission) -> None:
        self.gate.resume()
        self.attempt = 0
        self._close("identity reloaded")  # the next session presents the reloaded identity
        self._set_state("disconnected")
        self.actor_ref.tell(Connect())

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "acked": self.acked,
            "sent_upto": self.sent_upto,
            "in_flight": self.in_flight,
            "credit": self.credit,
            "backpressure": self.backpressure,
            "backpressure_rate": self.backpressure_rate,
            "attempt": self.attempt,
            "recent_delays": list(self.delays),
        }
