"""The foundation's benchmark: decode + flows vs dpkt, and the whole pipeline into a Core.

    python3 benchmarks/pipeline.py [CAPTURE] [--build N]

Without CAPTURE a large capture is built from ../shared/pcaps (see decode_flows.py).
Prints, on the same packets in one run:
  - packets/s of our decode + flow tracking alone (no parsers), CPU time of one core;
  - dpkt's decode-only packets/s over the same frames, interleaved, and the ratio;
  - the whole pipeline (`python -m probe run --pcap CAPTURE`, every parser on, signing,
    LMDB spool, embedded Core verifying and storing): wall-clock packets/s and events/s
    from the run's own summary, with the accounting it reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from decode_flows import build_capture, load_frames, measure  # noqa: E402


def pipeline(capture: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as data_dir:
        proc = subprocess.run(
            [sys.executable, "-m", "probe", "run", "--pcap", str(capture), "--data-dir", data_dir, "--json-summary", "--log-level", "warning"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise SystemExit(f"probe run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="?", type=Path)
    parser.add_argument("--build", type=int, default=200, metavar="N", help="copies of ../shared/pcaps to build")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    capture = args.capture or build_capture(copies=args.build)
    frames = load_frames(capture)
    n = len(frames)
    print(f"capture: {capture} ({n} frames)")

    import protocols.parsers  # noqa: F401  (register, then clear: decode + flows only)
    from protocols import analyzer

    saved = dict(analyzer.ANALYZERS)
    analyzer.ANALYZERS.clear()
    best_ours = best_dpkt = float("inf")
    for _ in range(args.rounds):
        ours, theirs, counters, _ = measure(frames, verify=False)
        best_ours, best_dpkt = min(best_ours, ours), min(best_dpkt, theirs)
    analyzer.ANALYZERS.update(saved)
    print(f"decode + flows (ours, one core):   {n / best_ours:12,.0f} packets/s  ({counters['flows']} flows)")
    print(f"decode only (dpkt, same frames):   {n / best_dpkt:12,.0f} packets/s")
    print(f"ratio ours / dpkt:                 {best_dpkt / best_ours:12.2f}x")

    summary = pipeline(capture)
    seconds = summary["seconds"]
    acc = summary["accounting"]
    print(
        f"whole pipeline (all parsers, signed, spooled, stored at the Core): "
        f"{summary['packets'] / seconds:,.0f} packets/s, {summary['events_created'] / seconds:,.0f} events/s "
        f"({summary['events_created']} events in {seconds:.2f} s wall; delivered {summary['delivered']}, "
        f"dropped {acc['dropped_total']}, pending {acc['pending']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
