"""Running the real probe (`python -m probe run`) in a subprocess, and reading a Core's store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

from protocols.events.envelope import decode_canonical, split_signed
from storage.core_store import CoreStore

REPO = Path(__file__).resolve().parents[2]


@attrs.frozen
class RunResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])


def run_probe(*args: str, timeout: float = 120, env: dict | None = None) -> RunResult:
    """``python -m probe run ARGS --json-summary`` from the repository root."""
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "run", *args, "--json-summary"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


def write_config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def core_events(core_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The events a Core stored, as exported JSON objects (envelope + Zeek fields)."""
    store = CoreStore(os.path.join(core_dir, "store"))
    try:
        out = []
        for _, _, record in store.events():
            event = decode_canonical(split_signed(record)[1]).as_json_object()
            if kind is None or event["kind"] == kind:
                out.append(event)
        return out
    finally:
        store.close()


def core_accounts(core_dir: str | Path) -> list[Any]:
    store = CoreStore(os.path.join(core_dir, "store"))
    try:
        return store.accounts()
    finally:
        store.close()
