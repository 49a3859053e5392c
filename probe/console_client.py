"""The operator's side of the console: a client for the socket, readable output, a prompt.

``ConsoleClient`` speaks the JSON-lines protocol of docs/console.md; ``render`` turns a
command's result into a table for people; ``ConsoleShell`` is the interactive prompt
(stdlib cmd + readline: history, help, completion); ``watch`` refreshes the status like
``top``.
"""

from __future__ import annotations

import cmd
import collections
import itertools
import json
import os
import shlex
import socket
import sys
import time
from typing import Any, Iterator, TextIO

HISTORY_FILE = os.path.expanduser("~/.probe_console_history")
#: commands the client runs itself (on top of the probe's)
LOCAL_COMMANDS = [
    {
        "name": "watch",
        "summary": "refresh the status like top, until Ctrl-C",
        "params": [
            {"name": "interval", "type": "float", "default": 2.0, "help": "seconds between refreshes"},
            {"name": "count", "type": "int", "default": 0, "help": "refreshes before ending; 0: until Ctrl-C"},
        ],
    }
]
#: longest line the client accepts from the server (a status is a few KB)
MAX_LINE = 16 << 20


class ConsoleError(Exception):
    """The probe answered a request with an error (``code``, ``message``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConsoleUnavailable(Exception):
    """No console to talk to: no socket, no permission, or the probe went away."""


class ConsoleClient:
    """One connection to a probe's console."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except FileNotFoundError:
            self.sock.close()
            raise ConsoleUnavailable(f"no probe console at {path} (is a probe running with this data dir?)") from None
        except PermissionError:
            self.sock.close()
            raise ConsoleUnavailable(f"permission denied on {path}: the console is for root, the probe's user and console.allow_users") from None
        except ConnectionRefusedError:
            self.sock.close()
            raise ConsoleUnavailable(f"nothing listens at {path} (the probe is not running)") from None
        except OSError as exc:
            self.sock.close()
            raise ConsoleUnavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self._buf = bytearray()
        self._ids = itertools.count(1)
        self._stream: collections.deque[dict[str, Any]] = collections.deque()
        self._help: list[dict[str, Any]] | None = None
        self.tail_dropped = 0
        self.tail_summary: dict[str, Any] | None = None
        self.greeting = self._read()
        if self.greeting.get("ok") is False:
            error = self.greeting.get("error", {})
            self.close()
            raise ConsoleError(error.get("code", "refused"), error.get("message", "refused"))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "ConsoleClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the wire ------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        while True:
            newline = self._buf.find(b"\n")
            if newline >= 0:
                line = bytes(self._buf[:newline])
                del self._buf[: newline + 1]
                try:
                    message = json.loads(line)
                except ValueError:
                    raise ConsoleUnavailable("the probe sent a line that is not JSON") from None
                if isinstance(message, dict):
                    return message
                continue
            if len(self._buf) > MAX_LINE:
                raise ConsoleUnavailable("the probe sent an overlong line")
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise ConsoleUnavailable("the probe did not answer in time") from None
            except OSError as exc:
                raise ConsoleUnavailable(f"connection lost: {exc.strerror or exc}") from None
            if not chunk:
                raise ConsoleUnavailable("the probe closed the connection")
            self._buf += chunk

    def send(self, command: str, args: dict[str, Any] | None = None) -> int:
        """Send one request; return its id (the answer comes through :meth:`response`)."""
        request_id = next(self._ids)
        line = json.dumps({"cmd": command, "args": args or {}, "id": request_id}) + "\n"
        try:
            self.sock.sendall(line.encode())
        except OSError as exc:
            raise ConsoleUnavailable(f"connection lost: {exc.strerror or exc}") from None
        return request_id

    def response(self, request_id: int) -> dict[str, Any]:
        """The result of request ``request_id``; stream lines read meanwhile are kept for the tail."""
        while True:
            message = self._read()
            if "ok" in message and message.get("id") == request_id:
                if message["ok"]:
                    return message.get("result", {})
                error = message.get("error", {})
                raise ConsoleError(error.get("code", "error"), error.get("message", ""))
            if "ok" in message and message.get("ok") is False and message.get("id") is None:
                error = message.get("error", {})  # an error about no request in particular (line too long)
                raise ConsoleError(error.get("code", "error"), error.get("message", ""))
            self._stream.append(message)

    def call(self, command: str, /, **args: Any) -> dict[str, Any]:
        """Run one command and return its result (raises ConsoleError on an error answer)."""
        return self.response(self.send(command, args))

    def commands(self) -> list[dict[str, Any]]:
        """The server's command descriptions (cached) and the client's own (watch)."""
        if self._help is None:
            self._help = self.call("help")["commands"] + LOCAL_COMMANDS
        return self._help

    # --- the tail ------------------------------------------------------------------------

    def tail(self, kinds: str | list[str] = "", limit: int = 0) -> Iterator[dict[str, Any]]:
        """Events as the probe signs them, until the limit or :meth:`untail`."""
        self.tail_summary = None
        self.tail_dropped = 0
        self.call("tail", kinds=kinds, limit=limit)
        while True:
            message = self._stream.popleft() if self._stream else self._read()
            if "event" in message:
                yield message["event"]
            elif "tail_dropped" in message:
                self.tail_dropped = int(message["tail_dropped"])
            elif "tail_end" in message:
                self.tail_summary = message["tail_end"]
                return

    def untail(self) -> dict[str, Any]:
        """End the tail stream; returns its summary (events sent and dropped)."""
        result = self.response(self.send("untail"))
        self._stream.clear()  # events that were on their way when the stream ended
        self.tail_summary = result
        return result


# --- turning words into a request ----------------------------------------------------------


def build_request(words: list[str], commands: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """``flows 5`` or ``flows n=5`` -> ("flows", {"n": "5"}); the probe checks the types."""
    if not words:
        raise ConsoleError("bad_request", "no command given")
    name, rest = words[0], words[1:]
    spec = next((c for c in commands if c["name"] == name), None)
    params = [p["name"] for p in spec["params"]] if spec else []
    args: dict[str, Any] = {}
    positional = iter(params)
    for word in rest:
        key, sep, value = word.partition("=")
        if sep and key:
            args[key] = value
            continue
        key = next(positional, None)
        if key is None:
            raise ConsoleError("bad_argument", f"{name} takes {', '.join(params) or 'no arguments'}; got {word!r}")
        args[key] = word
    return name, args


# --- rendering -------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        any(_is_number(row[i]) for row in rows) and all(_is_number(row[i]) or row[i] is None for row in rows) for i in range(len(headers))
    ]

    def fmt(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()
    return "\n".join([fmt(headers)] + [fmt(r) for r in cells])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e15 else f"{value:g}"
    return str(value)


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s"


def render_status(s: dict[str, Any]) -> str:
    cap, rates, ev, buf, up, ident = s["capture"], s["rates"], s["events"], s["buffer"], s["uplink"], s["identity"]
    source = cap.get("path") if cap.get("kind") == "file" else f"interface {cap.get('interface')}"
    dropped = ", ".join(f"{k} {v:,}" for k, v in ev["dropped"].items()) or "0"
    disk, mem = buf["disk"], buf["memory"]
    lines = [
        f"probe {s['probe_id']}  pid {s['pid']}  {s['state'].upper()}  health {s.get('health', '-')}  up {_duration(s['uptime'])}  log {s['log_level']}",
        f"capture   {cap.get('kind')} {source}  workers {cap['workers']}{'  PAUSED' if cap['paused'] else ''}{'  done' if cap['done'] else ''}",
        f"          packets {cap['packets']:,} ({rates['packets_per_second']:,.0f}/s)  flows {cap['flows']:,}",
        f"events    created {ev['created']:,} ({rates['events_per_second']:,.0f}/s)  delivered {ev['delivered']:,}  dropped {dropped}  pending {ev['pending']:,}",
        f"buffer    disk {disk['events']:,} events, {_bytes(disk['bytes'])} of {_bytes(disk['quota_bytes'])} ({disk['utilization']:.1%})"
        + ("" if disk["ok"] else f"  DISK FAILED: {disk['error']}"),
        f"          memory {mem['events']:,} of {mem['max_events']:,} events, {_bytes(mem['bytes'])} ({mem['utilization']:.1%})",
        f"uplink    {up['state']}  {up['core']}  connects {up['connects']}  failures {up['connection_failures']}"
        + ("  BACKPRESSURE" if up["backpressure"] else ""),
        f"identity  {ident['state'].upper() if ident['state'] != 'ok' else 'ok'}  key {ident['key_path']}  public {ident['public_key'][:16]}..."
        + (f"  ({ident['reason']}: {ident['message']})" if ident.get("reason") else ""),
    ]
    cert = ident.get("certificate")
    if cert:
        lines.append(f"          certificate {cert['serial']} from {cert['issuer']}, valid until {time.strftime('%Y-%m-%d %H:%M', time.gmtime(cert['not_after']))} UTC")
    transmission = ident.get("transmission", {})
    if transmission.get("halted"):
        lines.append(f"          TRANSMISSION HALTED: {transmission.get('reason')}")
    for errors in cap["errors"]:
        lines.append(f"          source error: {errors}")
    alerts = s.get("alerts", [])
    lines.append("alerts    " + ("none" if not alerts else f"{len(alerts)} active"))
    for alert in alerts:
        lines.append(f"          {alert['severity'].upper():8s} {alert['key']}: {alert['message']}")
    lines.append("")
    lines.append(table(["ACTOR", "STATE", "ALIVE", "QUEUED", "RESTARTS"], [[a["name"], a["state"], a["alive"], a["queued"], a["restarts"]] for a in s["actors"]]))
    console = s.get("console")
    if console:
        lines.append("")
        lines.append(
            f"console   {console['clients']} clients ({console['tailing']} tailing)  connections {console['connections']:,}  "
            f"refused {console['refused']}  slow dropped {console['disconnected_slow']}  errors {console['errors']}"
        )
    return "\n".join(lines)


def render_event(event: dict[str, Any]) -> str:
    """One event on one line: time, kind, uid, endpoints, then the other fields."""
    ts = event.get("ts")
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z" if isinstance(ts, (int, float)) else "-"
    parts = [when, f"{event.get('kind', '?'):<12}", str(event.get("uid") or "-")]
    if "id.orig_h" in event:
        parts.append(f"{event['id.orig_h']}:{event.get('id.orig_p')} -> {event.get('id.resp_h')}:{event.get('id.resp_p')}")
    skip = {"ts", "kind", "uid", "probe_id", "boot_id", "seq", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"}
    parts += [f"{k}={_short(v)}" for k, v in event.items() if k not in skip and v not in (None, "", [], ())]
    return " ".join(parts)


def _short(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def render(command: str, result: dict[str, Any]) -> str:
    """A command's result as text for people."""
    if command == "status":
        return render_status(result)
    if command == "help":
        out = []
        for c in result["commands"] + (LOCAL_COMMANDS if len(result["commands"]) > 1 else []):
            params = " ".join(f"[{p['name']}=]" for p in c["params"])
            out.append(f"{c['name']} {params}".rstrip())
            out.append(f"    {c['summary']}")
            for p in c["params"]:
                choices = f" ({'|'.join(p['choices'])})" if p.get("choices") else ""
                default = "" if p["default"] in (None, "", []) else f"; default {p['default']}"
                out.append(f"      {p['name']}: {p['type']}{choices}: {p['help']}{default}")
        return "\n".join(out)
    if command == "metrics":
        if "text" in result:
            return result["text"].rstrip("\n")
        metrics = result["metrics"]
        return table(["METRIC", "VALUE"], [[k, v] for k, v in metrics.items()]) if metrics else "no metrics match"
    if command == "alerts":
        alerts = result["alerts"]
        out = [table(["SEVERITY", "ALERT", "MESSAGE"], [[a["severity"], a["key"], a["message"]] for a in alerts]) if alerts else "no active alerts"]
        history = result.get("history", [])
        if history:
            out += ["", "recent transitions:"]
            out += [f"  {_clock(a['at'])}  {a['state']:<8} {a['key']}: {a['message']}" for a in history]
        return "\n".join(out)
    if command == "flows":
        rows = [
            [f"{f['orig_h']}:{f['orig_p']}", f"{f['resp_h']}:{f['resp_p']}", f["proto"], f["service"], f["bytes"], f["orig_pkts"] + f["resp_pkts"], round(f["duration"], 1), f["uid"]]
            for f in result["flows"]
        ]
        head = f"{result['open']:,} open flows"
        errors = [f"worker {w['worker']}: {w['error']}" for w in result["workers"] if w.get("error")]
        body = table(["ORIG", "RESP", "PROTO", "SERVICE", "BYTES", "PKTS", "SECONDS", "UID"], rows) if rows else "no open flows"
        return "\n".join([head, body] + errors)
    if command in ("pause", "resume"):
        errors = [f"worker {w['worker']}: {w['error']}" for w in result["workers"] if w.get("error")]
        return "\n".join([f"capture {'paused' if result['paused'] else 'resumed'} at {result['packets']:,} packets"] + errors)
    if command == "flush":
        return (
            f"ended {result['flows_ended']:,} flows ({result['events']:,} events); {result['open_flows']:,} still open; "
            f"{result['pending']:,} events pending; uplink {result['uplink']}"
        )
    if command == "shed":
        return f"dropped {result['dropped']:,} events from the memory tier ({result['memory_before']:,} -> {result['memory_after']:,}); {result['pending']:,} pending"
    if command == "reload-identity":
        if result["ok"]:
            return "identity reloaded: key and certificate good" + ("; transmission resumed" if result.get("resumed") else "")
        halted = result.get("identity", {}).get("transmission", {}).get("halted")
        return f"identity reload REFUSED ({result['reason']}): {result['message']}\nthe running identity is unchanged" + (
            "; transmission stays HALTED" if halted else ""
        )
    if command == "loglevel":
        return f"log level {result['level']}" + (f" (was {result['previous']})" if "previous" in result else "")
    if command == "shutdown":
        return f"probe stopping: draining for up to {result['drain_timeout']:g} s ({result['pending']:,} events pending)"
    return json.dumps(result, indent=2, sort_keys=True)


# --- running commands ----------------------------------------------------------------------


def run_tail(client: ConsoleClient, args: dict[str, Any], out: TextIO, as_json: bool) -> dict[str, Any]:
    """Print events until the limit or Ctrl-C (which ends the stream cleanly)."""
    try:
        for event in client.tail(args.get("kinds", ""), args.get("limit", 0)):
            out.write((json.dumps(event, sort_keys=True) if as_json else render_event(event)) + "\n")
            out.flush()
    except KeyboardInterrupt:
        client.untail()
    summary = client.tail_summary or {}
    print(f"tail ended ({summary.get('reason', 'stopped')}): {summary.get('sent', 0):,} events, {summary.get('dropped', 0):,} dropped", file=sys.stderr)
    return summary


def watch(client: ConsoleClient, interval: float, count: int, out: TextIO, as_json: bool) -> None:
    """Print the status every ``interval`` seconds (clearing a terminal first), ``count`` times (0: forever)."""
    clear = out.isatty() and not as_json
    shown = 0
    try:
        while True:
            status = client.call("status")
            if as_json:
                out.write(json.dumps(status, sort_keys=True) + "\n")
            else:
                out.write(("\x1b[H\x1b[2J" if clear else "") + time.strftime("%H:%M:%S ") + render_status(status) + "\n" + ("" if clear else "\n"))
            out.flush()
            shown += 1
            if count and shown >= count:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def run_words(client: ConsoleClient, words: list[str], out: TextIO, as_json: bool) -> None:
    """Run one command line (already split into words) and print its result."""
    name, args = build_request(words, client.commands())
    if name == "watch":
        try:
            interval = float(args.pop("interval", 2.0))
            count = int(args.pop("count", 0))
        except ValueError:
            raise ConsoleError("bad_argument", "watch: interval is a number of seconds, count an integer") from None
        if interval <= 0 or count < 0 or args:
            raise ConsoleError("bad_argument", "watch takes interval (> 0) and count (>= 0)")
        watch(client, interval, count, out, as_json)
        return
    if name == "tail":
        run_tail(client, args, out, as_json)
        return
    if name == "help" and args.get("command") in [c["name"] for c in LOCAL_COMMANDS]:
        result = {"commands": [c for c in LOCAL_COMMANDS if c["name"] == args["command"]]}
        out.write((json.dumps(result, sort_keys=True) if as_json else render(name, result)) + "\n")
        return
    result = client.call(name, **args)
    out.write((json.dumps(result, sort_keys=True) if as_json else render(name, result)) + "\n")
    out.flush()


class ConsoleShell(cmd.Cmd):
    """``probe> `` prompt: every console command, with history, help and tab completion."""

    intro = "probe console: 'help' lists the commands, 'help COMMAND' describes one, Ctrl-D quits"
    prompt = "probe> "

    def __init__(self, client: ConsoleClient, as_json: bool = False, stdout: TextIO | None = None) -> None:
        super().__init__(stdout=stdout)
        self.client = client
        self.as_json = as_json
        self.readline: Any = None

    def preloop(self) -> None:
        if self.readline is not None:
            return  # back from a Ctrl-C: history is loaded already
        try:
            import readline
        except ImportError:
            return
        self.readline = readline
        readline.set_completer_delims(" \t\n")  # command names hold '-', arguments '='
        if "libedit" in (readline.__doc__ or ""):
            readline.parse_and_bind("bind ^I rl_complete")
        try:
            readline.read_history_file(HISTORY_FILE)
        except OSError:
            pass  # no history yet
        readline.set_history_length(1000)

    def postloop(self) -> None:
        if self.readline is not None:
            try:
                self.readline.write_history_file(HISTORY_FILE)
            except OSError:
                pass  # a read-only home: history is a convenience

    def _names(self) -> list[str]:
        return sorted([c["name"] for c in self.client.commands()] + ["watch", "quit"])

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        if line in ("EOF", "quit", "exit"):
            self.stdout.write("\n" if line == "EOF" else "")
            return True
        try:
            run_words(self.client, shlex.split(line), self.stdout, self.as_json)
        except ConsoleError as exc:
            self.stdout.write(f"error: {exc.message}\n")
        except ValueError as exc:
            self.stdout.write(f"error: {exc}\n")
        return False

    def onecmd(self, line: str) -> bool:
        line = line.strip()
        if not line:
            return False
        if line == "EOF" or line.split()[0] in ("quit", "exit"):
            return self.default(line.split()[0])
        if line.split()[0] == "help":
            line = " ".join(["help"] + [f"command={w}" for w in line.split()[1:2]])
        return self.default(line)

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        return [n for n in self._names() if n.startswith(text)]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        words = line.split()
        spec = next((c for c in self.client.commands() if c["name"] == words[0]), None) if words else None
        if words and words[0] == "help":
            return [n for n in self._names() if n.startswith(text)]
        if spec is None:
            return []
        key, sep, value = text.partition("=")
        if sep:
            param = next((p for p in spec["params"] if p["name"] == key), None)
            choices = param.get("choices", []) if param else []
            return [f"{key}={c}" for c in choices if c.startswith(value)]
        return [f"{p['name']}=" for p in spec["params"] if p["name"].startswith(text)]

    def complete(self, text: str, state: int) -> str | None:
        if state == 0 and self.readline is not None:
            line = self.readline.get_line_buffer()
            begidx = self.readline.get_begidx()
            self.completion_matches = self.completenames(text) if not line[:begidx].strip() else self.completedefault(text, line, begidx, self.readline.get_endidx())
        try:
            return self.completion_matches[state]
        except (IndexError, AttributeError):
            return None


def interactive(client: ConsoleClient, as_json: bool = False) -> None:
    shell = ConsoleShell(client, as_json)
    while True:
        try:
            shell.cmdloop()
            return
        except KeyboardInterrupt:
            shell.intro = None
            print("^C")
