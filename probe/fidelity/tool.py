"""The fidelity tool: replay captures through the real probe and compare what the Core stored.

For each capture with ``NAME.truth.json`` (tshark's view) or ``NAME.expected.json`` (Zeek,
Suricata and Arkime baselines), :func:`run_capture` runs ``python -m probe run`` with its
embedded Core in a scratch directory, with the settings the baseline's tools ran with
(:func:`baseline_settings`), and reads back the events the Core stored, exactly as
``python -m probe core export`` prints them. :func:`compare` hands them to every kind's
comparator. The result is one :class:`~probe.fidelity.report.KindReport` per capture,
kind and source, summed per kind by :func:`totals`.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import attrs

from probe.fidelity import conn, dcerpc, dns, http, kerberos, ntlm, smb, ssl, zeek_log
from probe.fidelity.report import KindReport

#: every comparator module: ``compare_truth(truth, events, capture)`` and
#: ``compare_corpus(expected, events, capture)`` give KindReport rows
COMPARATORS = (conn, dns, http, ssl, kerberos, smb, ntlm, dcerpc)

#: Zeek's Site::private_address_space, which its baselines count as local (conn's local_orig)
ZEEK_LOCAL_NETS = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "fe80::/10", "::1/128",
    "fc00::/7",
)

#: options the corpus manifest missed because the btest command line joins them to ``-r``
#: (``zeek -Cr TRACE``, ``zeek -br TRACE``), by the baseline's btest script
ZEEK_FLAGS_MISSED = {
    "testing/btest/scripts/base/protocols/dce-rpc/spnego-gssapi-kerberos.zeek": ("-C",),
    "testing/btest/scripts/base/protocols/vlan/vlan-0.zeek": ("-b",),
}

REPO = Path(__file__).resolve().parents[2]


@attrs.frozen
class Capture:
    """A capture file and the baseline beside it."""

    path: Path
    baseline_path: Path
    source: str  # "truth" (NAME.truth.json) or "corpus" (NAME.expected.json)

    @property
    def name(self) -> str:
        return self.path.name

    def baseline(self) -> dict:
        return json.loads(self.baseline_path.read_text())


class RunFailed(RuntimeError):
    """``python -m probe run`` did not finish a capture cleanly."""


def find_captures(dirs: Iterable[str | Path]) -> list[Capture]:
    """Every ``*.pcap``/``*.pcapng`` in ``dirs`` that has a truth or expected file beside it."""
    found = []
    for directory in map(Path, dirs):
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".pcap", ".pcapng"):
                continue
            stem = path.name.rsplit(".", 1)[0]
            for suffix, source in ((".truth.json", "truth"), (".expected.json", "corpus")):
                baseline = path.with_name(stem + suffix)
                if baseline.is_file():
                    found.append(Capture(path, baseline, source))
                    break
    return found


def baseline_settings(capture: Capture, baseline: dict) -> dict[str, Any]:
    """The ``[dissect]`` settings under which the baseline's tools saw the capture.

    tshark checks no checksums and neither do the probe's defaults for it. In the corpus
    the probe follows Zeek: checksums (IP and transport) are verified only when a Zeek
    baseline ran without ``-C`` (Suricata with ``-k none`` and Arkime check none);
    Zeek's bare mode ``-b`` has no likely_server_ports, so no originator flip by port;
    Zeek counts its private address space as local.
    """
    if capture.source == "truth":
        return {}
    flags = [zeek_flags(tool) for tool in zeek_log.zeek_tools(baseline)]
    verify = any("-C" not in tool_flags for tool_flags in flags)
    settings: dict[str, Any] = {"verify_ip_checksum": verify, "verify_transport_checksums": verify}
    if flags:
        settings["local_nets"] = list(ZEEK_LOCAL_NETS)
        settings["flip_by_server_port"] = not all("-b" in tool_flags for tool_flags in flags)
    return settings


def zeek_flags(tool: dict) -> set[str]:
    """The command-line options a Zeek baseline ran with (see :data:`ZEEK_FLAGS_MISSED`)."""
    return set(tool.get("zeek_flags") or ()) | set(ZEEK_FLAGS_MISSED.get(tool.get("test", ""), ()))


def _toml(settings: dict[str, Any]) -> str:
    lines = ["[dissect]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON booleans, strings and lists are TOML too
    return "\n".join(lines) + "\n"


def core_events(data_dir: Path) -> list[dict]:
    """The events the embedded Core stored under ``data_dir``, as ``core export`` prints them."""
    from protocols.events.envelope import decode_canonical, split_signed
    from storage.core_store import CoreStore

    store = CoreStore(str(data_dir / "core" / "store"))
    try:
        return [json.loads(json.dumps(decode_canonical(split_signed(record)[1]).as_json_object()))
                for _, _, record in store.events()]
    finally:
        store.close()


def run_capture(capture: Capture, workdir: Path, timeout: float = 300.0) -> tuple[list[dict], dict]:
    """Replay one capture through ``python -m probe run``; (events the Core stored, run summary)."""
    baseline = capture.baseline()
    config = workdir / "probe.toml"
    config.write_text(_toml(baseline_settings(capture, baseline)))
    data_dir = workdir / "data"
    cmd = [sys.executable, "-m", "probe", "run", "--config", str(config), "--pcap", str(capture.path),
           "--data-dir", str(data_dir), "--log-level", "warning", "--json-summary"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{capture.name}: probe run did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RunFailed(f"{capture.name}: probe run exited {proc.returncode}: {tail}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return core_events(data_dir), summary


def compare(capture: Capture, events: list[dict]) -> list[KindReport]:
    """Every comparator's rows for one capture's events."""
    baseline = capture.baseline()
    rows: list[KindReport] = []
    for module in COMPARATORS:
        if capture.source == "truth":
            rows += module.compare_truth(baseline, events, capture.name)
        else:
            rows += module.compare_corpus(baseline, events, capture.name)
    return [row for row in rows if row.expected or row.misses]


@attrs.define
class CaptureResult:
    """What one capture gave: its rows, or why the run failed."""

    capture: Capture
    rows: list[KindReport] = attrs.field(factory=list)
    packets: int = 0
    events: int = 0
    error: str | None = None


def check_capture(capture: Capture, scratch: Path) -> CaptureResult:
    """Run and compare one capture in its own scratch directory."""
    workdir = Path(tempfile.mkdtemp(prefix=capture.path.stem + "-", dir=scratch))
    try:
        events, summary = run_capture(capture, workdir)
    except RunFailed as exc:
        return CaptureResult(capture, error=str(exc))
    return CaptureResult(capture, compare(capture, events), summary.get("packets", 0), len(events))


def check_all(captures: list[Capture], jobs: int, scratch: Path) -> list[CaptureResult]:
    """Every capture, ``jobs`` probe runs at a time; results in capture order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda c: check_capture(c, scratch), captures))


def totals(results: list[CaptureResult]) -> list[KindReport]:
    """Rows summed per (source kind, kind, tool): truth rows and corpus rows apart."""
    summed: dict[tuple[str, str], KindReport] = {}
    for result in results:
        for row in result.rows:
            total = summed.setdefault((row.kind, row.source), KindReport("*", row.kind, row.source))
            total.expected += row.expected
            total.found += row.found
            total.matched += row.matched
            total.misses += [f"{row.capture}: {miss}" for miss in row.misses]
    order = {"truth": 0, "zeek": 1, "suricata": 2, "arkime": 3}
    return sorted(summed.values(), key=lambda r: (order.get(r.source, 9), r.kind))


def failed(results: list[CaptureResult]) -> list[str]:
    """Why the tool fails: a run that failed, or a truth kind below 100 %."""
    reasons = [r.error for r in results if r.error]
    for total in totals(results):
        if total.source == "truth" and total.matched < total.expected:
            reasons.append(f"truth {total.kind}: {total.matched} of {total.expected} matched")
    return reasons


def as_json(results: list[CaptureResult]) -> dict[str, Any]:
    """The whole outcome as one JSON document (per-capture rows and per-kind totals)."""
    def row(r: KindReport) -> dict[str, Any]:
        return {"capture": r.capture, "kind": r.kind, "source": r.source, "expected": r.expected, "found": r.found,
                "matched": r.matched, "agreement": round(r.agreement, 4), "misses": r.misses}

    return {
        "captures": [{"capture": r.capture.name, "baseline": r.capture.source, "packets": r.packets,
                      "events": r.events, "error": r.error, "rows": [row(x) for x in r.rows]} for r in results],
        "totals": [row(t) | {"capture": None} for t in totals(results)],
        "failures": failed(results),
    }


def as_text(results: list[CaptureResult], show_misses: bool = True) -> str:
    """The outcome as a table per kind and source, then each miss."""
    lines = [f"{len(results)} captures replayed through `python -m probe run`, events read back from the Core", ""]
    lines.append(f"{'kind':<14}{'source':<10}{'expected':>9}{'found':>8}{'matched':>9}{'agreement':>11}")
    for t in totals(results):
        lines.append(f"{t.kind:<14}{t.source:<10}{t.expected:>9}{t.found:>8}{t.matched:>9}{t.agreement:>10.1%}")
    for r in results:
        if r.error:
            lines.append(f"FAILED {r.error}")
    if show_misses:
        for t in totals(results):
            if t.misses:
                lines += ["", f"{t.kind} / {t.source}: {len(t.misses)} misses"]
                lines += [f"  {miss}" for miss in t.misses]
    reasons = failed(results)
    lines += ["", "FAIL: " + "; ".join(reasons) if reasons else "OK: every truth kind agrees 100 %"]
    return "\n".join(lines)
