"""The reference Core's WebSocket server (asyncio): handshake, ingest loop, acks.

Per connection: challenge -> hello (probe id, key proof) -> welcome (resume point,
credit) -> event batches and drop reports, each answered by an ack once committed.
Signature checks run on a thread pool (PyNaCl releases the GIL), LMDB commits on one
writer thread, so the event loop only moves frames. A bad frame gets an ``error`` frame
and a counter; only authentication failures close the connection.
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
from typing import Any

import nacl.exceptions
import websockets
from websockets.asyncio.server import ServerConnection, serve

from probe.core.ingest import apply_drops, apply_events, verify_records
from probe.core.trust import PROBE_ID, TrustStore
from protocols import wire
from storage.core_store import CoreStore

log = logging.getLogger("probe.core")

#: frames of garbage tolerated on one connection before the Core hangs up
MAX_BAD_FRAMES = 100
HELLO_TIMEOUT = 10.0
#: batches smaller than this are verified on one thread
SPLIT_VERIFY_AT = 256


class AuthRefused(Exception):
    """The hello does not authenticate; ``code`` goes back in the fatal error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Core:
    """A Core serving probes from ``data_dir`` (store in DATA/store, pinned keys in DATA/trusted)."""

    def __init__(self, data_dir: str, *, credit: int = 20_000, core_id: str = "core") -> None:
        self.data_dir = data_dir
        self.store = CoreStore(os.path.join(data_dir, "store"))
        self.trust = TrustStore(os.path.join(data_dir, "trusted"))
        self.credit = credit
        self.core_id = core_id
        self.counters: collections.Counter[str] = collections.Counter()
        self._verify_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._sessions: dict[str, ServerConnection] = {}
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
            key = self._authenticate(hello, nonce)
        except AuthRefused as exc:
            await self._refuse(ws, exc.code, str(exc), "auth")
            return
        probe_id = hello.probe_id
        previous = self._sessions.get(probe_id)
        if previous is not None:
            self.counters["replaced_sessions"] += 1
            await previous.close(code=1000, reason="replaced by a newer connection")
        self._sessions[probe_id] = ws
        try:
            await self._serve_probe(ws, hello, key)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._sessions.get(probe_id) is ws:
                del self._sessions[probe_id]
            log.info(json.dumps({"event": "probe_disconnected", "probe_id": probe_id, "peer": str(peer)}))

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

    # --- the ingest loop --------------------------------------------------------------

    async def _serve_probe(self, ws: ServerConnection, hello: wire.Hello, key: Any) -> None:
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(self._writer, self.store.account, hello.probe_id)
        if hello.boot_id not in account.boots:
            account.boots = (account.boots + [hello.boot_id])[-16:]
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
                await self._ingest(ws, loop, account, frame, key)
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

    async def _ingest(self, ws: ServerConnection, loop: asyncio.AbstractEventLoop, account: Any, frame: wire.Events, key: Any) -> None:
        records = frame.records
        if len(records) > SPLIT_VERIFY_AT:
            half = len(records) // 2
            parts = await asyncio.gather(
                loop.run_in_executor(self._verify_pool, verify_records, records[:half], account.probe_id, key),
                loop.run_in_executor(self._verify_pool, verify_records, records[half:], account.probe_id, key),
            )
            checked = parts[0] + parts[1]
        else:
            checked = await loop.run_in_executor(self._verify_pool, verify_records, records, account.probe_id, key)
        low = [seq for seq, rec, code in checked if code is None and seq <= account.acked]
        already = await loop.run_in_executor(self._writer, self.store.has, account.probe_id, low) if low else set()
        result = apply_events(account, checked, already)
        await loop.run_in_executor(self._writer, self.store.commit, account, result.store)
        self.counters["events_received"] += len(records)
        self.counters["events_stored"] += len(result.store)
        self.counters["events_duplicate"] += result.duplicates
        self.counters["events_rejected"] += len(result.rejected)
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
            if ready_file:
                tmp = ready_file + ".tmp"
                with open(tmp, "w") as fh:
                    fh.write(f"{host}:{self.port}\n")
                os.replace(tmp, ready_file)
            await self._stopping.wait()
        self._verify_pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.store.close()

    def stop(self) -> None:
        self._stopping.set()
