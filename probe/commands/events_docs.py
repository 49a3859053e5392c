"""``python -m probe events-docs``: print docs/events.md from the event schema."""

from __future__ import annotations

import argparse

from probe.cli import EXIT_OK


def cmd_events_docs(args: argparse.Namespace) -> int:
    from probe.event_docs import events_markdown

    print(events_markdown(), end="")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    docs = sub.add_parser("events-docs", help="print the event reference (docs/events.md)")
    docs.set_defaults(func=cmd_events_docs)
