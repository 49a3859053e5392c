"""``python -m probe run``: capture, dissect, sign and deliver, then print the summary."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from probe.cli import EXIT_FAILED, EXIT_OK, EXIT_PENDING, UsageError, add_config_flags, load_from_args
from protocols.errors import IdentityError


def _print_summary(s: dict[str, Any]) -> None:
    acc = s["accounting"]
    kinds = ", ".join(f"{k} {v}" for k, v in s["events_by_kind"].items()) or "none"
    dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "0"
    lines = [
        f"probe {s['probe_id']}: {s['outcome']}",
        f"  capture       {s['capture']}",
        f"  packets       {s['packets']} in {s['seconds']:.2f} s ({s['packets_per_second']:.0f} packets/s)",
        f"  flows         {s['flows']} conn records in {s['conversations']} conversations (ICMP counted per address pair)",
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
    live = s.get("live")
    if live:
        source = ", ".join(f"{k} {v}" for k, v in live["dropped_at_source"].items()) or "0"
        lines.append(
            f"  live          {live['captured']} packets captured; kernel saw {live['kernel_packets']}, "
            f"dropped {live['kernel_drops']} (ring full), froze {live['kernel_freezes']} times; dropped at source {source}"
        )
        if len(live["workers"]) > 1:
            lines.append("  workers       " + "; ".join(f"#{i} {w['packets']} packets {w['flows']} flows" for i, w in enumerate(live["workers"])))
        if live["capture_failures"] or live["worker_restarts"]:
            failures = ", ".join(f"{k} {v}" for k, v in live["capture_failures"].items()) or "none"
            lines.append(f"  recovered     capture failures: {failures}; capture restarts {live['capture_restarts']}, worker restarts {live['worker_restarts']}")
    if s["skipped"]:
        lines.append("  skipped/weird " + ", ".join(f"{k} {v}" for k, v in s["skipped"].items()))
    for error in s["source_errors"]:
        lines.append(f"  source error  {error}")
    if s["uplink"]["connection_failures"]:
        lines.append(f"  uplink        {s['uplink']['connection_failures']} connection failures")
    if s["uplink"].get("backpressure_seconds"):
        lines.append(f"  backpressure  {s['uplink']['backpressure_seconds']:.1f} s (the Core asked to slow down)")
    if s["uplink"]["halted"]:
        lines.append(f"  HALTED        {s['uplink']['halt_reason']}")
        lines.append("                fix the identity, then reload (SIGHUP) or run again: the backlog is delivered then")
    if s["fatal"]:
        lines.append(f"  FATAL         {s['fatal']}")
    print("\n".join(lines))


def sample_capture() -> str:
    """Path of the bundled sample capture (real traffic of every protocol the probe parses)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples", "mixed.pcap")


def _check_source(args: argparse.Namespace, config: Any) -> Any:
    """Refuse what cannot start, before anything starts; return the live plan (or None)."""
    if config.capture.pcap:
        if not os.path.isfile(config.capture.pcap):
            raise UsageError(f"capture file {config.capture.pcap} does not exist")
        if config.capture.filter:
            raise UsageError("--filter applies to live capture (--interface); filter a file with tcpdump -r FILE -w OUT EXPR")
        return None
    if config.capture.pace != "fast":
        raise UsageError("--pace applies to a capture file (--pcap); a live capture runs at the wire's pace")
    from probe.interfaces import LiveCaptureError, plan_live_capture  # pyroute2: slow to import

    try:
        return plan_live_capture(config)
    except LiveCaptureError as exc:
        raise UsageError(str(exc)) from None


def install_reload_signal(app: Any) -> Any:
    """SIGHUP reloads the identity (in a thread: a signal handler must return at once).

    Returns the previous handler, for restoring.
    """
    log = logging.getLogger("probe.run")

    def reload() -> None:
        result = app.reload_identity()
        if not result.ok:
            log.warning("SIGHUP: identity reload refused: %s", result.message, extra={"component": "identity", "event": "sighup_reload", "reason": result.reason})

    def on_hup(signum: int, frame: Any) -> None:
        threading.Thread(target=reload, name="identity-reload", daemon=True).start()

    return signal.signal(signal.SIGHUP, on_hup)


def cmd_run(args: argparse.Namespace) -> int:
    from probe.app import ProbeApp
    from probe.logs import setup_logging
    from probe.progress import ProgressReporter

    if args.sample:
        if getattr(args, "cfg:capture.pcap") is not None or getattr(args, "cfg:capture.interface") is not None:
            raise UsageError("give one of --sample, --pcap FILE or --interface NAME")
        setattr(args, "cfg:capture.pcap", sample_capture())
    config = load_from_args(args)
    live = _check_source(args, config)
    setup_logging(config.logging.level, path=config.logging.file, repeat_window=config.logging.repeat_window)
    app = ProbeApp(config, live=live)
    signals = {"count": 0}

    def on_signal(signum: int, frame: Any) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            print("\nstopping: flushing open flows and delivering (signal again to stop at once)", file=sys.stderr, flush=True)
        app.request_stop(immediate=signals["count"] > 1)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = install_reload_signal(app)
    progress = None if args.no_progress else ProgressReporter(lambda: app.tracker.totals(), sys.stderr, live=live is not None)
    try:
        app.start()
        if progress is not None:
            progress.start()
        outcome = app.wait()
    except IdentityError as exc:
        raise UsageError(f"identity: {exc} (no usable signing key: nothing can be signed)") from None
    finally:
        if progress is not None:
            progress.stop()
        app.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = app.summary(outcome)
    if args.json_summary:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    if outcome == "fatal":
        print(f"probe: fatal: {summary['fatal']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if summary["pending"] == 0 else EXIT_PENDING


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="capture, dissect, sign and deliver: --interface NAME (default: the default route's), --pcap FILE or --sample",
    )
    add_config_flags(run)
    run.add_argument("--json-summary", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on standard error")
    run.add_argument("--sample", action="store_true", help="replay the bundled sample capture (DNS, HTTP, TLS, SMB, DCE/RPC, Kerberos)")
    run.set_defaults(func=cmd_run)
