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
on purpose. A bad frame gets an ``error`` frame and a counter, never a crash.
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
import time
from typing import Any

import attrs
import lmdb
import nacl.exceptions
import websockets
from websockets.asyncio.server import ServerConnection, serve

from probe.core.ingest import commit_group, verify_records
from probe.core.overload import CONTROL_FILE, ControlError, Overload, read_control
from probe.core.trust import PROBE_ID, TrustStore
from protocols import wire
from storage.core_store import CoreStore, ProbeAccount

log = logging.getLogger("probe.core")

#: frames of garbage tolerated on one connection before the Core hangs up
MAX_BAD_FRAMES = 100
HELLO_TIMEOUT = 10.0
#: records per verification task on the thread pool
VERIFY_CHUNK = 256
#: seconds over which the commit rate (the rate suggested under backpressure) is measured
RATE_WINDOW = 2.0
STATS_FILE = "stats.json"


class AuthRefused(Exception):
    """The hello does not authenticate; ``code`` goes back in the fatal error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen
class CoreSettings:
    """Flow control of the Core: credit per probe, watermarks of the ingest queue, group size."""

    credit: int = 20_000
    high_watermark: int = 15_000
    low_watermark: int = 5_000
    group_events: int = 20_000
    verify_threads: int = 2
    tick: float = 0.25


@attrs.define
class _Queued:
    """One frame waiting for its commit: events (with their verification) or a drop report."""

    kind: str
    events: int
    payload: Any  # asyncio future of verify results, or drop ranges


class Session:
    """One authenticated connection of a probe."""

    def __init__(self, ws: ServerConnection, hello: wire.Hello, key: Any) -> None:
        self.ws = ws
        self.hello = hello
        self.probe_id = hello.probe_id
        self.key = key
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
    ) -> None:
        self.data_dir = data_dir
        self.settings = settings or CoreSettings()
        if credit is not None:
            self.settings = attrs.evolve(self.settings, credit=credit)
        self.store = CoreStore(os.path.join(data_dir, "store"))
        self.trust = TrustStore(os.path.join(data_dir, "trusted"))
        self.core_id = core_id
        self.counters: collections.Counter[str] = collections.Counter()
        self._verify_pool = concurrent.futures.ThreadPoolExecutor(self.settings.verify_threads, thread_name_prefix="verify")
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._sessions: dict[str, Session] = {}
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
            key = self._authenticate(hello, nonce)
        except AuthRefused as exc:
            await self._refuse(ws, exc.code, str(exc), "auth")
            return
        session = Session(ws, hello, key)
        previous = self._sessions.get(hello.probe_id)
        if previous is not None:
            self.counters["replaced_sessions"] += 1
            previous.closed = True
            await previous.ws.close(code=1000, reason="replaced by a newer connection")
        lock = self._probe_locks.setdefault(hello.probe_id, asyncio.Lock())
        async with lock:  # the previous session's last commit is done before this one reads the account
            self._sessions[hello.probe_id] = session
            try:
                await self._serve_probe(session)
            finally:
                self._end_session(session)
        log.info(json.dumps({"event": "probe_disconnected", "probe_id": hello.probe_id, "peer": str(peer)}))

    def _authenticate(self, hello: wire.Hello, nonce: bytes) -> Any:
        """The probe's verify key; raise :class:`AuthRefused` saying why it is refused."""
        if not PROBE_ID.match(hello.probe_id):
            raise AuthRefused(wire.ErrorCode.AUTH_FAILED, "invalid probe id")
        key = self.trust.key_for(hello.probe_id)
        if key is None:
            raise AuthRefused(wire.ErrorCode.UNKNOWN_PROBE, f"probe {hello.probe_id} is not enrolled at this Core")
        if bytes(key) != hello.public_key:
            raise AuthRefused(wire.ErrorCode.AUTH_FAILED, f"key does not match the key enrolled for {hello.probe_id}")
        message = wire.hello_proof_message(nonce, hello.probe_id, hello.boot_id, hello.public_key)
        try:
            key.verify(message, hello.proof)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise AuthRefused(wire.ErrorCode.AUTH_FAILED, "proof of key possession does not verify") from None
        return key

    async def _refuse(self, ws: ServerConnection, code: str, message: str, counter: str) -> None:
        self.counters[f"refused:{counter}:{code}"] += 1
        log.warning(json.dumps({"event": "probe_refused", "code": code, "reason": message}))
        await self._send(ws, wire.Error(code, message, True))
        await ws.close(code=1008, reason=code)

    def _end_session(self, session: Session) -> None:
        session.closed = True
        self._discard_queue(session)
        if self._sessions.get(session.probe_id) is session:
            del self._sessions[session.probe_id]

    # --- one probe's session ----------------------------------------------------------

    async def _serve_probe(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        hello = session.hello
        account = await loop.run_in_executor(self._writer, self.store.account, hello.probe_id)
        if hello.boot_id not in account.boots:
            account.boots = (account.boots + [hello.boot_id])[-16:]
        session.account = account
        log.info(json.dumps({"event": "probe_connected", "probe_id": hello.probe_id, "boot_id": hello.boot_id, "resume": account.acked}))
        await self._send(session.ws, wire.Welcome(account.acked, self.settings.credit))
        if self.backpressure:
            self._push_backpressure(session)
        reader = asyncio.create_task(self._read_frames(session))
        committer = asyncio.create_task(self._commit_loop(session))
        try:
            await asyncio.wait({reader, committer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            session.closed = True
            session.queue.put_nowait(None)
            reader.cancel()
            # a commit in progress completes (it runs on the writer thread); nothing after it starts
            await asyncio.gather(reader, committer, return_exceptions=True)
            if session.bad_frames and session.account is not None:
                account = session.account_for_commit()
                try:
                    await loop.run_in_executor(self._writer, self.store.commit, account, [])
                except lmdb.Error as exc:
                    log.error(json.dumps({"event": "store_failed", "probe_id": session.probe_id, "message": str(exc)}))

    async def _read_frames(self, session: Session) -> None:
        """Validate and queue what the probe sends until the connection ends or must end."""
        ws = session.ws
        bad_frames = 0
        while not session.closed:
            try:
                data = await ws.recv()
            except websockets.ConnectionClosed:
                return
            try:
                frame = wire.decode(data)
            except wire.FrameError as exc:
                bad_frames += 1
                await self._bad_frame(session, exc.code, str(exc), fatal=bad_frames >= MAX_BAD_FRAMES)
                if bad_frames >= MAX_BAD_FRAMES:
                    return
                continue
            if isinstance(frame, wire.Events):
                n = len(frame.records)
                if session.unacked + n > self.settings.credit:
                    await self._bad_frame(
                        session, wire.ErrorCode.OVER_CREDIT,
                        f"{session.unacked + n} events in flight, credit is {self.settings.credit}", fatal=True,
                    )
                    return
                session.unacked += n
                session.queued += n
                self.queued_events += n
                session.queue.put_nowait(_Queued("events", n, self._verify(frame.records, session)))
                self._update_backpressure()
            elif isinstance(frame, wire.DropReport):
                session.queue.put_nowait(_Queued("drops", 0, frame.ranges))
            elif isinstance(frame, wire.Error):
                self.counters[f"probe_errors:{frame.code}"] += 1
                log.warning(json.dumps({"event": "probe_error", "probe_id": session.probe_id, "code": frame.code, "message": frame.message}))
            else:
                await self._bad_frame(session, wire.ErrorCode.UNEXPECTED_FRAME, f"{type(frame).__name__} not expected now")

    async def _bad_frame(self, session: Session, code: str, message: str, fatal: bool = False) -> None:
        """Count a refused frame (Core-wide and on the probe's account) and answer it."""
        self.counters[f"bad_frames:{code}"] += 1
        session.bad_frames[code] += 1
        log.warning(json.dumps({"event": "bad_frame", "probe_id": session.probe_id, "code": code, "message": message[:200], "fatal": fatal}))
        await self._send(session.ws, wire.Error(code, message, fatal))
        if fatal:
            session.closed = True
            await session.ws.close(code=1008, reason=code)

    def _verify(self, records: tuple[bytes, ...], session: Session) -> asyncio.Future:
        """Start the signature checks of a frame now (in chunks on the pool); a future of the results."""
        loop = asyncio.get_running_loop()
        chunks = [records[i : i + VERIFY_CHUNK] for i in range(0, len(records), VERIFY_CHUNK)] or [()]
        parts = [loop.run_in_executor(self._verify_pool, verify_records, chunk, session.probe_id, session.key) for chunk in chunks]
        return asyncio.gather(*parts)

    async def _commit_loop(self, session: Session) -> None:
        """Take queued frames in order, commit them in groups, acknowledge each group."""
        loop = asyncio.get_running_loop()
        ws = session.ws
        while True:
            item = await session.queue.get()
            if item is None or session.closed:
                return
            group = [item]
            events = item.events
            limit = self.settings.group_events if self.overload.rate_limit is None else 1
            while events < limit and not session.queue.empty():
                nxt = session.queue.get_nowait()
                if nxt is None:
                    session.queue.put_nowait(None)
                    break
                group.append(nxt)
                events += nxt.events
            await self._admit(events, session)
            if session.closed:
                self._forget(session, group)
                return
            steps: list[tuple[str, Any]] = []
            try:
                for queued in group:
                    if queued.kind == "events":
                        parts = await queued.payload
                        steps.append(("events", [r for part in parts for r in part]))
                    else:
                        steps.append(("drops", queued.payload))
            except (nacl.exceptions.CryptoError, ValueError) as exc:  # a verifier bug must not pass events unchecked
                self._forget(session, group)
                await self._store_failed(session, f"verification failed: {exc}")
                return
            account = session.account_for_commit()
            try:
                result = await loop.run_in_executor(
                    self._writer, commit_group, self.store, account, steps, self.overload.slow_disk_ms / 1000.0
                )
            except (lmdb.Error, OSError) as exc:
                self._forget(session, group)
                session.account = await loop.run_in_executor(self._writer, self.store.account, session.probe_id)
                await self._store_failed(session, f"commit failed: {exc}")
                return
            self._forget(session, group)
            session.unacked -= events
            now = time.monotonic()
            self._commits.append((now, events))
            self.counters["commits"] += 1
            self.counters["events_received"] += events
            self.counters["events_stored"] += result.stored
            self.counters["events_duplicate"] += result.duplicates
            self.counters["events_rejected"] += len(result.rejected)
            self.counters["drop_reports"] += sum(1 for q in group if q.kind == "drops")
            self._update_backpressure()
            await self._send(ws, wire.Ack(session.account.acked, self.settings.credit, tuple(result.rejected)))

    def _forget(self, session: Session, group: list[_Queued]) -> None:
        """These queued frames left the ingest queue (committed or abandoned)."""
        n = sum(q.events for q in group)
        session.queued -= n
        self.queued_events -= n

    def _discard_queue(self, session: Session) -> None:
        while not session.queue.empty():
            item = session.queue.get_nowait()
            if item is not None:
                self._forget(session, [item])

    async def _store_failed(self, session: Session, message: str) -> None:
        self.counters["store_failures"] += 1
        log.error(json.dumps({"event": "store_failed", "probe_id": session.probe_id, "message": message}))
        await self._send(session.ws, wire.Error(wire.ErrorCode.STORE_FAILED, message, True))
        session.closed = True
        await session.ws.close(code=1011, reason="store failed")

    async def _admit(self, events: int, session: Session) -> None:
        """Wait while paused, and as long as the rate limit says, before committing ``events``."""
        while not session.closed:
            overload = self.overload
            if overload.paused:
                await asyncio.sleep(0.05)
                continue
            if overload.rate_limit is None:
                return
            now = time.monotonic()
            due = max(now, self._rate_clock) + events / overload.rate_limit
            while not session.closed and self.overload == overload and time.monotonic() < due:
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
        for session in list(self._sessions.values()):
            if session.account is not None and not session.closed:
                wanted = (self.backpressure, self.backpressure_rate)
                last = session.sent_backpressure
                if last is None and not wanted[0]:
                    continue
                if last is None or last[0] != wanted[0] or self._rate_changed(last[1], wanted[1]):
                    self._push_backpressure(session)

    @staticmethod
    def _rate_changed(old: float | None, new: float | None) -> bool:
        if old is None or new is None:
            return old != new
        return abs(new - old) > 0.2 * max(old, 1.0)

    def _push_backpressure(self, session: Session) -> None:
        """Tell ``session`` the current backpressure state (sent from a task; noted now)."""
        frame = wire.Backpressure(self.backpressure, self.backpressure_rate)
        session.sent_backpressure = (frame.on, frame.rate)
        self.counters["backpressure_frames"] += 1
        task = asyncio.ensure_future(self._send(session.ws, frame))
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
            self.reload_control()
            self._update_backpressure()
            if time.monotonic() - last_stats >= 1.0:
                last_stats = time.monotonic()
                self.write_stats()

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
            loop.add_signal_handler(signal.SIGHUP, self.reload_control, True)
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
            for session in list(self._sessions.values()):
                session.closed = True
                await self._send(session.ws, wire.Error(wire.ErrorCode.SHUTTING_DOWN, "the Core is stopping", True))
        housekeeping.cancel()
        for lock in list(self._probe_locks.values()):
            async with lock:  # every commit in progress is done
                pass
        self.write_stats()
        self._verify_pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.store.close()

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
