"""The operator console: JSON lines over a local Unix socket, served by one selector thread.

Only root, the probe's own user and the configured users (or members of the configured
group) may talk to it: the socket file is created 0600 (0660 with a group) and every
connection's SO_PEERCRED is checked; anyone else gets one ``forbidden`` line and is
logged. The protocol is in docs/console.md.

Nothing a client does can block the probe: sockets are non-blocking, each client has a
bounded output buffer (a client that lets it fill is disconnected, counted), commands
run on a small thread pool one at a time per client (a client's further lines wait in
its bounded input buffer, then in the kernel), and the live tail is lossy per client:
events a slow reader cannot take are counted as dropped, never queued without bound.
The tail costs the data path one attribute check per signed batch while nobody listens.
"""

from __future__ import annotations

import collections
import concurrent.futures
import errno
import grp
import json
import logging
import os
import pwd
import selectors
import socket
import stat
import struct
import threading
import time
from typing import Any, Callable, Iterable, Protocol

import attrs
import pykka

from actors.base import SupervisedActor, handles
from actors.messages import SignedEvents
from actors.metrics import Metrics
from protocols.events.envelope import SIGNATURE_SIZE, MalformedEvent, decode_canonical

log = logging.getLogger("probe.console")

PROTOCOL_VERSION = 1
_READ_CHUNK = 65536
#: a tail client's events are dropped (counted) while this much output waits for it
_TAIL_HIGH_WATER = 256 << 10
#: seconds a client may leave output unread without any progress before it is disconnected
STALL_TIMEOUT = 30.0
#: signed batches the tap holds for the console thread; beyond it the oldest are dropped
_TAP_BATCHES = 256


# --- commands ------------------------------------------------------------------------


class CommandError(Exception):
    """A request the console refuses: ``code`` (bad_argument, unavailable, ...) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class Param:
    """One named argument of a command: type (int, float, str, bool, kinds), default, help."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "default": self.default, "help": self.help}
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@attrs.frozen
class Command:
    """A console command: ``run(args)`` returns a JSON-able dict or raises CommandError."""

    name: str
    summary: str
    run: Callable[[dict[str, Any]], dict[str, Any]]
    params: tuple[Param, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "params": [p.describe() for p in self.params]}


def _coerce(command: str, param: Param, value: Any) -> Any:
    """``value`` as ``param.type``; numbers and booleans may come as strings (typed by hand)."""
    where = f"{command}: argument {param.name!r}"
    if value is None:
        return None
    kind = param.type
    try:
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError
            out: Any = int(value)
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError
        elif kind == "bool":
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                out = value.lower() in ("true", "yes", "on", "1")
            elif isinstance(value, bool):
                out = value
            else:
                raise ValueError
        elif kind == "kinds":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError
            out = tuple(sorted({i.strip() for i in items if i.strip()}))
        else:
            if not isinstance(value, str):
                raise ValueError
            out = value
    except ValueError:
        expected = {"int": "an integer", "float": "a number", "bool": "true or false", "kinds": "a list of event kinds"}
        raise CommandError("bad_argument", f"{where} must be {expected.get(kind, 'a string')}, got {json.dumps(value)[:60]}") from None
    if param.choices and out not in param.choices:
        raise CommandError("bad_argument", f"{where} must be one of {', '.join(param.choices)}, got {out!r}")
    if param.minimum is not None and out < param.minimum:
        raise CommandError("bad_argument", f"{where} must be at least {param.minimum:g}, got {out!r}")
    if param.maximum is not None and out > param.maximum:
        raise CommandError("bad_argument", f"{where} must be at most {param.maximum:g}, got {out!r}")
    return out


def parse_args(command: Command, raw: Any) -> dict[str, Any]:
    """Check a request's ``args`` object against the command's parameters; fill in defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CommandError("bad_argument", f"{command.name}: args must be a JSON object")
    known = {p.name: p for p in command.params}
    for name in raw:
        if name not in known:
            takes = ", ".join(known) or "no arguments"
            raise CommandError("bad_argument", f"{command.name}: unknown argument {str(name)[:40]!r} (takes {takes})")
    return {p.name: _coerce(command.name, p, raw[p.name]) if p.name in raw else p.default for p in command.params}


class ConsoleBackend(Protocol):
    """What the console serves: the probe's commands, a greeting, a once-a-second tick."""

    def commands(self) -> dict[str, Command]: ...

    def greeting(self) -> dict[str, Any]: ...

    def tick(self) -> None: ...


# --- who may connect ---------------------------------------------------------------------


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class AccessPolicy:
    """Root, the probe's own user, the configured users, and members of the configured group."""

    def __init__(self, allow_users: Iterable[str] = (), group: str | None = None, own_uid: int | None = None) -> None:
        self.uids = {0, os.geteuid() if own_uid is None else own_uid}
        for user in allow_users:
            try:
                self.uids.add(int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid)
            except KeyError:
                log.warning("console.allow_users: no user %s on this host; ignored", user, extra={"component": "console", "event": "unknown_user"})
        self.gid: int | None = None
        self.members: set[str] = set()
        if group:
            try:
                entry = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
            except KeyError:
                raise LookupError(f"console.group: no group {group} on this host") from None
            self.gid, self.members = entry.gr_gid, set(entry.gr_mem)

    def allows(self, pid: int, uid: int, gid: int) -> bool:
        if uid in self.uids:
            return True
        if self.gid is None:
            return False
        return gid == self.gid or user_name(uid) in self.members or self.gid in _process_groups(pid)


def _process_groups(pid: int) -> set[int]:
    """Supplementary groups of ``pid`` (from /proc); empty if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:] if g.isdigit()}
    except OSError:
        pass  # the process exited already: judge by uid and gid alone
    return set()


# --- the live tail -------------------------------------------------------------------------


class EventTap:
    """Signed batches from the signer to the console thread; bounded and lossy, never blocking."""

    def __init__(self, max_batches: int = _TAP_BATCHES) -> None:
        self.active = False
        self.max_batches = max_batches
        self.dropped_events = 0
        self._batches: collections.deque[SignedEvents] = collections.deque()
        self._lock = threading.Lock()
        self.wake: Callable[[], None] = lambda: None

    def publish(self, batch: SignedEvents) -> None:
        """Called by the signer for each signed batch: one attribute check while nobody tails."""
        if not self.active:
            return
        with self._lock:
            if len(self._batches) >= self.max_batches:
                self.dropped_events += len(self._batches.popleft().records)
            self._batches.append(batch)
        self.wake()

    def take(self) -> list[SignedEvents]:
        with self._lock:
            out = list(self._batches)
            self._batches.clear()
        return out


def _skip_str(data: bytes, i: int) -> int:
    b = data[i]
    if 0xA0 <= b <= 0xBF:
        return i + 1 + (b & 0x1F)
    if b == 0xD9:
        return i + 2 + data[i + 1]
    if b == 0xDA:
        return i + 3 + int.from_bytes(data[i + 1 : i + 3], "big")
    raise ValueError("not a string")


_UINT_SIZES = {0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}


def peek_kind(record: bytes) -> str | None:
    """The event kind of a signed record without decoding it (envelope.py's layout); None if odd."""
    try:
        i = SIGNATURE_SIZE
        if record[i] != 0x97 or record[i + 1] != 0x01:
            return None
        i = _skip_str(record, _skip_str(record, i + 2))  # probe id, boot id
        b = record[i]
        i += 1 if b <= 0x7F else _UINT_SIZES[b]  # seq
        if record[i] != 0xCB:
            return None
        i += 9  # ts as float64
        b = record[i]
        if 0xA0 <= b <= 0xBF:
            start, length = i + 1, b & 0x1F
        elif b == 0xD9:
            start, length = i + 2, record[i + 1]
        else:
            return None
        if start + length > len(record):
            return None
        return record[start : start + length].decode("utf-8")
    except (IndexError, KeyError, ValueError):
        return None


class TokenBucket:
    """At most ``rate`` takes a second on average, bursts up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --- the server ----------------------------------------------------------------------------


@attrs.frozen
class ConsoleSettings:
    path: str
    group: str | None = None
    allow_users: tuple[str, ...] = ()
    max_clients: int = 128
    max_line: int = 65536
    client_buffer: int = 1 << 20
    tail_rate: float = 2000.0


class _Tail:
    __slots__ = ("request_id", "kinds", "limit", "sent", "dropped", "reported")

    def __init__(self, request_id: Any, kinds: tuple[str, ...], limit: int) -> None:
        self.request_id = request_id
        self.kinds = frozenset(kinds) or None  # None: every kind
        self.limit = limit
        self.sent = 0
        self.dropped = 0
        self.reported = 0

    def wants(self, kind: str | None) -> bool:
        return self.kinds is None or kind in self.kinds


class _Client:
    __slots__ = ("sock", "fd", "pid", "uid", "inbuf", "outbuf", "discarding", "busy", "closed", "tail", "progress_at", "interest", "requests")

    def __init__(self, sock: socket.socket, pid: int, uid: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pid = pid
        self.uid = uid
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.discarding = False  # inside an oversized line: drop bytes up to its newline
        self.busy = False  # a command runs on the pool for this client
        self.closed = False
        self.tail: _Tail | None = None
        self.progress_at = time.monotonic()
        self.interest = 0
        self.requests = 0


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def _error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


class ConsoleServer:
    """The listening socket, its clients and the tail fan-out, in one selector thread."""

    def __init__(
        self,
        settings: ConsoleSettings,
        backend: ConsoleBackend,
        tap: EventTap,
        metrics: Metrics,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.tap = tap
        self.metrics = metrics
        self.on_failure = on_failure
        self.policy = AccessPolicy(settings.allow_users, settings.group)
        self.clients: dict[int, _Client] = {}
        self.tailers: set[_Client] = set()
        self.bucket = TokenBucket(settings.tail_rate)
        self._tail_high = min(_TAIL_HIGH_WATER, settings.client_buffer // 2)
        self.started_at = time.monotonic()
        self.counts: collections.Counter[str] = collections.Counter()
        self._sel = selectors.DefaultSelector()
        self._results: collections.deque[tuple[_Client, Any, str, concurrent.futures.Future]] = collections.deque()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="console-cmd")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._next_tick = 0.0
        self.cpu_seconds = 0.0
        self._builtin = self._builtins()
        self._dirty: set[_Client] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Create the socket (raises OSError when it cannot) and start serving."""
        self._listener = self._bind()
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.tap.wake = self.wake
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()
        log.info("console listening on %s", self.settings.path, extra={"component": "console", "event": "listening"})

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.tap.active = False
        self.tap.wake = lambda: None
        for client in list(self.clients.values()):
            self._close(client, "probe_stopping")
        if self._listener is not None:
            self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
            self._unlink_if_ours()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already woken (the pipe is full) or closing

    def _bind(self) -> socket.socket:
        path = self.settings.path
        mode = 0o660 if self.policy.gid is not None else 0o600
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.fchmod(sock.fileno(), mode)  # the file bind() creates takes this mode: never wider, not even briefly
            sock.bind(path)
            os.chmod(path, mode)  # exactly this mode whatever the umask
            if self.policy.gid is not None:
                os.chown(path, -1, self.policy.gid)
            st = os.stat(path)
            self._inode = (st.st_dev, st.st_ino)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    @staticmethod
    def _clear_stale(path: str) -> None:
        """Remove the socket file a crashed probe left; refuse to touch anything else."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # nobody listens: left by a probe that did not stop cleanly
            return
        except OSError as exc:
            raise OSError(exc.errno, f"cannot check the existing socket {path}: {exc.strerror}") from None
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE, f"another process serves a console at {path}")

    def _unlink_if_ours(self) -> None:
        try:
            st = os.lstat(self.settings.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._inode:
            os.unlink(self.settings.path)

    # --- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, mask in self._sel.select(0.25):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        client = key.data
                        if not client.closed and mask & selectors.EVENT_WRITE:
                            self._flush(client)
                        if not client.closed and mask & selectors.EVENT_READ:
                            self._read(client)
                self._finish_commands()
                self._fan_out()
                now = time.monotonic()
                if now >= self._next_tick:
                    self._next_tick = now + 1.0
                    self._housekeeping(now)
        except Exception as exc:  # a bug here must not pass silently: the actor fails and is restarted
            if not self._stopping.is_set():
                log.error("console thread failed: %s: %s", type(exc).__name__, exc, exc_info=True, extra={"component": "console", "event": "failed"})
                self.on_failure(exc)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            return

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors and the like: refuse until it passes
                self.counts["accept_errors"] += 1
                log.warning("console cannot accept: %s", exc.strerror, extra={"component": "console", "event": "accept_failed"})
                return
            sock.setblocking(False)
            try:
                pid, uid, gid = peer_credentials(sock)
            except OSError:
                sock.close()
                continue
            if not self.policy.allows(pid, uid, gid):
                self._refuse(sock, "forbidden", f"user {user_name(uid)} (uid {uid}) may not use this console", "refused")
                log.warning(
                    "console connection refused: uid %d (%s), pid %d is not allowed", uid, user_name(uid), pid,
                    extra={"component": "console", "event": "refused", "uid": uid, "pid": pid},
                )
                continue
            if len(self.clients) >= self.settings.max_clients:
                self._refuse(sock, "busy", f"{self.settings.max_clients} console clients are connected already", "busy")
                continue
            client = _Client(sock, pid, uid)
            self.clients[client.fd] = client
            self.counts["connections"] += 1
            self.metrics.inc("console_connections_total")
            self._set_interest(client)
            self._send(client, {"console": "probe", "version": PROTOCOL_VERSION, **self.backend.greeting()})

    def _refuse(self, sock: socket.socket, code: str, message: str, counter: str) -> None:
        self.counts[counter] += 1
        self.metrics.inc("console_refused_total", reason=code)
        try:
            sock.send(_line(_error(None, code, message)), socket.MSG_NOSIGNAL)
        except OSError:
            pass  # the peer is gone already; it is refused either way
        sock.close()

    def _set_interest(self, client: _Client) -> None:
        want = 0
        if not (client.busy and len(client.inbuf) >= self.settings.max_line):
            want |= selectors.EVENT_READ  # else: stop reading; the kernel holds the rest
        if client.outbuf:
            want |= selectors.EVENT_WRITE
        if want != client.interest:
            if client.interest == 0:
                self._sel.register(client.sock, want, client)
            elif want == 0:
                self._sel.unregister(client.sock)
            else:
                self._sel.modify(client.sock, want, client)
            client.interest = want

    def _close(self, client: _Client, reason: str) -> None:
        if client.closed:
            return
        client.closed = True
        if client.interest:
            self._sel.unregister(client.sock)
            client.interest = 0
        client.sock.close()
        self.clients.pop(client.fd, None)
        if client.tail is not None:
            self.tailers.discard(client)
            self.tap.active = bool(self.tailers)
        self.counts[f"closed_{reason}"] += 1
        self.metrics.inc("console_disconnects_total", reason=reason)

    # --- input -------------------------------------------------------------------------

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(_READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client, "gone")
            return
        if not data:
            self._close(client, "closed")
            return
        client.inbuf += data
        self._process(client)

    def _process(self, client: _Client) -> None:
        """Handle the complete lines waiting in ``client``'s input, one command at a time."""
        limit = self.settings.max_line
        while not client.busy and not client.closed:
            newline = client.inbuf.find(b"\n")
            if newline < 0:
                if len(client.inbuf) > limit:
                    if not client.discarding:
                        self._reply_error(client, None, "line_too_long", f"request line longer than {limit} bytes; discarded")
                        client.discarding = True
                    client.inbuf.clear()
                break
            line = bytes(client.inbuf[:newline])
            del client.inbuf[: newline + 1]
            if client.discarding:
                client.discarding = False  # the end of the oversized line
                continue
            if len(line) > limit:
                self._reply_error(client, None, "line_too_long", f"request line longer than {limit} bytes; discarded")
                continue
            if line.strip():
                self._request(client, line)
        if not client.closed:
            self._set_interest(client)

    def _request(self, client: _Client, line: bytes) -> None:
        client.requests += 1
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._reply_error(client, None, "bad_json", 'a request is one line of JSON: {"cmd": "help"}')
            return
        if not isinstance(request, dict):
            self._reply_error(client, None, "bad_request", 'a request is a JSON object: {"cmd": "help"}')
            return
        request_id = request.get("id")
        if not isinstance(request_id, (str, int, float, type(None))) or isinstance(request_id, bool):
            self._reply_error(client, None, "bad_request", "id must be a string or a number")
            return
        name = request.get("cmd")
        if not isinstance(name, str):
            self._reply_error(client, request_id, "bad_request", 'missing "cmd" (a string); try {"cmd": "help"}')
            return
        self.metrics.inc("console_requests_total", command=name if name in self._all_names() else "unknown")
        try:
            builtin = self._builtin.get(name)
            if builtin is not None:
                args = parse_args(builtin, request.get("args"))
                builtin.run({"client": client, "id": request_id, **args})
                return
            command = self.backend.commands().get(name)
            if command is None:
                names = ", ".join(sorted(self._all_names()))
                raise CommandError("unknown_command", f"unknown command {name[:40]!r}; commands: {names}")
            args = parse_args(command, request.get("args"))
        except CommandError as exc:
            self._reply_error(client, request_id, exc.code, exc.message)
            return
        client.busy = True
        future = self._pool.submit(command.run, args)
        future.add_done_callback(lambda f, c=client, r=request_id, n=name: self._completed(c, r, n, f))

    def _completed(self, client: _Client, request_id: Any, name: str, future: concurrent.futures.Future) -> None:
        self._results.append((client, request_id, name, future))  # from a pool thread
        self.wake()

    def _finish_commands(self) -> None:
        while self._results:
            client, request_id, name, future = self._results.popleft()
            if client.closed:
                continue
            client.busy = False
            try:
                result = future.result()
            except CommandError as exc:
                self._reply_error(client, request_id, exc.code, exc.message)
            except concurrent.futures.CancelledError:
                self._reply_error(client, request_id, "unavailable", "the console is stopping")
            except Exception as exc:  # the command boundary: a failing command never takes the console down
                self.metrics.inc("console_command_failures_total", command=name)
                log.error("console command %s failed: %s: %s", name, type(exc).__name__, exc, exc_info=True, extra={"component": "console", "event": "command_failed"})
                self._reply_error(client, request_id, "failed", f"{name} failed: {type(exc).__name__}: {exc}")
            else:
                if name == "status" and isinstance(result, dict):
                    result["console"] = self.stats()
                self._send(client, {"id": request_id, "ok": True, "result": result})
            if not client.closed:
                self._process(client)

    # --- output ------------------------------------------------------------------------

    def _reply_error(self, client: _Client, request_id: Any, code: str, message: str) -> None:
        self.counts[f"error_{code}"] += 1
        self.metrics.inc("console_errors_total", code=code)
        self._send(client, _error(request_id, code, message))

    def _send(self, client: _Client, obj: dict[str, Any]) -> bool:
        return self._send_bytes(client, _line(obj))

    def _send_bytes(self, client: _Client, data: bytes, stream: bool = False) -> bool:
        if client.closed:
            return False
        if stream and len(client.outbuf) + len(data) > self._tail_high:
            return False
        if len(client.outbuf) + len(data) > self.settings.client_buffer:
            self._close(client, "slow")
            return False
        was_empty = not client.outbuf
        client.outbuf += data
        if stream:
            self._dirty.add(client)  # flushed once after the whole fan-out, not per event
        elif was_empty:
            self._flush(client)
        return not client.closed

    def _flush(self, client: _Client) -> None:
        while client.outbuf:
            try:
                sent = client.sock.send(client.outbuf, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(client, "gone")
                return
            del client.outbuf[:sent]
            client.progress_at = time.monotonic()
        self._set_interest(client)

    # --- built-in commands: help, tail, untail ----------------------------------------

    def _builtins(self) -> dict[str, Command]:
        return {
            "help": Command("help", "list the commands, or describe one", self._help, (Param("command", "str", None, "command to describe"),)),
            "tail": Command(
                "tail",
                "stream events as they are signed, until untail (lossy for a slow reader: drops are counted)",
                self._tail,
                (
                    Param("kinds", "kinds", (), "event kinds to show (comma-separated); all when empty"),
                    Param("limit", "int", 0, "end the stream after this many events; 0: no limit", minimum=0),
                ),
            ),
            "untail": Command("untail", "end this connection's tail stream", self._untail),
        }

    def _all_names(self) -> set[str]:
        return set(self._builtin) | set(self.backend.commands())

    def _help(self, args: dict[str, Any]) -> None:
        client, request_id = args["client"], args["id"]
        every = {**self._builtin, **self.backend.commands()}
        wanted = args["command"]
        if wanted is not None:
            if wanted not in every:
                raise CommandError("bad_argument", f"help: no command {wanted[:40]!r}; commands: {', '.join(sorted(every))}")
            self._send(client, {"id": request_id, "ok": True, "result": {"commands": [every[wanted].describe()]}})
            return
        self._send(client, {"id": request_id, "ok": True, "result": {"commands": [every[n].describe() for n in sorted(every)]}})

    def _tail(self, args: dict[str, Any]) -> None:
        client, request_id = args["client"], args["id"]
        if client.tail is not None:
            raise CommandError("bad_request", "this connection is tailing already; untail first")
        client.tail = _Tail(request_id, args["kinds"], args["limit"])
        self.tailers.add(client)
        self.tap.active = True
        self.metrics.inc("console_tails_total")
        self._send(client, {"id": request_id, "ok": True, "result": {"tail": True, "kinds": list(args["kinds"]), "limit": args["limit"]}})

    def _untail(self, args: dict[str, Any]) -> None:
        client, request_id = args["client"], args["id"]
        if client.tail is None:
            raise CommandError("bad_request", "this connection is not tailing")
        summary = self._end_tail(client, "untail")
        self._send(client, {"id": request_id, "ok": True, "result": summary})

    def _end_tail(self, client: _Client, reason: str) -> dict[str, Any]:
        tail = client.tail
        assert tail is not None
        client.tail = None
        self.tailers.discard(client)
        self.tap.active = bool(self.tailers)
        summary = {"sent": tail.sent, "dropped": tail.dropped, "reason": reason}
        self._send(client, {"tail_end": summary})
        return summary

    def _fan_out(self) -> None:
        batches = self.tap.take()
        if not batches or not self.tailers:
            return
        high = self._tail_high
        for batch in batches:
            tailers = [c for c in self.tailers if c.tail is not None]
            room = []
            for c in tailers:  # a tailer whose buffer is over half full misses the whole batch: counted, not decoded
                if len(c.outbuf) < high // 2:
                    room.append(c)
                else:
                    tail = c.tail
                    tail.dropped += len(batch.records) if tail.kinds is None else sum(batch.kinds.get(k, 0) for k in tail.kinds)  # type: ignore[union-attr]
            if room and (any(c.tail.kinds is None for c in room) or set().union(*(c.tail.kinds for c in room)).intersection(batch.kinds)):  # type: ignore[union-attr]
                self._fan_out_batch(batch, room)
        dirty, self._dirty = self._dirty, set()
        for c in dirty:
            if not c.closed:
                self._flush(c)

    def _fan_out_batch(self, batch: SignedEvents, room: list[_Client]) -> None:
        for _, record in batch.records:
            kind = peek_kind(record)
            takers = [c for c in room if c.tail is not None and c.tail.wants(kind)]
            if not takers:
                continue
            if not self.bucket.take():
                for c in takers:
                    c.tail.dropped += 1  # type: ignore[union-attr]
                continue
            try:
                event = decode_canonical(record[SIGNATURE_SIZE:]).as_json_object()
            except MalformedEvent:
                self.counts["tail_undecodable"] += 1
                continue
            if kind is None:  # the peek failed: filter on the decoded kind
                takers = [c for c in takers if c.tail.wants(event.get("kind"))]  # type: ignore[union-attr]
            data = _line({"event": event})
            for c in takers:
                tail = c.tail
                if tail is None:
                    continue
                if self._send_bytes(c, data, stream=True):
                    tail.sent += 1
                    if tail.limit and tail.sent >= tail.limit:
                        self._end_tail(c, "limit")
                elif not c.closed:
                    tail.dropped += 1

    def _housekeeping(self, now: float) -> None:
        for client in list(self.clients.values()):
            if client.outbuf and now - client.progress_at > STALL_TIMEOUT:
                self._close(client, "stalled")
                continue
            tail = client.tail
            if tail is not None and tail.dropped > tail.reported and len(client.outbuf) < self._tail_high // 2:
                self.metrics.inc("console_tail_dropped_total", tail.dropped - tail.reported)
                tail.reported = tail.dropped
                self._send(client, {"tail_dropped": tail.dropped})
        self.metrics.set("console_clients", len(self.clients))
        self.cpu_seconds = time.thread_time()  # this thread's own CPU: what serving the clients costs
        self.backend.tick()

    def stats(self) -> dict[str, Any]:
        return {
            "socket": self.settings.path,
            "clients": len(self.clients),
            "tailing": len(self.tailers),
            "connections": self.counts["connections"],
            "refused": self.counts["refused"],
            "busy_refused": self.counts["busy"],
            "disconnected_slow": self.counts["closed_slow"] + self.counts["closed_stalled"],
            "disconnected_gone": self.counts["closed_gone"] + self.counts["closed_closed"],
            "errors": sum(v for k, v in self.counts.items() if k.startswith("error_")),
            "tap_dropped": self.tap.dropped_events,
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


# --- the actor -------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class ServerFailed:
    """The console thread died: fail the actor so that the supervisor restarts it."""

    error: BaseException


@attrs.frozen(slots=True)
class RetryBind:
    """Try to create the socket again (it could not be created at start)."""


class ConsoleActor(SupervisedActor):
    """Runs the console server; a socket that cannot be created is logged and retried, never fatal."""

    name = "console"
    RETRY_SECONDS = 30.0

    def __init__(self, supervisor: Any, *, settings: ConsoleSettings, backend: ConsoleBackend, tap: EventTap, metrics: Metrics) -> None:
        super().__init__(supervisor)
        self.settings = settings
        self.backend = backend
        self.tap = tap
        self.metrics = metrics
        self.server: ConsoleServer | None = None
        self.unavailable: str | None = None
        self._timer: threading.Timer | None = None

    def start_child(self) -> None:
        self._try_start()

    def _try_start(self) -> None:
        server: ConsoleServer | None = None
        try:
            server = ConsoleServer(self.settings, self.backend, self.tap, self.metrics, on_failure=self._failed)
            server.start()
        except (OSError, LookupError) as exc:  # cannot bind, or the configured group is gone
            if server is not None:
                server.stop()
            self.unavailable = f"{self.settings.path}: {getattr(exc, 'strerror', None) or exc}"
            self.metrics.inc("console_unavailable_total")
            log.error(
                "console unavailable (%s); retrying in %g s", self.unavailable, self.RETRY_SECONDS,
                extra={"component": "console", "event": "unavailable"},
            )
            self._timer = threading.Timer(self.RETRY_SECONDS, self._tell, args=(RetryBind(),))
            self._timer.daemon = True
            self._timer.start()
            return
        self.server, self.unavailable = server, None

    def _tell(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:  # the actor stopped meanwhile: nothing left to tell
            return

    def _failed(self, error: BaseException) -> None:
        self._tell(ServerFailed(error))

    @handles(RetryBind)
    def on_retry(self, _: RetryBind) -> None:
        if self.server is None:
            self._try_start()

    @handles(ServerFailed)
    def on_server_failed(self, failed: ServerFailed) -> None:
        raise failed.error

    def stop_child(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.server is not None:
            self.server.stop()
            self.server = None
