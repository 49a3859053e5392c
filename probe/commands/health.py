"""``python -m probe health``: exit 0 if the probe using the data directory is healthy.

For service managers and monitoring: prints one line and exits 0 (running; alerts may
be raised) or 1 (not running, not responding, failed, or transmission halted). With
``--strict`` a raised alert is unhealthy too; ``--wait S`` waits up to S seconds for the
probe to become healthy (for ``ExecStartPost=``).
"""

from __future__ import annotations

import argparse
import json
import time

from probe.cli import EXIT_FAILED, EXIT_OK
from probe.config import load_config


def cmd_health(args: argparse.Namespace) -> int:
    from probe.health import check_health

    overrides = {"probe.data_dir": args.data_dir} if args.data_dir else {}
    data_dir = load_config(args.config, overrides).probe.data_dir
    deadline = time.monotonic() + args.wait
    while True:
        healthy, reason, doc = check_health(data_dir)
        if healthy and args.strict and doc and doc.get("alerts"):
            healthy, reason = False, f"alerts raised: {reason}"
        if healthy or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if args.json:
        print(json.dumps({"healthy": healthy, "reason": reason, "health": doc}, sort_keys=True))
    else:
        print(reason)
    return EXIT_OK if healthy else EXIT_FAILED


def register(sub: argparse._SubParsersAction) -> None:
    health = sub.add_parser("health", help="exit 0 if the running probe is healthy, 1 if not (for service managers)")
    health.add_argument("--config", metavar="FILE", help="TOML configuration file (for probe.data_dir)")
    health.add_argument("--data-dir", help="the probe's data directory (overrides the config)")
    health.add_argument("--strict", action="store_true", help="a raised alert counts as unhealthy")
    health.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait up to this long for the probe to become healthy")
    health.add_argument("--json", action="store_true", help="print the verdict and the health document as JSON")
    health.set_defaults(func=cmd_health)
