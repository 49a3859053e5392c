"""Command line: ``python -m probe run|core|config-docs ...``.

Every command prints a clear one-line message and exits non-zero on bad input; no
traceback reaches the user (exit codes: 0 done, 1 failed, 2 bad usage or configuration,
3 finished with events still buffered for a later delivery).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import types
import typing
from typing import Any, Callable

from probe.config import ConfigError, flag_settings, load_config, reference_markdown

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


def _flag_value(key: str, annotation: Any, text: str) -> Any:
    base = annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        base = next(a for a in typing.get_args(annotation) if a is not type(None))
    try:
        if base is int:
            return int(text)
        if base is float:
            return float(text)
    except ValueError:
        raise ConfigError(key, f"expected {'an integer' if base is int else 'a number'}, got {text!r}") from None
    return text


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    for flag, key, annotation in flag_settings():
        parser.add_argument(flag, dest="cfg:" + key, metavar="VALUE", help=f"overrides {key}")


def _load(args: argparse.Namespace) -> Any:
    annotations = {key: annotation for _, key, annotation in flag_settings()}
    overrides = {}
    for name, value in vars(args).items():
        if name.startswith("cfg:") and value is not None:
            key = name[4:]
            overrides[key] = _flag_value(key, annotations[key], value)
    return load_config(args.config, overrides)


# --- run --------------------------------------------------------------------------------


def _print_summary(s: dict[str, Any]) -> None:
    acc = s["accounting"]
    kinds = ", ".join(f"{k} {v}" for k, v in s["events_by_kind"].items()) or "none"
    dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "0"
    lines = [
        f"probe {s['probe_id']}: {s['outcome']}",
        f"  capture       {s['capture']}",
        f"  packets       {s['packets']} in {s['seconds']:.2f} s ({s['packets_per_second']:.0f} packets/s)",
        f"  flows         {s['flows']}",
        f"  events        {s['events_created']} created ({kinds})",
    ]
    if s["events_already_stored"]:
        lines.append(f"                {s['events_already_stored']} skipped: already stored by an earlier run of this capture")
    lines += [
        f"  delivered     {s['delivered']} to {s['core']}",
        f"  dropped       {dropped}",
        f"  pending       {s['pending']} still buffered in the spool",
        f"  accounting    created {acc['created']} = delivered {acc['delivered']} + dropped {acc['dropped_total']} + pending {acc['pending']}"
        + ("  (balanced)" if acc["balanced"] else "  (NOT BALANCED)"),
    ]
    if s["skipped"]:
        lines.append("  skipped/weird " + ", ".join(f"{k} {v}" for k, v in s["skipped"].items()))
    for error in s["source_errors"]:
        lines.append(f"  source error  {error}")
    if s["uplink"]["connection_failures"]:
        lines.append(f"  uplink        {s['uplink']['connection_failures']} connection failures")
    if s["uplink"]["halted"]:
        lines.append(f"  HALTED        {s['uplink']['halt_reason']}")
    if s["fatal"]:
        lines.append(f"  FATAL         {s['fatal']}")
    print("\n".join(lines))


def sample_capture() -> str:
    """Path of the bundled sample capture (real traffic of every protocol the probe parses)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples", "mixed.pcap")


def cmd_run(args: argparse.Namespace) -> int:
    from probe.app import ProbeApp
    from probe.logs import setup_logging

    if args.sample:
        if getattr(args, "cfg:capture.pcap") is not None:
            raise UsageError("give either --sample or --pcap, not both")
        setattr(args, "cfg:capture.pcap", sample_capture())
    config = _load(args)
    if not config.capture.pcap:
        raise UsageError("run needs a capture file: --pcap FILE, --sample, or capture.pcap in the config")
    if not os.path.isfile(config.capture.pcap):
        raise UsageError(f"capture file {config.capture.pcap} does not exist")
    setup_logging(config.logging.level, path=config.logging.file, repeat_window=config.logging.repeat_window)
    app = ProbeApp(config)
    signals = {"count": 0}

    def on_signal(signum: int, frame: Any) -> None:
        signals["count"] += 1
        app.stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        app.start()
        outcome = app.wait()
    finally:
        app.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = app.summary(outcome)
    if args.json_summary:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    if outcome == "fatal":
        return EXIT_FAILED
    return EXIT_OK if summary["pending"] == 0 else EXIT_PENDING


# --- core -------------------------------------------------------------------------------


def cmd_core_serve(args: argparse.Namespace) -> int:
    import asyncio

    from probe.config import host_port
    from probe.core.server import Core
    from probe.logs import setup_logging

    if host_port(args.listen):
        raise UsageError(f"--listen {args.listen!r}: must be HOST:PORT")
    setup_logging(args.log_level, component="core")
    host, _, port = args.listen.rpartition(":")
    core = Core(args.data_dir, credit=args.credit)
    try:
        asyncio.run(core.serve(host, int(port), args.ready_file))
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


def cmd_core_stats(args: argparse.Namespace) -> int:
    import attrs

    store = _open_store(args.data_dir)
    try:
        accounts = [attrs.asdict(a) for a in store.accounts()]
    finally:
        store.close()
    if args.json:
        print(json.dumps(accounts, sort_keys=True))
        return EXIT_OK
    if not accounts:
        print("no probe has delivered events to this Core yet")
    for a in accounts:
        rejected = ", ".join(f"{k} {v}" for k, v in a["rejected"].items()) or "0"
        reported = ", ".join(f"{k} {v}" for k, v in a["reported"].items()) or "0"
        print(
            f"probe {a['probe_id']}: stored {a['stored']}, received {a['received']}, duplicates {a['duplicates']}, "
            f"rejected {rejected}; acked through {a['acked']}; gaps explained by drop reports: {reported}; "
            f"unexplained gaps {a['gaps']}; boots {len(a['boots'])}"
        )
    return EXIT_OK


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


def cmd_config_docs(args: argparse.Namespace) -> int:
    print(reference_markdown(), end="")
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m probe", description="Network DPI sensor that delivers signed events to a Core.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="capture, dissect, sign and deliver (replays --pcap FILE)")
    _add_config_flags(run)
    run.add_argument("--json-summary", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--sample", action="store_true", help="replay the bundled sample capture (DNS, HTTP, TLS, SMB, DCE/RPC, Kerberos)")
    run.set_defaults(func=cmd_run)

    core = sub.add_parser("core", help="the reference Core server and its store")
    core_sub = core.add_subparsers(dest="core_command", metavar="ACTION", parser_class=_Parser)
    core_sub.required = True
    serve = core_sub.add_parser("serve", help="serve probes over WebSocket")
    serve.add_argument("--listen", default="127.0.0.1:8765", help="HOST:PORT (default 127.0.0.1:8765)")
    serve.add_argument("--data-dir", required=True, help="directory of the store and the enrolled keys")
    serve.add_argument("--credit", type=int, default=20_000, help="events a probe may have in flight")
    serve.add_argument("--ready-file", help="write HOST:PORT here once listening")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_core_serve)
    export = core_sub.add_parser("export", help="print stored events as JSON lines")
    export.add_argument("--data-dir", required=True)
    export.add_argument("--probe", help="only this probe id")
    export.add_argument("--kind", help="only events of this kind")
    export.set_defaults(func=cmd_core_export)
    stats = core_sub.add_parser("stats", help="per-probe accounts of the Core")
    stats.add_argument("--data-dir", required=True)
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_core_stats)
    enroll = core_sub.add_parser("enroll", help="pin a probe's public key")
    enroll.add_argument("--data-dir", required=True)
    enroll.add_argument("--probe-id", required=True)
    enroll.add_argument("--key", required=True, help="hex public key, or a file holding it")
    enroll.set_defaults(func=cmd_core_enroll)

    docs = sub.add_parser("config-docs", help="print the configuration reference (docs/configuration.md)")
    docs.set_defaults(func=cmd_config_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
