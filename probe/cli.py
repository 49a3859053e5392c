"""Command line: ``python -m probe COMMAND ...``; one module per command in probe/commands/.

Every command prints a clear one-line message and exits non-zero on bad input; no
traceback reaches the user (exit codes: 0 done, 1 failed, 2 bad usage or configuration,
3 finished with events still buffered for a later delivery).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
import typing
from typing import Any

from probe.config import ConfigError, flag_settings, load_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3

#: command modules under probe.commands, in the order ``--help`` lists them; each has
#: ``register(subparsers)`` adding its parser with ``set_defaults(func=...)``
COMMANDS = ["run", "interfaces", "core", "console", "health", "pki", "config_docs", "events_docs", "fidelity"]


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


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` plus one flag per setting that declares one (probe/config.py)."""
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    for flag, key, annotation in flag_settings():
        parser.add_argument(flag, dest="cfg:" + key, metavar="VALUE", help=f"overrides {key}")


def load_from_args(args: argparse.Namespace) -> Any:
    """The configuration of the TOML file in ``--config`` with the flags applied."""
    annotations = {key: annotation for _, key, annotation in flag_settings()}
    overrides = {}
    for name, value in vars(args).items():
        if name.startswith("cfg:") and value is not None:
            key = name[4:]
            overrides[key] = _flag_value(key, annotations[key], value)
    return load_config(getattr(args, "config", None), overrides)


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m probe", description="Network DPI sensor that delivers signed events to a Core.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"probe.commands.{name}").register(sub)
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
