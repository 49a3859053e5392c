"""``python -m probe config-docs``: print docs/configuration.md from the schema."""

from __future__ import annotations

import argparse

from probe.cli import EXIT_OK
from probe.config import reference_markdown


def cmd_config_docs(args: argparse.Namespace) -> int:
    print(reference_markdown(), end="")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    docs = sub.add_parser("config-docs", help="print the configuration reference (docs/configuration.md)")
    docs.set_defaults(func=cmd_config_docs)
