"""The scenario framework: real processes, a sampled timeline, expectations with figures.

A scenario is a module in ``scenarios/`` with ``TITLE``, ``CLAIM`` (what the failure-mode
documentation promises) and ``run(rig)``. The :class:`Rig` it gets starts a real Core
and a real probe, registers every namespace, link, mount, process and file it creates
for cleanup (done in reverse order, also when the scenario fails), samples both every
``interval`` seconds into a timeline, and collects expectations: each a name, pass or
fail, and the figures that decided it. At the end it writes ``NAME.json`` (the report
with the timeline) and ``NAME.svg`` (the chart), and prints the report expectation by
expectation.

    python -m probe scenario NAME|all [--quick] [--out DIR]
    python -m scenarios.NAME [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from scenarios.chart import timeline_svg
from scenarios.processes import REPO, CoreProcess, Metrics, ProbeProcess, probe_command, wait_until

#: every scenario, in the order ``all`` runs them
SCENARIOS = [
    "probe_crash",
    "key_failure",
    "identity_failure",
    "signature_failure",
    "memory_exhaustion",
    "core_partition",
    "core_overload",
    "buffer_exhaustion",
    "disk_full",
]

PROBE_ID = "scenario-probe"


class ScenarioError(Exception):
    """The scenario could not go on (a step it depends on failed); reported as a failure."""


def toml_text(config: dict[str, dict[str, Any]]) -> str:
    """A TOML document for ``{section: {key: value}}`` (scalars and lists of strings)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (int, float)):
                text = repr(value)
            elif isinstance(value, str):
                text = json.dumps(value)
            elif isinstance(value, list):
                text = "[" + ", ".join(json.dumps(v) for v in value) + "]"
            else:
                raise TypeError(f"{section}.{key}: cannot write {type(value).__name__} as TOML")
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


class Rig:
    """One scenario run: its processes, its timeline, its expectations, its cleanup."""

    def __init__(self, name: str, *, quick: bool, out_dir: Path, keep: bool = False, interval: float | None = None) -> None:
        self.name = name
        self.quick = quick
        self.out_dir = out_dir
        self.keep = keep
        self.interval = interval or (0.2 if quick else 0.5)
        self.work = Path(tempfile.mkdtemp(prefix=f"probe-scenario-{name}-"))
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.samples: list[dict[str, Any]] = []
        self.marks: list[dict[str, Any]] = []
        self.expectations: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}
        self.cleanup_log: list[str] = []
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self.core: CoreProcess | None = None
        self.probe: ProbeProcess | None = None
        self._prev: dict[str, Any] = {}
        self.extra_sample: Callable[[], dict[str, Any]] | None = None
        self.defer(f"remove work directory {self.work}", self._remove_work)

    # --- cleanup ----------------------------------------------------------------------

    def defer(self, what: str, undo: Callable[[], None]) -> None:
        """Run ``undo`` at the end (reverse order of registration), whatever happens."""
        self._undo.append((what, undo))

    def cleanup(self) -> None:
        self.stop_sampling()
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
                self.cleanup_log.append(f"ok: {what}")
            except Exception as exc:  # noqa: BLE001 - cleanup goes on; the failure is reported, not hidden
                self.cleanup_log.append(f"FAILED: {what}: {type(exc).__name__}: {exc}")

    def _remove_work(self) -> None:
        dest = self.out_dir / f"{self.name}-logs"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(self.logs, dest)
        if not self.keep:
            shutil.rmtree(self.work)

    # --- time and marks ---------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the scenario started."""
        return time.monotonic() - self.t0

    def mark(self, label: str, kind: str = "step") -> float:
        """A named instant on the timeline (kind: fault, restore, detected, recovered, step)."""
        t = self.now()
        with self._lock:
            self.marks.append({"t": round(t, 3), "label": label, "kind": kind})
        print(f"  [{t:7.2f} s] {label}", flush=True)
        return t

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float, since: float | None = None,
                 kind: str = "detected", poll: float = 0.05) -> float | None:
        """Poll until ``predicate`` holds; mark it and return seconds since ``since`` (None: timed out)."""
        since = self.now() if since is None else since
        if wait_until(predicate, timeout, poll) is None:
            self.mark(f"{what}: not within {timeout:g} s", "step")
            return None
        t = self.mark(what, kind)
        return round(t - since, 3)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    # --- expectations -----------------------------------------------------------------

    def expect(self, name: str, passed: bool, detail: str = "", **figures: Any) -> bool:
        """One expectation: its outcome and the figures behind it."""
        self.expectations.append({"name": name, "passed": bool(passed), "detail": detail, "figures": figures})
        return bool(passed)

    def expect_time(self, name: str, seconds: float | None, limit: float) -> bool:
        """A duration (time to detect, to recover) measured and within ``limit`` seconds."""
        shown = "never" if seconds is None else f"{seconds:.2f} s"
        return self.expect(name, seconds is not None and seconds <= limit, f"{shown} (limit {limit:g} s)", seconds=seconds, limit=limit)

    # --- processes --------------------------------------------------------------------

    def start_core(self, *, listen: str = "127.0.0.1:0", netns: str | None = None, extra: list[str] | None = None,
                   enroll_key: str | None = None, name: str = "core") -> CoreProcess:
        core = CoreProcess(self.work / name, self.logs / f"{name}.log", listen=listen, netns=netns, extra=extra)
        self.defer(f"stop the Core process ({name})", core.stop)
        if enroll_key is not None:
            self.enroll(core, enroll_key)
        core.start()
        self.core = core
        return core

    def enroll(self, core: CoreProcess, key_path: str) -> None:
        """Pin the probe's key at the Core, as ``core enroll`` does."""
        from probe.identity import load_key, public_key_hex

        key_hex = public_key_hex(load_key(key_path))
        done = subprocess.run(probe_command("core", "enroll", "--data-dir", str(core.data_dir), "--probe-id", PROBE_ID, "--key", key_hex),
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise ScenarioError(f"core enroll failed: {done.stderr.strip()}")

    def probe_key(self) -> str:
        """Create the probe's signing key where the probe looks for it (pinned mode)."""
        from probe.identity import create_key

        path = self.work / "probe" / "identity" / "probe.key"
        if not path.exists():
            create_key(str(path))
        return str(path)

    def write_config(self, core_url: str, sections: dict[str, dict[str, Any]] | None = None) -> Path:
        """The probe's TOML: quick-reacting defaults for a scenario, then ``sections`` over them."""
        config: dict[str, dict[str, Any]] = {
            "probe": {"id": PROBE_ID, "data_dir": str(self.work / "probe")},
            "uplink": {"core_url": core_url, "backoff_initial": 0.1, "backoff_max": 1.0, "connect_timeout": 2.0,
                       "ack_timeout": 5.0, "drain_timeout": 120.0},
            "alerts": {"evaluate_interval": 0.25},
            "resources": {"check_interval": 0.25},
            "logging": {"level": "info"},
        }
        for section, values in (sections or {}).items():
            config.setdefault(section, {}).update(values)
        path = self.work / "probe.toml"
        path.write_text(toml_text(config))
        return path

    def dns_replay(self, seconds: float, rate: float, tag: str, per_flow: int = 10) -> tuple[list[str], int]:
        """Probe arguments replaying ``seconds`` of DNS traffic at ``rate`` transactions/s in real time.

        Returns the arguments and the number of transactions (each a ``dns`` event; every
        ``per_flow`` of them one ``conn`` event).
        """
        from scenarios.traffic import write_dns_pcap

        transactions = int(seconds * rate) // per_flow * per_flow
        pcap = write_dns_pcap(self.work / f"{tag}.pcap", transactions, tag=tag, per_flow=per_flow, rate=rate)
        self.figures["traffic"] = {"transactions": transactions, "rate": rate, "seconds": seconds, "per_flow": per_flow}
        return ["--pcap", str(pcap), "--pace", "realtime"], transactions

    def make_probe(self, config: Path, args: list[str]) -> ProbeProcess:
        probe = ProbeProcess(self.work / "probe", config, self.logs, args)
        self.defer("stop the probe's process group", probe.kill_group)
        self.probe = probe
        return probe

    # --- sampling ---------------------------------------------------------------------

    def start_sampling(self) -> None:
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample_loop, name="scenario-sampler", daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> None:
        if self._sampler is not None:
            self._sampling.clear()
            self._sampler.join(timeout=10)
            self._sampler = None

    def _sample_loop(self) -> None:
        while self._sampling.is_set():
            started = time.monotonic()
            try:
                sample = self.sample()
            except (OSError, ValueError, KeyError) as exc:  # a reading failed: the point says so, sampling goes on
                sample = {"t": round(self.now(), 3), "state": "down", "error": f"{type(exc).__name__}: {exc}"}
            with self._lock:
                self.samples.append(sample)
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def sample(self) -> dict[str, Any]:
        """One point of the timeline: the probe's metrics and health, the Core's account."""
        t = self.now()
        s: dict[str, Any] = {"t": round(t, 3)}
        probe, core = self.probe, self.core
        m: Metrics | None = probe.metrics() if probe is not None else None
        if m is None:
            s["state"] = "down" if probe is None or not probe.running else "starting"
        else:
            states = m.active("probe_uplink_state", "state")
            s["state"] = states[0] if states else "starting"
            s["created"] = m.total("probe_events_created_total")
            s["delivered"] = m.total("probe_events_delivered_total")
            s["dropped_by"] = {k: v for k, v in m.by("probe_events_dropped_total", "reason").items() if v}
            s["dropped"] = sum(s["dropped_by"].values())
            s["pending"] = m.get("probe_events_pending")
            s["buffer_disk"] = m.get("probe_buffer_utilization", tier="disk")
            s["buffer_memory"] = m.get("probe_buffer_utilization", tier="memory")
            s["memory_budget"] = m.get("probe_resource_utilization", resource="memory")
            s["memory_mb_delivery"] = round(m.get("probe_resident_memory_bytes", process="delivery", kind="anon") / 2**20, 1)
            s["memory_mb_dissection"] = round(m.get("probe_resident_memory_bytes", process="dissection", kind="anon") / 2**20, 1)
            s["packets"] = m.get("probe_packets_captured_total")
            s["signature_failures"] = m.get("probe_signature_failures_total")
            s["connection_failures"] = m.get("probe_uplink_connection_failures_total")
            s["backpressure"] = m.get("probe_uplink_backpressure")
            s["alerts"] = m.active("probe_alerts_active", "alert")
        health = probe.health() if probe is not None and probe.running else None
        if health:
            s["health"] = health.get("status")
        if core is not None:
            account = core.account(PROBE_ID)
            if account is not None:
                s["core_stored"] = account.stored
                s["core_acked"] = account.acked
                s["core_reported"] = sum(account.reported.values())
        if self.extra_sample is not None:
            s.update(self.extra_sample())
        self._rates(s)
        return s

    def _rates(self, s: dict[str, Any]) -> None:
        """Per-second rates between this sample and the previous one (counters restart with the probe)."""
        prev = self._prev
        dt = s["t"] - prev.get("t", s["t"])
        for key, out in (("created", "rate_created"), ("dropped", "rate_dropped"), ("core_stored", "rate_delivered")):
            if s.get(key) is None:
                continue
            if dt > 0 and prev.get(key) is not None:
                delta = s[key] - prev[key]
                s[out] = round((delta if delta >= 0 else s[key]) / dt, 1)
            prev[key] = s[key]
        prev["t"] = s["t"]

    def latest(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.samples[-1]) if self.samples else {}

    def stop_probe(self) -> dict[str, Any] | None:
        """SIGTERM, as a service manager stops it: the probe flushes open flows and drains; its summary."""
        assert self.probe is not None
        self.mark("stop the probe (SIGTERM)")
        summary = self.probe.stop()
        code = self.probe.exit_codes[-1] if self.probe.exit_codes else None
        self.expect("the probe stops cleanly when asked, with nothing left pending",
                    code == 0 and summary is not None and summary["pending"] == 0,
                    f"exit {code}, outcome {summary['outcome'] if summary else None}, pending {summary['pending'] if summary else None}")
        return summary

    def check_transactions(self, core: CoreProcess, tag: str, per_flow: int = 10, lost: int = 0) -> int:
        """The DNS transactions at the Core are t0..tN-1 of the replay, each once, but for ``lost`` dropped ones.

        The replay sends them in order, so what the probe saw up to its last one is a
        prefix; each stored once is the exactly-once promise, missing ones must be
        explained (``lost``: events the probe counted dropped).
        """
        from scenarios.traffic import query_name

        dns = [e for e in core.export("dns")]
        names = [e["query"] for e in dns if e["query"].endswith(f".{tag}.scenario.example")]
        distinct = set(names)
        highest = max((int(n.split(".", 1)[0][1:]) for n in distinct), default=-1)
        missing = sum(1 for i in range(highest + 1) if query_name(i, tag) not in distinct)
        self.expect("every DNS transaction seen is stored at the Core exactly once" + (" (but those dropped)" if lost else ""),
                    len(names) == len(distinct) and missing <= lost,
                    f"{len(names)} stored, {len(distinct)} distinct, transactions t0..t{highest}: {missing} missing"
                    + (f" (up to {lost} dropped may be among them)" if lost else ""),
                    stored=len(names), distinct=len(distinct), missing=missing)
        return len(distinct)

    def core_account(self, core: CoreProcess) -> dict[str, Any] | None:
        """The probe's account from ``core stats --json`` (the Core's own count)."""
        accounts = [a for a in core.stats() if a["probe_id"] == PROBE_ID]
        return accounts[0] if accounts else None

    def summary_figures(self, summary: dict[str, Any] | None, **more: Any) -> None:
        acc = summary["accounting"] if summary else {}
        self.figures.update({"created": acc.get("created"), "delivered": acc.get("delivered"), "dropped": acc.get("dropped"),
                             "pending": acc.get("pending"), **more})

    # --- the Core's count -------------------------------------------------------------

    def check_accounting(self, summary: dict[str, Any] | None, core_account: dict[str, Any] | None, *,
                         seq_drop_reasons: tuple[str, ...] = ("buffer_full", "memory_budget", "map_full", "disk_full", "disk_low", "shutdown")) -> None:
        """The accounting promise against the Core's own count.

        The probe's account (in its spool, over every run) must balance: created =
        delivered + dropped + pending. What it counts delivered must be what the Core
        stored for it, and the drops that had sequence numbers must be what the Core was
        told in drop reports (reasons other than ``unassigned``, which are numbers no event
        ever had).
        """
        if summary is None or core_account is None:
            self.expect("accounting: created = delivered + dropped + pending, against the Core", False,
                        "no run summary" if summary is None else "the Core holds no account for the probe")
            return
        acc = summary["accounting"]
        self.figures["accounting"] = acc
        self.figures["core"] = {k: core_account.get(k) for k in ("stored", "received", "duplicates", "rejected", "reported", "gaps", "acked")}
        self.expect(
            "accounting balances: created = delivered + dropped + pending",
            acc["balanced"],
            f"created {acc['created']} = delivered {acc['delivered']} + dropped {acc['dropped_total']} {acc['dropped']} + pending {acc['pending']}",
            created=acc["created"], delivered=acc["delivered"], dropped=acc["dropped"], pending=acc["pending"],
        )
        self.expect(
            "the Core stored exactly what the probe counts delivered",
            core_account["stored"] == acc["delivered"],
            f"Core stored {core_account['stored']}, probe delivered {acc['delivered']}",
            core_stored=core_account["stored"], probe_delivered=acc["delivered"],
        )
        reported = {k: v for k, v in core_account.get("reported", {}).items() if k != "unassigned"}
        seq_drops = {k: v for k, v in acc["dropped"].items() if k in seq_drop_reasons}
        self.expect(
            "every dropped event with a sequence number was reported to the Core",
            sum(reported.values()) == sum(seq_drops.values()),
            f"Core told of {reported or 0}, probe dropped {seq_drops or 0}",
            core_reported=reported, probe_dropped=seq_drops,
        )
        self.expect("the Core saw no unexplained gap", core_account.get("gaps", 0) == 0, f"gaps {core_account.get('gaps', 0)}")

    # --- report -----------------------------------------------------------------------

    @property
    def passed(self) -> bool:
        return bool(self.expectations) and all(e["passed"] for e in self.expectations)

    def report(self, module: Any, error: str | None) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "title": getattr(module, "TITLE", self.name),
            "claim": getattr(module, "CLAIM", ""),
            "mode": "quick" if self.quick else "full",
            "started": self.wall0,
            "duration": round(self.now(), 3),
            "passed": self.passed and error is None,
            "error": error,
            "expectations": self.expectations,
            "figures": self.figures,
            "marks": self.marks,
            "cleanup": self.cleanup_log,
            "timeline": self.samples,
        }

    def write(self, report: dict[str, Any]) -> tuple[Path, Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        json_path = self.out_dir / f"{self.name}.json"
        json_path.write_text(json.dumps(report, indent=1, sort_keys=False))
        svg_path = self.out_dir / f"{self.name}.svg"
        title = f"{self.name} ({report['mode']}): {'PASS' if report['passed'] else 'FAIL'} - {report['title']}"
        svg_path.write_text(timeline_svg(title, self.samples, self.marks, report["duration"]))
        return json_path, svg_path


def print_report(report: dict[str, Any], paths: tuple[Path, Path] | None = None, out: Any = None) -> None:
    """The report, expectation by expectation, with figures."""
    out = out or sys.stdout
    verdict = "PASS" if report["passed"] else "FAIL"
    n_ok = sum(1 for e in report["expectations"] if e["passed"])
    print(f"{verdict}  scenario {report['scenario']} ({report['mode']}, {report['duration']:.1f} s): "
          f"{n_ok}/{len(report['expectations'])} expectations hold", file=out)
    if report["claim"]:
        print(f"      claim: {report['claim']}", file=out)
    for e in report["expectations"]:
        print(f"  {'pass' if e['passed'] else 'FAIL'}  {e['name']}" + (f": {e['detail']}" if e["detail"] else ""), file=out)
    if report["error"]:
        print(f"  FAIL  the scenario stopped early: {report['error']}", file=out)
    figures = report["figures"]
    keys = ("created", "delivered", "dropped", "pending", "time_to_detect", "time_to_recover")
    shown = {k: figures[k] for k in keys if k in figures}
    if shown:
        print("  figures: " + ", ".join(f"{k} {v}" for k, v in shown.items()), file=out)
    failed_cleanup = [c for c in report["cleanup"] if c.startswith("FAILED")]
    for c in failed_cleanup:
        print(f"  cleanup {c}", file=out)
    if paths:
        print(f"  report {paths[0]}  chart {paths[1]}", file=out)
    out.flush()


def run_scenario(name: str, *, quick: bool, out_dir: Path, keep: bool = False) -> dict[str, Any]:
    """Run one scenario end to end; return its report (already written and printed)."""
    module = importlib.import_module(f"scenarios.{name}")
    rig = Rig(name, quick=quick, out_dir=out_dir, keep=keep)
    print(f"scenario {name} ({'quick' if quick else 'full'}): {module.TITLE}", flush=True)
    error = None
    try:
        module.run(rig)
    except Exception as exc:  # noqa: BLE001 - the scenario failed: reported with its traceback, cleanup runs
        error = f"{type(exc).__name__}: {exc}"
        (rig.logs / "scenario-error.txt").write_text(traceback.format_exc())
    finally:
        rig.cleanup()
    report = rig.report(module, error)
    paths = rig.write(report)
    print_report(report, paths)
    return report


def resolve(names: list[str]) -> list[str]:
    """``all`` or scenario names, checked."""
    out: list[str] = []
    for name in names:
        if name == "all":
            out += [n for n in SCENARIOS if n not in out]
        elif name in SCENARIOS:
            out.append(name)
        else:
            raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)}, all)")
    return out


def main_for(name: str, argv: list[str] | None = None) -> int:
    """``python -m scenarios.NAME [--quick] [--out DIR] [--keep]``."""
    parser = argparse.ArgumentParser(prog=f"python -m scenarios.{name}")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="scenario-reports")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (spools, stores)")
    args = parser.parse_args(argv)
    report = run_scenario(name, quick=args.quick, out_dir=Path(args.out).resolve(), keep=args.keep)
    return 0 if report["passed"] else 1
