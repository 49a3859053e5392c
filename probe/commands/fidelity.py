"""``python -m probe fidelity DIR...``: replay captures and compare the Core's events with other tools."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from probe.cli import EXIT_FAILED, EXIT_OK, UsageError


def cmd_fidelity(args: argparse.Namespace) -> int:
    from probe.fidelity import tool

    for directory in args.dirs:
        if not os.path.isdir(directory):
            raise UsageError(f"{directory} is not a directory")
    captures = tool.find_captures(args.dirs)
    if args.only:
        captures = [c for c in captures if any(part in c.name for part in args.only)]
    if not captures:
        raise UsageError("no capture with a NAME.truth.json or NAME.expected.json beside it in " + ", ".join(args.dirs))
    with tempfile.TemporaryDirectory(prefix="probe-fidelity-") as scratch:
        results = tool.check_all(captures, args.jobs, Path(scratch))
    if args.json:
        print(json.dumps(tool.as_json(results), sort_keys=True))
    else:
        print(tool.as_text(results, show_misses=not args.no_misses))
    return EXIT_FAILED if tool.failed(results) else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    fidelity = sub.add_parser(
        "fidelity",
        help="replay captures through the probe and compare its events with tshark/Zeek/Suricata/Arkime",
        description="Replays every capture in DIR that has NAME.truth.json (tshark) or NAME.expected.json "
        "(Zeek, Suricata, Arkime baselines) through `python -m probe run` with an embedded Core, reads the "
        "stored events back and compares them field by field. Prints per kind: expected, found, matched and "
        "each miss. Exits 1 if a run fails or a truth kind agrees below 100 %.",
    )
    fidelity.add_argument("dirs", nargs="+", metavar="DIR", help="directory of captures and their baselines")
    fidelity.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    fidelity.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="probe runs at a time (default: CPUs)")
    fidelity.add_argument("--only", action="append", metavar="TEXT", help="only captures whose name contains TEXT")
    fidelity.add_argument("--no-misses", action="store_true", help="print the table without the list of misses")
    fidelity.set_defaults(func=cmd_fidelity)
