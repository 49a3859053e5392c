"""The real processes a scenario runs: a Core (``probe core serve``) and a probe (``probe run``).

Each is started as an operator would start it, in a process group of its own (so a
kill of the group reaches the probe's dissection processes too, and nothing else), with
its log in the scenario's work directory. Their state is read the way an operator reads
it: the probe's Prometheus endpoint (``--metrics-port 0``, port from ``health.json``),
its ``health.json``, ``probe health``; the Core's store and ``core stats --json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import lmdb
from prometheus_client.parser import text_string_to_metric_families

from actors.resources import child_pids
from storage.core_store import ProbeAccount

REPO = Path(__file__).resolve().parent.parent


def probe_command(*args: str) -> list[str]:
    """``python -m probe ARGS`` with this interpreter."""
    return [sys.executable, "-m", "probe", *args]


_RUN_FLAGS: set[str] | None = None


def run_flags() -> set[str]:
    """Option strings ``probe run`` accepts in this checkout (some arrive with later branches)."""
    global _RUN_FLAGS
    if _RUN_FLAGS is None:
        from probe.cli import build_parser

        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == "command")
        run = sub.choices["run"]  # type: ignore[attr-defined]
        _RUN_FLAGS = {flag for action in run._actions for flag in action.option_strings}
    return _RUN_FLAGS


def core_flags() -> set[str]:
    """Option strings ``probe core serve`` accepts in this checkout."""
    from probe.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    core = sub.choices["core"]  # type: ignore[attr-defined]
    core_sub = next(a for a in core._actions if a.dest == "core_command")
    out = {flag for action in core_sub.choices["serve"]._actions for flag in action.option_strings}
    out |= {f"control:{name}" for name in core_sub.choices if name == "control"}
    return out


class Metrics:
    """One scrape of the probe's /metrics: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.append((sample.name, dict(sample.labels), float(sample.value)))

    def get(self, name: str, default: float = 0.0, **labels: str) -> float:
        """The value of ``name`` with exactly these labels among its own (a subset match)."""
        for sample_name, sample_labels, value in self.samples:
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return default

    def total(self, name: str) -> float:
        """Sum over every label set of ``name``."""
        return sum(v for n, _, v in self.samples if n == name)

    def by(self, name: str, label: str) -> dict[str, float]:
        """``{label value: value}`` for ``name``."""
        return {labels.get(label, ""): v for n, labels, v in self.samples if n == name}

    def active(self, name: str, label: str) -> list[str]:
        """Label values of ``name`` whose gauge is 1 (current uplink state, active alerts)."""
        return sorted(labels.get(label, "") for n, labels, v in self.samples if n == name and v >= 1)


class CoreReader:
    """Reads a probe's account from the Core's LMDB store while the Core runs (read-only)."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.env: lmdb.Environment | None = None
        self.db: Any = None

    def account(self, probe_id: str) -> ProbeAccount | None:
        try:
            if self.db is None:
                if not (self.store_dir / "data.mdb").exists():
                    return None
                self.env = self.env or lmdb.open(str(self.store_dir), readonly=True, max_dbs=4, subdir=True, lock=True, map_size=8 << 30)
                self.db = self.env.open_db(b"probes", create=False)
            assert self.env is not None
            with self.env.begin() as txn:
                raw = txn.get(probe_id.encode(), db=self.db)
        except lmdb.NotFoundError:
            return None  # the Core has not stored a probe's account yet
        except lmdb.MapResizedError:
            self.close()  # the Core's map grew past ours: map it again at the next read
            return None
        return ProbeAccount.from_bytes(raw) if raw else None

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env = self.db = None


def _terminate(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group we started, then SIGKILL to it after ``grace`` s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (dissection processes)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


class CoreProcess:
    """``python -m probe core serve`` on ``listen``, optionally inside a network namespace."""

    def __init__(self, data_dir: Path, log_path: Path, *, listen: str = "127.0.0.1:0", netns: str | None = None,
                 extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.listen = listen
        self.netns = netns
        self.extra = list(extra or [])
        self.proc: subprocess.Popen | None = None
        self.address = ""
        self.reader = CoreReader(data_dir / "store")
        self.starts = 0

    def start(self, timeout: float = 20.0) -> str:
        """Start the Core; return HOST:PORT once it listens."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready = self.data_dir / "ready"
        ready.unlink(missing_ok=True)
        argv = probe_command("core", "serve", "--listen", self.listen, "--data-dir", str(self.data_dir),
                             "--ready-file", str(ready), "--log-level", "info", *self.extra)
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Core exited with code {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Core did not listen within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.02)
        self.address = ready.read_text().strip()
        return self.address

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def account(self, probe_id: str) -> ProbeAccount | None:
        """The probe's account as the Core's store holds it now."""
        return self.reader.account(probe_id)

    def stored(self, probe_id: str) -> int:
        """Events of ``probe_id`` the Core has stored so far."""
        account = self.account(probe_id)
        return account.stored if account else 0

    def live_stats(self) -> dict[str, Any]:
        """DATA/stats.json of a running Core (queue, backpressure, controls), if this Core writes one."""
        try:
            with open(self.data_dir / "stats.json") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def counters(self) -> dict[str, int]:
        """DATA/counters.json: connections and refusals by reason."""
        try:
            with open(self.data_dir / "counters.json") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def counted(self, *names: str, timeout: float = 5.0) -> dict[str, int]:
        """DATA/counters.json once any of ``names`` is counted (or after ``timeout`` s, as it is then).

        The Core writes the file on its housekeeping tick, so a refusal the probe has
        already seen may reach the file a moment later.
        """
        deadline = time.monotonic() + timeout
        while True:
            counters = self.counters()
            if any(counters.get(n, 0) for n in names) or time.monotonic() >= deadline:
                return counters
            time.sleep(0.05)

    def stats(self) -> list[dict[str, Any]]:
        """``python -m probe core stats --json``: the Core's own accounts, as an operator reads them."""
        done = subprocess.run(probe_command("core", "stats", "--data-dir", str(self.data_dir), "--json"),
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"core stats failed: {done.stderr.strip()}")
        out = json.loads(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "[]")
        return out if isinstance(out, list) else out.get("probes", [])

    def export(self, kind: str | None = None) -> list[dict[str, Any]]:
        """``python -m probe core export``: every stored event as JSON."""
        argv = probe_command("core", "export", "--data-dir", str(self.data_dir)) + (["--kind", kind] if kind else [])
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"core export failed: {done.stderr.strip()}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def control(self, *args: str) -> None:
        """``python -m probe core control ARGS``: overload switches at runtime."""
        done = subprocess.run(probe_command("core", "control", "--data-dir", str(self.data_dir), *args),
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"core control {' '.join(args)} failed: {done.stderr.strip()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        self.reader.close()
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc, grace)


class ProbeProcess:
    """``python -m probe run --config CFG --json-summary ARGS`` with its metrics on a free port."""

    def __init__(self, data_dir: Path, config_path: Path, log_dir: Path, args: list[str]) -> None:
        self.data_dir = data_dir
        self.config_path = config_path
        self.log_dir = log_dir
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.summaries: list[dict[str, Any]] = []
        self.exit_codes: list[int] = []
        self._stdout: Path | None = None
        self.started_at = 0.0

    @property
    def health_file(self) -> Path:
        return self.data_dir / "health.json"

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> None:
        """Start the probe and wait until it serves its metrics (its health file names the port)."""
        assert not self.running, "the probe is already running"
        self.starts += 1
        self._stdout = self.log_dir / f"probe-{self.starts}.out"
        quiet = ["--no-progress"] if "--no-progress" in run_flags() else []
        argv = probe_command("run", "--config", str(self.config_path), "--metrics-port", "0", "--json-summary", *quiet, *self.args)
        with open(self._stdout, "wb") as out, open(self.log_dir / "probe.log", "ab") as err:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        self.started_at = time.monotonic()
        self.port = None
        if wait_ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.health()
            if doc and doc.get("pid") == self.pid and doc.get("metrics_port"):
                self.port = int(doc["metrics_port"])
                return
            if not self.running:
                raise RuntimeError(f"the probe exited with code {self.proc.returncode if self.proc else '?'} before it was ready: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the probe was not ready within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        try:
            with open(self.health_file) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def health_check(self) -> tuple[int, str]:
        """``python -m probe health --data-dir D``: (exit code, its line)."""
        done = subprocess.run(probe_command("health", "--data-dir", str(self.data_dir)), cwd=REPO, capture_output=True, text=True, timeout=30)
        return done.returncode, (done.stdout + done.stderr).strip()

    def console(self, *words: str) -> tuple[int, str]:
        """``python -m probe console --data-dir D WORDS``: (exit code, what it printed)."""
        done = subprocess.run(probe_command("console", "--data-dir", str(self.data_dir), *words), cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        return done.returncode, (done.stdout + done.stderr).strip()

    def metrics(self) -> Metrics | None:
        """Scrape /metrics; None when the probe is not serving (down, or not ready)."""
        if self.port is None or not self.running:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as resp:
                return Metrics(resp.read().decode())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def metric(self, name: str, **labels: str) -> float | None:
        """One value of the probe's /metrics now; None when it is not serving or has no such series."""
        m = self.metrics()
        return m.get(name, **labels) if m is not None else None

    def dissection_pids(self) -> list[int]:
        """The probe's dissection processes (children running probe.worker)."""
        if not self.running:
            return []
        return child_pids(b"probe.worker", self.pid)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        """SIGKILL the delivery process only (its dissection processes notice their closed pipe)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._finished()

    def wait(self, timeout: float) -> int | None:
        """Wait for the probe to exit on its own; its exit code, or None if still running."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._finished()
        return self.proc.returncode

    def stop(self, grace: float = 60.0) -> dict[str, Any] | None:
        """SIGTERM (a graceful stop) and the run summary it prints."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _terminate(self.proc, 1.0)
        self._finished()
        return self.summaries[-1] if self.summaries else None

    def _finished(self) -> None:
        if self.proc is None or self.proc.returncode is None:
            return
        if len(self.exit_codes) >= self.starts:
            return
        self.exit_codes.append(self.proc.returncode)
        # the dissection processes end when their pipe closes; reap any that linger
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        text = self._stdout.read_text(errors="replace").strip() if self._stdout else ""
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                try:
                    self.summaries.append(json.loads(line))
                except ValueError:
                    continue
                break

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.summaries[-1] if self.summaries else None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.log_dir / "probe.log").read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The probe's JSON log lines whose ``event`` is ``event`` (all runs)."""
        out = []
        try:
            with open(self.log_dir / "probe.log", errors="replace") as fh:
                for line in fh:
                    if f'"event": "{event}"' in line:
                        try:
                            out.append(json.loads(line))
                        except ValueError:
                            continue
        except OSError:
            pass
        return out

    def kill_group(self) -> None:
        """Cleanup: the whole process group we started, whatever state it is in."""
        if self.proc is not None:
            _terminate(self.proc, 5.0)
            self._finished()


def wait_until(predicate: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` s pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)
