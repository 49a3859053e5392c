"""``python -m probe console [COMMAND ...]``: talk to a running probe over its console socket.

With a command: run it, print a table (or ``--json``), exit 0 (1 when the probe answered
with an error or cannot be reached, 2 for a bad command or argument). Without one: an
interactive prompt with history, help and completion. ``console watch`` refreshes the
status like ``top``; ``console tail kinds=dns`` streams events until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from probe.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from probe.config import load_config

#: error codes that mean the operator typed something wrong
USAGE_CODES = ("unknown_command", "bad_argument", "bad_request")


def socket_path(args: argparse.Namespace) -> str:
    """--socket, else console.socket of --config, else DATA_DIR/console.sock (--data-dir or the config's)."""
    if args.socket:
        return args.socket
    overrides = {"probe.data_dir": args.data_dir} if args.data_dir else {}
    return load_config(args.config, overrides).console_socket


def cmd_console(args: argparse.Namespace) -> int:
    from probe.console_client import ConsoleClient, ConsoleError, ConsoleUnavailable, interactive, run_words

    path = socket_path(args)
    if "--json" in args.words:  # given after the command: still an option of ours
        args.words = [w for w in args.words if w != "--json"]
        args.json = True
    try:
        with ConsoleClient(path, timeout=args.timeout) as client:
            if not args.words:
                if not sys.stdin.isatty():
                    for line in sys.stdin:  # commands piped in, one a line
                        if line.strip() and not line.lstrip().startswith("#"):
                            run_words(client, line.split(), sys.stdout, args.json)
                    return EXIT_OK
                interactive(client, args.json)
                return EXIT_OK
            run_words(client, args.words, sys.stdout, args.json)
            return EXIT_OK
    except ConsoleUnavailable as exc:
        print(f"console: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ConsoleError as exc:
        print(f"console: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.code in USAGE_CODES else EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK  # output piped into head and the like


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console",
        help="talk to a running probe: status, metrics, flows, tail, pause/resume, ... (no command: a prompt)",
        description="Send COMMAND to the probe's console socket and print the answer; without COMMAND, open a prompt. "
        "'console help' lists the commands. Arguments are NAME=VALUE or positional.",
    )
    p.add_argument("--config", metavar="FILE", help="the probe's TOML configuration (for console.socket / probe.data_dir)")
    p.add_argument("--data-dir", metavar="DIR", help="the probe's data directory (the socket is DIR/console.sock)")
    p.add_argument("--socket", metavar="PATH", help="the console socket itself")
    p.add_argument("--json", action="store_true", help="print the raw JSON results")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="how long to wait for an answer (default 30)")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND [ARG ...]", help="e.g. status, flows 5, tail kinds=dns,conn, watch")
    p.set_defaults(func=cmd_console)
