"""Shared fixtures: where ../shared is, and how tests that need it skip without it.

Tests that read ../shared skip with a clear reason when it is absent (a user's own
clone). CI sets PROBE_REQUIRE_SHARED=1 so that such a skip becomes a failure there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PROBE_SHARED_DIR", REPO.parent / "shared"))
PCAPS = SHARED / "pcaps"
CORPUS = SHARED / "corpus"


def _require_shared() -> None:
    if SHARED.is_dir():
        return
    message = f"{SHARED} is absent: the shared captures and truth files are not beside this clone"
    if os.environ.get("PROBE_REQUIRE_SHARED") == "1":
        pytest.fail(message + " (PROBE_REQUIRE_SHARED=1: required in CI)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pcaps_dir() -> Path:
    """../shared/pcaps: real captures with tshark truth."""
    _require_shared()
    return PCAPS


@pytest.fixture
def corpus_dir() -> Path:
    """../shared/corpus: public captures with other tools' expected output."""
    _require_shared()
    return CORPUS


def shared_pcaps() -> list[Path]:
    """Every capture in ../shared/pcaps (empty when absent), for parametrisation."""
    return sorted(PCAPS.glob("*.pcap")) if PCAPS.is_dir() else []


def corpus_captures() -> list[Path]:
    """Every capture in ../shared/corpus (empty when absent), for parametrisation."""
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng"))


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PROBE_REQUIRE_SHARED") == "1" and not SHARED.is_dir():
        raise pytest.UsageError(f"PROBE_REQUIRE_SHARED=1 but {SHARED} is absent: the shared captures are required here")
