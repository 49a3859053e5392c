"""The generated docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

from probe.config import reference_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_reference_matches_the_schema():
    assert (DOCS / "configuration.md").read_text() == reference_markdown(), (
        "docs/configuration.md is stale: run `python -m probe config-docs > docs/configuration.md`"
    )


def test_event_reference_lists_every_kind_and_field():
    from probe.event_docs import events_markdown

    assert (DOCS / "events.md").read_text() == events_markdown(), (
        "docs/events.md is stale: run `python -m probe events-docs > docs/events.md`"
    )
