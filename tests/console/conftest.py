"""Fixtures for the console tests: a synthetic capture long enough to talk to a running probe."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.console.traffic import write_capture

#: packets in the long capture: at the ~15k packets/s this machine replays it, about 20 s of work
LONG_CAPTURE_PACKETS = 300_000


@pytest.fixture(scope="session")
def long_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "long.pcap"
    write_capture(str(path), LONG_CAPTURE_PACKETS)
    return path


@pytest.fixture(scope="module")
def open_dir() -> Iterator[Path]:
    """A fresh directory under /tmp that other users may traverse (pytest's own are 0700),
    so that a test can show the socket itself, not a directory, keeps them out."""
    path = Path(tempfile.mkdtemp(prefix="probe-console-", dir="/tmp"))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
