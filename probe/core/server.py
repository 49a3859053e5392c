"""The reference Core's WebSocket server (asyncio): handshake, ingest queue, group commits, acks.

Per connection: challenge -> hello (probe id, key proof) -> welcome (resume point,
credit) -> event batches and drop reports. A reader task validates each frame, checks
the probe's credit, starts the signature checks on a thread pool and queues the frame;
a committer task applies the queued frames in order and commits them to LMDB in one
transaction per group (many frames per commit under load) before it acknowledges.

The ingest queue (events received and not yet committed, over all probes) drives
backpressure: past the high watermark the Core tells every probe to slow down to the
rate it is actually committing, below the low watermark it lifts it. Overload knobs
(rate limit, slow disk, pause; :mod:`probe.core.overload`) let scenarios make it slow
on purpose. A bad frame gets an ``error`` frame and a counter, never a crash. Every
events and drops frame gets exactly one ack, in order, even when its commit was shared.

With ``tls_cert``/``tls_key`` the Core serves wss://; with ``client_ca`` it requires a
probe certificate from that CA (mutual TLS, or in the hello on a loopback ws://) and
checks it in probe/core/auth.py, with the revocation list ``crl`` reloaded when its file
changes or on SIGHUP. Refusals are counted by reason in ``counters`` and in
DATA/counters.json.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import os
import secrets
import signal
import ssl
import time
from typing import Any, Callable

import attrs
import lmdb
import nacl.exceptions
import websockets
from websockets.asyncio.server import ServerConnection, serve

from probe.core.auth import AuthRefused, Authenticator, Session, pin_rejected_seqs
from probe.core.ingest import commit_group, verify_records
from probe.core.overload import CONTROL_FILE, ControlError, Overload, read_control
from protocols import wire
from protocols.identity import verify_code_reason
from storage.core_store import CoreStore, ProbeAccount

log = logging.getLogger("probe.core")

#: seconds a TLS handshake may take (a refused client is held this long at most)
TLS_HANDSHAKE_TIMEOUT = 10.0
#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not exported by the ssl module)
X509_V_FLAG_NO_CHECK_TIME = 0x200000
#: frames of garbage tolerated on one connection before the Core hangs up
MAX_BAD_FRAMES = 100
HELLO_TIMEOUT = 10.0
#: records per verification task on the thread pool
VERIFY_CHUNK = 256
#: seconds over which the commit rate (the rate suggested under backpressure) is measured
RATE_WINDOW = 2.0
STATS_FILE = "stats.json"


def _counting_tls_context(counters: collections.Counter[str]) -> type[ssl.SSLContext]:
    """An SSLContext class whose connections count (and log) refused client certificates.

    A client certificate the TLS layer refuses (unknown CA) never reaches the handler,
    so the handshake itself reports it.
    """

    class CountingObject(ssl.SSLObject):
        _refused = False

        def do_handshake(self) -> None:
            if self._refused:  # the alert went out: wait for the probe to hang up (or the handshake timeout)
                raise ssl.SSLWantReadError("client certificate refused")
            try:
                super().do_handshake()
            except ssl.SSLCertVerificationError as exc:
                reason = verify_code_reason(exc.verify_code)
                counters[f"refused:tls:{reason}"] += 1
                log.warning(json.dumps({"event": "probe_refused", "code": reason, "reason": f"TLS: {exc.verify_message}"}))
                # asyncio would reset the connection with OpenSSL's alert still unsent and the
                # probe would only see a closed socket; "want read" makes it send the alert
                # (which names the reason) and wait for the probe to hang up.
                self._refused = True
                raise ssl.SSLWantReadError("client certificate refused; alert pending") from exc
            except ssl.SSLError as exc:
                if not isinstance(exc, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
                    counters["refused:tls:handshake_failed"] += 1
                raise

    class CountingContext(ssl.SSLContext):
        sslobject_class = CountingObject

    return CountingContext


@attrs.frozen
class CoreSettings:
    """Flow control of the Core: credit per probe, watermarks of the ingest queue, group size."""

    credit: int = 20_000
    high_watermark: int = 15_000
    low_watermark: int = 5_000
    group_events: int = 20_000
    verify_threads: int = 2
    tick: float = 0.2


@attrs.define
class _Queued:
    """One frame waiting for its commit: events (with their verification) or a drop report."""

    kind: str
    events: int
    payload: Any  # asyncio future of verify results, or drop ranges


class Link:
    """One authenticated connection of a probe: its identity session, queue and flow state."""

    def __init__(self, ws: ServerConnection, hello: wire.Hello, auth: Session) -> None:
        self.ws = ws
        self.hello = hello
        self.probe_id = hello.probe_id
        self.auth = auth
        self.policy: Callable[..., str | None] | None = None
        self.account: ProbeAccount | None = None
        self.queue: asyncio.Queue[_Queued | None] = asyncio.Queue()
        self.unacked = 0  # events received on this connection and not yet acknowledged
        self.queued = 0  # of which not yet committed
        self.closed = False
        self.sent_backpressure: tuple[bool, float | None] | None = None
        #: frames refused since the last commit (the account takes them at the next one)
        self.bad_frames: collections.Counter[str] = collections.Counter()

    def account_for_commit(self) -> ProbeAccount:
        """The account, with the refused frames counted since the last commit folded in."""
        assert self.account is not None
        for code, n in self.bad_frames.items():
            self.account.bad_frames[code] = self.account.bad_frames.get(code, 0) + n
        self.bad_frames.clear()
        return self.account


class Core:
    """A Core serving probes from ``data_dir`` (store in DATA/store, pinned keys in DATA/trusted)."""

    def __init__(
        self,
        data_dir: str,
        *,
        credit: int | None = None,
        core_id: str = "core",
        settings: CoreSettings | None = None,
        overload: Overload = Overload(),
        control_file: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        client_ca: str | None = None,
        crl: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = data_dir
        self.settings = settings or CoreSettings()
        if credit is not None:
            self.settings = attrs.evolve(self.settings, credit=credit)
        self.clock = clock
        self.auth = Authenticator(data_dir, ca_path=client_ca, crl_path=crl, clock=clock)
        self.trust = self.auth.trust
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.store = CoreStore(os.path.join(data_dir, "store"))
        self.core_id = core_id
        self.counters: collections.Counter[str] = collections.Counter()
        self._verify_pool = concurrent.futures.ThreadPoolExecutor(self.settings.verify_threads, thread_name_prefix="verify")
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._sessions: dict[str, Link] = {}
        self._counters_written: dict[str, int] = {}
        self._probe_locks: dict[str, asyncio.Lock] = {}
        self._stopping: asyncio.Event | None = None
        self.port: int | None = None
        # overload knobs: the flags, with the control file's keys on top
        self.base_overload = overload
        self.overload = overload
        self.control_file = control_file or os.path.join(data_dir, CONTROL_FILE)
        self._control_mtime: float | None = None
        self._rate_clock = 0.0
        # the ingest queue and backpressure
        self.queued_events = 0
        self.backpressure = False
        self.backpressure_rate: float | None = None
        self._backpressure_since = 0.0
        self.backpressure_seconds = 0.0
        self._commits: collections.deque[tuple[float, int]] = collections.deque()
        self._started = time.monotonic()
        self._tasks: set[asyncio.Future] = set()

    # --- connection lifecycle ---------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        self.counters["connections"] += 1
        peer = ws.remote_address
        if ws.subprotocol != wire.SUBPROTOCOL:
            self.counters["refused:subprotocol"] += 1
            await self._send(ws, wire.Error(wire.ErrorCode.BAD_FRAME, f"subprotocol {wire.SUBPROTOCOL} required", True))
            return
        if self._stopping is not None and self._stopping.is_set():
            await self._send(ws, wire.Error(wire.ErrorCode.SHUTTING_DOWN, "the Core is stopping", True))
            return
        nonce = secrets.token_bytes(32)
        await self._send(ws, wire.Challenge(nonce, self.core_id))
        try:
            hello = await asyncio.wait_for(self._recv(ws), HELLO_TIMEOUT)
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            self.counters["refused:no_hello"] += 1
            return
        except wire.FrameError as exc:
            await self._refuse(ws, exc.code, str(exc), "bad_hello")
            return
        if not isinstance(hello, wire.Hello):
            await self._refuse(ws, wire.ErrorCode.UNEXPECTED_FRAME, "expected hello", "bad_hello")
            return
        try:
            auth = self._authenticate(ws, hello, nonce)
        except AuthRefused as exc:
            await self._refuse(ws, exc.code, str(exc), "auth", hello.probe_id)
            return
        link = Link(ws, hello, auth)
        previous = self._sessions.get(hello.probe_id)
        if previous is not None:
            self.counters["replaced_sessions"] += 1
            previous.closed = True
            await previous.ws.close(code=1000, reason="replaced by a newer connection")
        lock = self._probe_locks.setdefault(hello.probe_id, asyncio.Lock())
        async with lock:  # the previous link's last commit is done before this one reads the account
            self._sessions[hello.probe_id] = link
            try:
                await self._serve_probe(link)
            finally:
                self._end_session(link)
        log.info(json.dumps({"event": "probe_disconnected", "probe_id": hello.probe_id, "peer": str(peer)}))

    def _authenticate(self, ws: ServerConnection, hello: wire.Hello, nonce: bytes) -> Session:
        """The probe's session (its keys); raise :class:`AuthRefused` saying why it is refused."""
        peer_cert = None
        ssl_object = ws.transport.get_extra_info("ssl_object") if ws.transport is not None else None
        if ssl_object is not None:
            peer_cert = ssl_object.getpeercert(binary_form=True)
        return self.auth.authenticate(hello, nonce, peer_cert)

    async def _refuse(self, ws: ServerConnection, code: str, message: str, counter: str, probe_id: str | None = None) -> None:
        self.counters[f"refused:{counter}:{code}"] += 1
        log.warning(json.dumps({"event": "probe_refused", "code": code, "reason": message, "probe_id": probe_id, "peer": str(ws.remote_address)}))
        await self._send(ws, wire.Error(code, message, True))
        await ws.close(code=1008, reason=code)

    def _session_refusal(self, session: Session) -> tuple[str, str] | None:
        """Why an open session must end now: its certificate expired or was revoked."""
        cert = session.cert
        if cert is None:
            return None
        if self.auth.revoked(cert.serial):
            return wire.ErrorCode.CERT_REVOKED, f"certificate of {session.probe_id} (serial {cert.serial:x}) was revoked"
        if self.clock() > cert.not_after:
            return wire.ErrorCode.CERT_EXPIRED, f"certificate of {session.probe_id} expired during the session"
        return None

    def _end_session(self, link: Link) -> None:
        link.closed = True
        self._discard_queue(link)
        if self._sessions.get(link.probe_id) is link:
            del self._sessions[link.probe_id]

    # --- one probe's link ----------------------------------------------------------

    async def _serve_probe(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        hello = link.hello
        account = await loop.run_in_executor(self._writer, self.store.account, hello.probe_id)
        if hello.boot_id not in account.boots:
            account.boots = (account.boots + [hello.boot_id])[-16:]
        link.account = account
        boot = self.auth.boot_policy(hello.probe_id, hello.boot_id, hello.boot_seq, account.acked)
        link.policy = boot.check
        log.info(json.dumps({"event": "probe_connected", "probe_id": hello.probe_id, "boot_id": hello.boot_id, "resume": account.acked}))
        # a wiped or restored spool reuses numbers we hold: say so, or the probe would take its
        # own events numbered that low for delivered (they are not: the numbers are taken)
        await self._send(link.ws, wire.Welcome(account.acked, self.settings.credit, boot.reused_through))
        if self.backpressure:
            self._push_backpressure(link)
        reader = asyncio.create_task(self._read_frames(link))
        committer = asyncio.create_task(self._commit_loop(link))
        try:
            await asyncio.wait({reader, committer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.closed = True
            link.queue.put_nowait(None)
            reader.cancel()
            # a commit in progress completes (it runs on the writer thread); nothing after it starts
            await asyncio.gather(reader, committer, return_exceptions=True)
            if link.bad_frames and link.account is not None:
                account = link.account_for_commit()
                try:
                    await loop.run_in_executor(self._writer, self.store.commit, account, [])
                except lmdb.Error as exc:
                    log.error(json.dumps({"event": "store_failed", "probe_id": link.probe_id, "message": str(exc)}))

    async def _read_frames(self, link: Link) -> None:
        """Validate and queue what the probe sends until the connection ends or must end."""
        ws = link.ws
        bad_frames = 0
        while not link.closed:
            try:
                data = await ws.recv()
            except websockets.ConnectionClosed:
                return
            try:
                frame = wire.decode(data)
            except wire.FrameError as exc:
                bad_frames += 1
                await self._bad_frame(link, exc.code, str(exc), fatal=bad_frames >= MAX_BAD_FRAMES)
                if bad_frames >= MAX_BAD_FRAMES:
                    return
                continue
            if isinstance(frame, wire.Events):
                ended = self._session_refusal(link.auth)
                if ended is not None:
                    link.closed = True
                    await self._refuse(link.ws, ended[0], ended[1], "session", link.probe_id)
                    return
                self.counters["event_frames"] += 1
                n = len(frame.records)
                if link.unacked + n > self.settings.credit:
                    await self._bad_frame(
                        link, wire.ErrorCode.OVER_CREDIT,
                        f"{link.unacked + n} events in flight, credit is {self.settings.credit}", fatal=True,
                    )
                    return
                link.unacked += n
                link.queued += n
                self.queued_events += n
                link.queue.put_nowait(_Queued("events", n, self._verify(frame.records, link)))
                self._update_backpressure()
            elif isinstance(frame, wire.DropReport):
                link.queue.put_nowait(_Queued("drops", 0, frame.ranges))
            elif isinstance(frame, wire.Error):
                self.counters[f"probe_errors:{frame.code}"] += 1
                log.warning(json.dumps({"event": "probe_error", "probe_id": link.probe_id, "code": frame.code, "message": frame.message}))
            else:
                await self._bad_frame(link, wire.ErrorCode.UNEXPECTED_FRAME, f"{type(frame).__name__} not expected now")

    async def _bad_frame(self, link: Link, code: str, message: str, fatal: bool = False) -> None:
        """Count a refused frame (Core-wide and on the probe's account) and answer it."""
        self.counters[f"bad_frames:{code}"] += 1
        link.bad_frames[code] += 1
        log.warning(json.dumps({"event": "bad_frame", "probe_id": link.probe_id, "code": code, "message": message[:200], "fatal": fatal}))
        await self._send(link.ws, wire.Error(code, message, fatal))
        if fatal:
            link.closed = True
            await link.ws.close(code=1008, reason=code)

    def _verify(self, records: tuple[bytes, ...], link: Link) -> asyncio.Future:
        """Start the signature checks of a frame now (in chunks on the pool); a future of the results."""
        loop = asyncio.get_running_loop()
        chunks = [records[i : i + VERIFY_CHUNK] for i in range(0, len(records), VERIFY_CHUNK)] or [()]
        parts = [
            loop.run_in_executor(self._verify_pool, verify_records, chunk, link.probe_id, link.auth.keys, link.policy)
            for chunk in chunks
        ]
        return asyncio.gather(*parts)

    async def _commit_loop(self, link: Link) -> None:
        """Take queued frames in order, commit them in groups, acknowledge each frame."""
        loop = asyncio.get_running_loop()
        ws = link.ws
        while True:
            item = await link.queue.get()
            if item is None or link.closed:
                return
            group = [item]
            events = item.events
            limit = self.settings.group_events if self.overload.rate_limit is None else 1
            while events < limit and not link.queue.empty():
                nxt = link.queue.get_nowait()
                if nxt is None:
                    link.queue.put_nowait(None)
                    break
                group.append(nxt)
                events += nxt.events
            await self._admit(events, link)
            if link.closed:
                self._forget(link, group)
                return
            steps: list[tuple[str, Any]] = []
            try:
                for queued in group:
                    if queued.kind == "events":
                        parts = await queued.payload
                        steps.append(("events", pin_rejected_seqs([r for part in parts for r in part])))
                    else:
                        steps.append(("drops", queued.payload))
            except (nacl.exceptions.CryptoError, ValueError) as exc:  # a verifier bug must not pass events unchecked
                self._forget(link, group)
                await self._store_failed(link, f"verification failed: {exc}")
                return
            account = link.account_for_commit()
            try:
                result = await loop.run_in_executor(
                    self._writer, commit_group, self.store, account, steps, self.overload.slow_disk_ms / 1000.0
                )
            except (lmdb.Error, OSError) as exc:
                self._forget(link, group)
                link.account = await loop.run_in_executor(self._writer, self.store.account, link.probe_id)
                await self._store_failed(link, f"commit failed: {exc}")
                return
            self._forget(link, group)
            link.unacked -= events
            now = time.monotonic()
            self._commits.append((now, events))
            self.counters["commits"] += 1
            self.counters["events_received"] += events
            self.counters["events_stored"] += result.stored
            self.counters["events_duplicate"] += result.duplicates
            self.counters["events_rejected"] += len(result.rejected)
            self.counters["drop_reports"] += sum(1 for q in group if q.kind == "drops")
            if result.rejected:
                for _, code in result.rejected:
                    self.counters[f"events_rejected:{code}"] += 1
                log.warning(json.dumps({
                    "event": "events_rejected", "probe_id": link.probe_id,
                    "rejected": [list(r) for r in result.rejected[:20]], "count": len(result.rejected),
                }))
            self._update_backpressure()
            for acked, rejected in result.acks:  # one ack per frame, in order, after the shared commit
                await self._send(ws, wire.Ack(acked, self.settings.credit, tuple(rejected)))

    def _forget(self, link: Link, group: list[_Queued]) -> None:
        """These queued frames left the ingest queue (committed or abandoned)."""
        n = sum(q.events for q in group)
        link.queued -= n
        self.queued_events -= n

    def _discard_queue(self, link: Link) -> None:
        while not link.queue.empty():
            item = link.queue.get_nowait()
            if item is not None:
                self._forget(link, [item])

    async def _store_failed(self, link: Link, message: str) -> None:
        self.counters["store_failures"] += 1
        log.error(json.dumps({"event": "store_failed", "probe_id": link.probe_id, "message": message}))
        await self._send(link.ws, wire.Error(wire.ErrorCode.STORE_FAILED, message, True))
        link.closed = True
        await link.ws.close(code=1011, reason="store failed")

    async def _admit(self, events: int, link: Link) -> None:
        """Wait while paused, and as long as the rate limit says, before committing ``events``."""
        while not link.closed:
            overload = self.overload
            if overload.paused:
                await asyncio.sleep(0.05)
                continue
            if overload.rate_limit is None:
                return
            now = time.monotonic()
            due = max(now, self._rate_clock) + events / overload.rate_limit
            while not link.closed and self.overload == overload and time.monotonic() < due:
                await asyncio.sleep(min(0.1, due - time.monotonic()))
            if self.overload == overload:
                self._rate_clock = due
                return

    # --- backpressure -----------------------------------------------------------------

    def commit_rate(self) -> float:
        """Events committed per second over the last RATE_WINDOW seconds."""
        now = time.monotonic()
        while self._commits and now - self._commits[0][0] > RATE_WINDOW:
            self._commits.popleft()
        span = min(RATE_WINDOW, now - self._started)
        return sum(n for _, n in self._commits) / span if span > 0 else 0.0

    def _suggested_rate(self) -> float | None:
        overload = self.overload
        if overload.paused:
            return 0.0
        probes = max(1, len(self._sessions))
        rate = self.commit_rate() / probes
        if overload.rate_limit is not None:
            rate = min(rate, overload.rate_limit / probes) if rate > 0 else overload.rate_limit / probes
        return round(rate, 1) if rate > 0 else None

    def _update_backpressure(self) -> None:
        depth = self.queued_events
        s = self.settings
        on = self.overload.paused or depth >= s.high_watermark or (self.backpressure and depth > s.low_watermark)
        now = time.monotonic()
        if on and not self.backpressure:
            self.backpressure = True
            self._backpressure_since = now
            self.counters["backpressure_episodes"] += 1
            log.warning(json.dumps({"event": "backpressure_on", "queued": depth, "paused": self.overload.paused}))
        elif not on and self.backpressure:
            self.backpressure = False
            self.backpressure_seconds += now - self._backpressure_since
            log.info(json.dumps({"event": "backpressure_off", "queued": depth}))
        self.backpressure_rate = self._suggested_rate() if on else None
        for link in list(self._sessions.values()):
            if link.account is not None and not link.closed:
                wanted = (self.backpressure, self.backpressure_rate)
                last = link.sent_backpressure
                if last is None and not wanted[0]:
                    continue
                if last is None or last[0] != wanted[0] or self._rate_changed(last[1], wanted[1]):
                    self._push_backpressure(link)

    @staticmethod
    def _rate_changed(old: float | None, new: float | None) -> bool:
        if old is None or new is None:
            return old != new
        return abs(new - old) > 0.2 * max(old, 1.0)

    def _push_backpressure(self, link: Link) -> None:
        """Tell ``link`` the current backpressure state (sent from a task; noted now)."""
        frame = wire.Backpressure(self.backpressure, self.backpressure_rate)
        link.sent_backpressure = (frame.on, frame.rate)
        self.counters["backpressure_frames"] += 1
        task = asyncio.ensure_future(self._send(link.ws, frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def backpressure_total(self) -> float:
        """Seconds spent in backpressure so far (the current episode included)."""
        extra = time.monotonic() - self._backpressure_since if self.backpressure else 0.0
        return self.backpressure_seconds + extra

    # --- control and stats ------------------------------------------------------------

    def reload_control(self, force: bool = False) -> None:
        """Apply the control file when it changed (or on ``force``); keep the old settings if it is bad."""
        try:
            mtime: float | None = os.stat(self.control_file).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        except OSError as exc:
            log.warning(json.dumps({"event": "control_unreadable", "message": str(exc)}))
            return
        if mtime == self._control_mtime and not force:
            return
        self._control_mtime = mtime
        try:
            overload = self.base_overload.updated(read_control(self.control_file))
        except ControlError as exc:
            self.counters["control_errors"] += 1
            log.warning(json.dumps({"event": "control_refused", "message": str(exc)}))
            return
        if overload != self.overload:
            log.warning(json.dumps({"event": "overload_changed", **overload.as_dict()}))
            self.overload = overload
            self._update_backpressure()

    def stats(self) -> dict[str, Any]:
        """Live state for ``core stats``: the queue, backpressure, overload knobs, counters."""
        return {
            "core_id": self.core_id,
            "pid": os.getpid(),
            "port": self.port,
            "uptime": round(time.monotonic() - self._started, 3),
            "written_at": time.time(),
            "overload": self.overload.as_dict(),
            "settings": attrs.asdict(self.settings),
            "queued_events": self.queued_events,
            "commit_rate": round(self.commit_rate(), 1),
            "backpressure": {
                "on": self.backpressure,
                "rate": self.backpressure_rate,
                "seconds": round(self.backpressure_total(), 3),
                "episodes": self.counters["backpressure_episodes"],
            },
            "sessions": {
                pid: {"boot_id": s.hello.boot_id, "unacked": s.unacked, "queued": s.queued}
                for pid, s in self._sessions.items()
            },
            "counters": dict(sorted(self.counters.items())),
        }

    def write_stats(self) -> None:
        path = os.path.join(self.data_dir, STATS_FILE)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(self.stats(), fh, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning(json.dumps({"event": "stats_unwritable", "message": str(exc)}))

    async def _housekeeping(self) -> None:
        last_stats = 0.0
        while True:
            await asyncio.sleep(self.settings.tick)
            if self.auth.crl_changed():
                await self._end_refused_sessions()
            self.reload_control()
            self._update_backpressure()
            self.write_counters()
            if time.monotonic() - last_stats >= 1.0:
                last_stats = time.monotonic()
                self.write_stats()

    def _hangup(self) -> None:
        """SIGHUP: re-read the revocation list and the overload control file now."""
        self.reload()
        self.reload_control(force=True)

    # --- plumbing ---------------------------------------------------------------------

    @staticmethod
    async def _send(ws: ServerConnection, frame: wire.Frame) -> None:
        try:
            await ws.send(wire.encode(frame))
        except websockets.ConnectionClosed:
            pass

    @staticmethod
    async def _recv(ws: ServerConnection) -> wire.Frame:
        return wire.decode(await ws.recv())

    async def serve(self, host: str, port: int, ready_file: str | None = None) -> None:
        """Listen until SIGINT/SIGTERM (or :meth:`stop`); write HOST:PORT to ``ready_file``."""
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stopping.set)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
        except (NotImplementedError, RuntimeError):
            pass
        self.reload_control(force=True)
        self._update_backpressure()  # a Core started paused says so in its first welcome
        housekeeping = asyncio.create_task(self._housekeeping())
        async with serve(
            self.handle,
            host,
            port,
            subprotocols=[wire.SUBPROTOCOL],
            compression=None,
            max_size=wire.MAX_FRAME,
            ping_interval=20,
            ping_timeout=20,
            ssl=self.tls_context(),
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self.tls_cert else None,
        ) as server:
            sock = next(iter(server.sockets))
            self.port = sock.getsockname()[1]
            log.info(json.dumps({"event": "core_listening", "host": host, "port": self.port}))
            self.write_stats()
            if ready_file:
                tmp = ready_file + ".tmp"
                with open(tmp, "w") as fh:
                    fh.write(f"{host}:{self.port}\n")
                os.replace(tmp, ready_file)
            await self._stopping.wait()
            for link in list(self._sessions.values()):
                link.closed = True
                await self._send(link.ws, wire.Error(wire.ErrorCode.SHUTTING_DOWN, "the Core is stopping", True))
        housekeeping.cancel()
        for lock in list(self._probe_locks.values()):
            async with lock:  # every commit in progress is done
                pass
        self.write_stats()
        self.write_counters()
        self._verify_pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.store.close()

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    # --- identity housekeeping --------------------------------------------------------

    def tls_context(self) -> ssl.SSLContext | None:
        """wss:// with this Core's certificate; probe certificates required when a client CA is set."""
        if self.tls_cert is None:
            return None
        from probe.identity import check_private_file

        check_private_file(self.tls_key or self.tls_cert, "TLS key")
        context = _counting_tls_context(self.counters)(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert, self.tls_key)
        if self.auth.ca_path is not None:
            context.load_verify_locations(self.auth.ca_path)
            context.verify_mode = ssl.CERT_REQUIRED
            # the validity window and revocation are checked per hello, with a reason sent back
            context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
        return context

    def reload(self) -> None:
        """SIGHUP: read the revocation list again and end sessions it revokes."""
        if self.auth.reload_crl():
            asyncio.ensure_future(self._end_refused_sessions())

    async def _end_refused_sessions(self) -> None:
        for probe_id, link in list(self._sessions.items()):
            ended = self._session_refusal(link.auth)
            if ended is not None and not link.closed:
                link.closed = True
                await self._refuse(link.ws, ended[0], ended[1], "session", probe_id)

    def write_counters(self) -> None:
        """DATA/counters.json: connections, refusals by reason, frames and events (when changed)."""
        current = dict(self.counters)
        if current == self._counters_written:
            return
        path = os.path.join(self.data_dir, "counters.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(current, fh, sort_keys=True)
        os.replace(tmp, path)
        self._counters_written = current

