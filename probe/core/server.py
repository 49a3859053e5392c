"""The reference Core's WebSocket server (asyncio): handshake, ingest loop, acks.

Per connection: challenge -> hello (probe id, key proof) -> welcome (resume point,
credit) -> event batches and drop reports, each answered by an ack once committed.
Signature checks run on a thread pool (PyNaCl releases the GIL), LMDB commits on one
writer thread, so the event loop only moves frames. A bad frame gets an ``error`` frame
and a counter; only authentication failures close the connection.

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

import websockets
from websockets.asyncio.server import ServerConnection, serve

from probe.core.auth import AuthRefused, Authenticator, Session, pin_rejected_seqs
from probe.core.ingest import apply_drops, apply_events, verify_records
from protocols import wire
from protocols.identity import verify_code_reason
from storage.core_store import CoreStore

log = logging.getLogger("probe.core")

#: seconds a TLS handshake may take (a refused client is held this long at most)
TLS_HANDSHAKE_TIMEOUT = 10.0
#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not exported by the ssl module)
X509_V_FLAG_NO_CHECK_TIME = 0x200000
#: frames of garbage tolerated on one connection before the Core hangs up
MAX_BAD_FRAMES = 100
HELLO_TIMEOUT = 10.0
#: batches smaller than this are verified on one thread
SPLIT_VERIFY_AT = 256


#: seconds between checks of the revocation list file and writes of the counters file
HOUSEKEEPING_PERIOD = 0.2


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


class Core:
    """A Core serving probes from ``data_dir`` (store in DATA/store, pinned keys in DATA/trusted)."""

    def __init__(
        self,
        data_dir: str,
        *,
        credit: int = 20_000,
        core_id: str = "core",
        tls_cert: str | None = None,
        tls_key: str | None = None,
        client_ca: str | None = None,
        crl: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.auth = Authenticator(data_dir, ca_path=client_ca, crl_path=crl, clock=clock)
        self.trust = self.auth.trust
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.store = CoreStore(os.path.join(data_dir, "store"))
        self.credit = credit
        self.core_id = core_id
        self.counters: collections.Counter[str] = collections.Counter()
        self._verify_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._sessions: dict[str, ServerConnection] = {}
        self._session_info: dict[str, Session] = {}
        self._counters_written: dict[str, int] = {}
        self._stopping = asyncio.Event()
        self.port: int | None = None

    # --- connection lifecycle ---------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        self.counters["connections"] += 1
        peer = ws.remote_address
        if ws.subprotocol != wire.SUBPROTOCOL:
            self.counters["refused:subprotocol"] += 1
            await self._send(ws, wire.Error(wire.ErrorCode.BAD_FRAME, f"subprotocol {wire.SUBPROTOCOL} required", True))
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
            session = self._authenticate(ws, hello, nonce)
        except AuthRefused as exc:
            await self._refuse(ws, exc.code, str(exc), "auth", hello.probe_id)
            return
        probe_id = hello.probe_id
        previous = self._sessions.get(probe_id)
        if previous is not None:
            self.counters["replaced_sessions"] += 1
            await previous.close(code=1000, reason="replaced by a newer connection")
        self._sessions[probe_id] = ws
        self._session_info[probe_id] = session
        try:
            await self._serve_probe(ws, hello, session)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._sessions.get(probe_id) is ws:
                del self._sessions[probe_id]
                self._session_info.pop(probe_id, None)
            log.info(json.dumps({"event": "probe_disconnected", "probe_id": probe_id, "peer": str(peer)}))

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

    # --- the ingest loop --------------------------------------------------------------

    async def _serve_probe(self, ws: ServerConnection, hello: wire.Hello, session: Session) -> None:
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(self._writer, self.store.account, hello.probe_id)
        if hello.boot_id not in account.boots:
            account.boots = (account.boots + [hello.boot_id])[-16:]
        policy = self.auth.boot_policy(hello.probe_id, hello.boot_id, hello.boot_seq, account.acked)
        log.info(json.dumps({"event": "probe_connected", "probe_id": hello.probe_id, "boot_id": hello.boot_id, "resume": account.acked}))
        await self._send(ws, wire.Welcome(account.acked, self.credit))
        bad_frames = 0
        while True:
            data = await ws.recv()
            try:
                frame = wire.decode(data)
            except wire.FrameError as exc:
                bad_frames += 1
                self.counters[f"bad_frames:{exc.code}"] += 1
                await self._send(ws, wire.Error(exc.code, str(exc), bad_frames >= MAX_BAD_FRAMES))
                if bad_frames >= MAX_BAD_FRAMES:
                    await ws.close(code=1008, reason="too many bad frames")
                    return
                continue
            if isinstance(frame, wire.Events):
                ended = self._session_refusal(session)
                if ended is not None:
                    await self._refuse(ws, ended[0], ended[1], "session", hello.probe_id)
                    return
                self.counters["event_frames"] += 1
                await self._ingest(ws, loop, account, frame, session.keys, policy)
            elif isinstance(frame, wire.DropReport):
                apply_drops(account, frame.ranges)
                await loop.run_in_executor(self._writer, self.store.commit, account, [])
                self.counters["drop_reports"] += 1
                await self._send(ws, wire.Ack(account.acked, self.credit))
            elif isinstance(frame, wire.Error):
                self.counters[f"probe_errors:{frame.code}"] += 1
                log.warning(json.dumps({"event": "probe_error", "probe_id": hello.probe_id, "code": frame.code, "message": frame.message}))
            else:
                self.counters["bad_frames:unexpected_frame"] += 1
                await self._send(ws, wire.Error(wire.ErrorCode.UNEXPECTED_FRAME, f"{type(frame).__name__} not expected now"))

    async def _ingest(self, ws: ServerConnection, loop: asyncio.AbstractEventLoop, account: Any, frame: wire.Events, key: Any, policy: Any = None) -> None:
        records = frame.records
        if len(records) > SPLIT_VERIFY_AT:
            half = len(records) // 2
            parts = await asyncio.gather(
                loop.run_in_executor(self._verify_pool, verify_records, records[:half], account.probe_id, key, policy),
                loop.run_in_executor(self._verify_pool, verify_records, records[half:], account.probe_id, key, policy),
            )
            checked = parts[0] + parts[1]
        else:
            checked = await loop.run_in_executor(self._verify_pool, verify_records, records, account.probe_id, key, policy)
        checked = pin_rejected_seqs(checked)
        low = [seq for seq, rec, code in checked if code is None and seq <= account.acked]
        already = await loop.run_in_executor(self._writer, self.store.has, account.probe_id, low) if low else set()
        result = apply_events(account, checked, already)
        await loop.run_in_executor(self._writer, self.store.commit, account, result.store)
        self.counters["events_received"] += len(records)
        self.counters["events_stored"] += len(result.store)
        self.counters["events_duplicate"] += result.duplicates
        self.counters["events_rejected"] += len(result.rejected)
        if result.rejected:
            for _, code in result.rejected:
                self.counters[f"events_rejected:{code}"] += 1
            log.warning(json.dumps({"event": "events_rejected", "probe_id": account.probe_id, "rejected": [list(r) for r in result.rejected[:20]], "count": len(result.rejected)}))
        await self._send(ws, wire.Ack(account.acked, self.credit, tuple(result.rejected)))

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
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stopping.set)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError):
            pass
        housekeeping = asyncio.ensure_future(self._housekeeping())
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
            if ready_file:
                tmp = ready_file + ".tmp"
                with open(tmp, "w") as fh:
                    fh.write(f"{host}:{self.port}\n")
                os.replace(tmp, ready_file)
            await self._stopping.wait()
        housekeeping.cancel()
        self.write_counters()
        self._verify_pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.store.close()

    def stop(self) -> None:
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
        for probe_id, session in list(self._session_info.items()):
            ended = self._session_refusal(session)
            ws = self._sessions.get(probe_id)
            if ended is not None and ws is not None:
                await self._refuse(ws, ended[0], ended[1], "session", probe_id)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_PERIOD)
            if self.auth.crl_changed():
                await self._end_refused_sessions()
            self.write_counters()

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
