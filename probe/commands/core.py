"""``python -m probe core serve|export|stats|enroll``: the reference Core and its store."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from probe.cli import EXIT_OK, Parser, UsageError




def cmd_core_serve(args: argparse.Namespace) -> int:
    import asyncio

    import ssl

    from probe.config import host_port
    from probe.core.overload import ControlError, Overload
    from probe.core.server import Core, CoreSettings
    from probe.logs import setup_logging
    from protocols.errors import IdentityError

    if host_port(args.listen):
        raise UsageError(f"--listen {args.listen!r}: must be HOST:PORT")
    if args.credit <= 0:
        raise UsageError("--credit must be greater than 0")
    if not 0 <= args.low_watermark < args.high_watermark:
        raise UsageError("--low-watermark must be >= 0 and below --high-watermark")
    try:
        overload = Overload().updated({"rate_limit": args.rate_limit, "slow_disk_ms": args.slow_disk_ms, "paused": args.pause})
    except ControlError as exc:
        raise UsageError(str(exc)) from None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.crl and not args.client_ca:
        raise UsageError("--crl needs --client-ca (the CA that signs the revocation list)")
    for flag in ("tls_cert", "tls_key", "client_ca", "crl"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            raise UsageError(f"--{flag.replace('_', '-')} {path}: no such file")
    setup_logging(args.log_level, component="core")
    if args.parent_pid:
        from probe.lifeline import exit_with_parent

        exit_with_parent(args.parent_pid)
    host, _, port = args.listen.rpartition(":")
    settings = CoreSettings(credit=args.credit, high_watermark=args.high_watermark, low_watermark=args.low_watermark)
    try:
        core = Core(
            args.data_dir, settings=settings, overload=overload,
            tls_cert=args.tls_cert, tls_key=args.tls_key, client_ca=args.client_ca, crl=args.crl,
        )
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        asyncio.run(core.serve(host, int(port), args.ready_file))
    except IdentityError as exc:
        raise UsageError(str(exc)) from None
    except ssl.SSLError as exc:
        raise UsageError(f"cannot use the TLS certificate or key: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.listen}: {exc.strerror}") from None
    return EXIT_OK


def _open_store(data_dir: str) -> Any:
    from storage.core_store import CoreStore

    path = os.path.join(data_dir, "store")
    if not os.path.isdir(path):
        raise UsageError(f"no Core store under {data_dir} (expected {path})")
    return CoreStore(path)


def cmd_core_export(args: argparse.Namespace) -> int:
    from protocols.events.envelope import MalformedEvent, decode_canonical, split_signed

    store = _open_store(args.data_dir)
    try:
        out = sys.stdout
        for probe_id, seq, record in store.events(args.probe):
            try:
                event = decode_canonical(split_signed(record)[1])
            except MalformedEvent as exc:
                print(f"probe core export: skipping undecodable event {probe_id}/{seq}: {exc}", file=sys.stderr)
                continue
            if args.kind and event.kind != args.kind:
                continue
            out.write(json.dumps(event.as_json_object(), sort_keys=False) + "\n")
    except BrokenPipeError:
        pass
    finally:
        store.close()
    return EXIT_OK


def _live_stats(data_dir: str) -> dict[str, Any] | None:
    """The running Core's last stats snapshot (None if it never ran here)."""
    from probe.core.server import STATS_FILE

    try:
        with open(os.path.join(data_dir, STATS_FILE)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_core_stats(args: argparse.Namespace) -> int:
    import time

    import attrs

    store = _open_store(args.data_dir)
    try:
        accounts = [attrs.asdict(a) for a in store.accounts()]
    finally:
        store.close()
    live = _live_stats(args.data_dir)
    if args.json:
        print(json.dumps({"probes": accounts, "core": live}, sort_keys=True))
        return EXIT_OK
    if not accounts:
        print("no probe has delivered events to this Core yet")
    refusals = _refusals(args.data_dir)
    if refusals:
        print("refused: " + ", ".join(f"{k} {v}" for k, v in sorted(refusals.items())))
    for a in accounts:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(a["rejected"].items())) or "0"
        reported = ", ".join(f"{k} {v}" for k, v in sorted(a["reported"].items())) or "0"
        bad = ", ".join(f"{k} {v}" for k, v in sorted(a["bad_frames"].items())) or "0"
        print(f"probe {a['probe_id']}  (boots {len(a['boots'])}, acked through {a['acked']})")
        print(f"  received      {a['received']}")
        print(f"  stored        {a['stored']}")
        print(f"  duplicates    {a['duplicates']}" + (f" ({a['conflicts']} with different content)" if a["conflicts"] else ""))
        print(f"  rejected      {rejected}")
        print(f"  gaps          explained by drop reports: {reported}; unexplained: {a['gaps']}")
        print(f"  bad frames    {bad}")
    if live:
        age = time.time() - live.get("written_at", 0)
        bp = live["backpressure"]
        over = live["overload"]
        knobs = ", ".join(
            part
            for part in (
                f"rate limit {over['rate_limit']:g}/s" if over["rate_limit"] else "",
                f"slow disk {over['slow_disk_ms']:g} ms" if over["slow_disk_ms"] else "",
                "paused" if over["paused"] else "",
            )
            if part
        ) or "none"
        counters = live["counters"]
        bad = ", ".join(f"{k[11:]} {v}" for k, v in counters.items() if k.startswith("bad_frames:")) or "0"
        running = _alive(live.get("pid", 0))
        print(
            f"Core {live['core_id']} (pid {live['pid']}, port {live['port']}; "
            + (f"snapshot {age:.1f} s old)" if running else f"not running; last snapshot {age:.0f} s old)")
        )
        print(f"  ingest queue  {live['queued_events']} events; committing {live['commit_rate']:g} events/s")
        print(
            f"  backpressure  {'ON' if bp['on'] else 'off'}"
            + (f" (suggested {bp['rate']:g} events/s)" if bp["on"] and bp["rate"] is not None else "")
            + f"; {bp['seconds']:.1f} s in {bp['episodes']} episodes"
        )
        print(f"  overload      {knobs}")
        print(f"  connections   {counters.get('connections', 0)}; bad frames {bad}")
    return EXIT_OK


def cmd_core_control(args: argparse.Namespace) -> int:
    from probe.core.overload import CONTROL_FILE, ControlError, write_control

    path = os.path.join(args.data_dir, CONTROL_FILE)
    if args.clear:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        print("overload controls cleared (the Core's flags apply)")
        return EXIT_OK
    changes: dict[str, Any] = {}
    if args.rate_limit is not None:
        changes["rate_limit"] = args.rate_limit
    if args.no_rate_limit:
        changes["rate_limit"] = None
    if args.slow_disk_ms is not None:
        changes["slow_disk_ms"] = args.slow_disk_ms
    if args.pause:
        changes["paused"] = True
    if args.resume:
        changes["paused"] = False
    if not changes:
        raise UsageError("nothing to change: give --rate-limit, --no-rate-limit, --slow-disk-ms, --pause, --resume or --clear")
    if not os.path.isdir(args.data_dir):
        raise UsageError(f"no Core data directory {args.data_dir}")
    try:
        now = write_control(path, changes)
    except ControlError as exc:
        raise UsageError(str(exc)) from None
    print("overload controls: " + json.dumps(now, sort_keys=True))
    return EXIT_OK


def _refusals(data_dir: str) -> dict[str, int]:
    """Connections and events the Core refused, by reason (from its counters file)."""
    try:
        with open(os.path.join(data_dir, "counters.json")) as fh:
            counters = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in counters.items() if (k.startswith("refused:") or k.startswith("events_rejected:")) and v}


def cmd_core_enroll(args: argparse.Namespace) -> int:
    from probe.core.trust import TrustError, TrustStore

    key = args.key
    if os.path.isfile(key):
        with open(key) as fh:
            key = fh.read().strip()
    try:
        TrustStore(os.path.join(args.data_dir, "trusted")).enroll(args.probe_id, key)
    except TrustError as exc:
        raise UsageError(str(exc)) from None
    print(f"enrolled probe {args.probe_id}")
    return EXIT_OK



def register(sub: argparse._SubParsersAction) -> None:
    core = sub.add_parser("core", help="the reference Core server and its store")
    core_sub = core.add_subparsers(dest="core_command", metavar="ACTION", parser_class=Parser)
    core_sub.required = True
    serve = core_sub.add_parser("serve", help="serve probes over WebSocket")
    serve.add_argument("--listen", default="127.0.0.1:8765", help="HOST:PORT (default 127.0.0.1:8765)")
    serve.add_argument("--data-dir", required=True, help="directory of the store and the enrolled keys")
    serve.add_argument("--credit", type=int, default=20_000, help="events a probe may have in flight")
    serve.add_argument("--high-watermark", type=int, default=15_000, help="queued events past which the Core asks probes to slow down")
    serve.add_argument("--low-watermark", type=int, default=5_000, help="queued events below which it lifts backpressure")
    serve.add_argument("--rate-limit", type=float, help="overload: commit at most this many events per second")
    serve.add_argument("--slow-disk-ms", type=float, default=0.0, help="overload: add this many milliseconds to every commit")
    serve.add_argument("--pause", action="store_true", help="overload: start paused (commit nothing until resumed)")
    serve.add_argument("--ready-file", help="write HOST:PORT here once listening")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--parent-pid", type=int, metavar="PID", help="stop when process PID, our parent, exits (the probe of an embedded Core)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this certificate (pki issue-core makes one)")
    serve.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert (mode 0600)")
    serve.add_argument("--client-ca", metavar="FILE", help="require probe certificates issued by this CA (mutual TLS)")
    serve.add_argument("--crl", metavar="FILE", help="revocation list of that CA, reloaded when it changes and on SIGHUP")
    serve.set_defaults(func=cmd_core_serve)
    export = core_sub.add_parser("export", help="print stored events as JSON lines")
    export.add_argument("--data-dir", required=True)
    export.add_argument("--probe", help="only this probe id")
    export.add_argument("--kind", help="only events of this kind")
    export.set_defaults(func=cmd_core_export)
    stats = core_sub.add_parser("stats", help="per-probe accounts and the running Core's queue and backpressure")
    stats.add_argument("--data-dir", required=True)
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_core_stats)
    control = core_sub.add_parser("control", help="overload a running Core on purpose (rate limit, slow disk, pause)")
    control.add_argument("--data-dir", required=True)
    control.add_argument("--rate-limit", type=float, help="commit at most this many events per second")
    control.add_argument("--no-rate-limit", action="store_true", help="lift the rate limit")
    control.add_argument("--slow-disk-ms", type=float, help="milliseconds added to every commit (0: none)")
    pause = control.add_mutually_exclusive_group()
    pause.add_argument("--pause", action="store_true", help="commit nothing until --resume")
    pause.add_argument("--resume", action="store_true")
    control.add_argument("--clear", action="store_true", help="remove every runtime control (back to the flags)")
    control.set_defaults(func=cmd_core_control)
    enroll = core_sub.add_parser("enroll", help="pin a probe's public key")
    enroll.add_argument("--data-dir", required=True)
    enroll.add_argument("--probe-id", required=True)
    enroll.add_argument("--key", required=True, help="hex public key, or a file holding it")
    enroll.set_defaults(func=cmd_core_enroll)
