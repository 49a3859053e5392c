"""``python -m probe scenario NAME|all [--quick] [--out DIR]``: replay failure cases for real.

Each scenario (``scenarios/NAME.py``) starts a real Core and a real probe, injects a
fault, restores it (or performs the documented manual step), and checks the documented
behaviour with figures. The report is printed expectation by expectation and written to
``DIR/NAME.json`` with a timeline chart ``DIR/NAME.svg``. Exit code 1 when any
expectation fails. docs/failure-modes.md says what each scenario proves.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from probe.cli import EXIT_FAILED, EXIT_OK, UsageError


def cmd_scenario(args: argparse.Namespace) -> int:
    from scenarios.framework import SCENARIOS, resolve, run_scenario

    if args.list:
        import importlib

        for name in SCENARIOS:
            print(f"{name:18} {importlib.import_module(f'scenarios.{name}').TITLE}")
        return EXIT_OK
    if not args.names:
        raise UsageError("name a scenario, or all (--list shows them)")
    try:
        names = resolve(args.names)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if os.geteuid() != 0:
        raise UsageError("scenarios need root: they create network namespaces, veth pairs and mounts")
    out = Path(args.out).resolve()
    failed = []
    for name in names:
        report = run_scenario(name, quick=args.quick, out_dir=out, keep=args.keep)
        if not report["passed"]:
            failed.append(name)
    if len(names) > 1:
        print(f"{len(names) - len(failed)}/{len(names)} scenarios passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    scenario = sub.add_parser("scenario", help="replay a failure case for real and check the documented behaviour")
    scenario.add_argument("names", nargs="*", metavar="NAME", help="scenario name(s), or all")
    scenario.add_argument("--quick", action="store_true", help="short runs (seconds each), as CI runs them")
    scenario.add_argument("--out", default="scenario-reports", help="directory for NAME.json and NAME.svg (default ./scenario-reports)")
    scenario.add_argument("--keep", action="store_true", help="keep each scenario's work directory (spools, Core stores)")
    scenario.add_argument("--list", action="store_true", help="list the scenarios")
    scenario.set_defaults(func=cmd_scenario)
