"""Decode + flow tracking speed against dpkt's decode-only loop, on the same packets.

    python3 benchmarks/decode_flows.py [CAPTURE] [--build N] [--parsers]

Without CAPTURE, a large capture is built under /tmp from ../shared/pcaps (every record of
every capture, repeated N times with timestamps shifted so that each copy makes new
flows). Frames are read into memory first; then the loops run over the same frames:
our ``Dissector.feed`` (decode, flow table, TCP state, reassembly bookkeeping, conn
events; no parsers unless ``--parsers``), the same with transport checksums verified,
and ``dpkt.ethernet.Ethernet(frame)`` per frame (dpkt decodes every layer eagerly).
Times are CPU time of this process (``time.process_time``), the best of alternating
rounds, so that other work on a shared machine does not skew the ratio.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_SHARED = Path(os.environ.get("PROBE_SHARED_DIR", REPO.parent / "shared")) / "pcaps"
DEFAULT_OUT = Path("/tmp/probe-bench-decode-flows.pcap")


def build_capture(out: Path = DEFAULT_OUT, copies: int = 200, sources: Path = DEFAULT_SHARED) -> Path:
    """Write a classic pcap of every record of ``sources``/*.pcap, ``copies`` times over."""
    records: list[tuple[float, bytes, int]] = []
    linktype = None
    for path in sorted(sources.glob("*.pcap")):
        raw = path.read_bytes()
        magic = raw[:4]
        order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        file_linktype = struct.unpack(order + "I", raw[20:24])[0]
        linktype = file_linktype if linktype is None else linktype
        if file_linktype != linktype:
            continue
        off = 24
        while off + 16 <= len(raw):
            sec, frac, caplen, wirelen = struct.unpack(order + "IIII", raw[off : off + 16])
            off += 16
            records.append((sec + frac / (1e9 if nano else 1e6), raw[off : off + caplen], wirelen))
            off += caplen
    if not records:
        raise SystemExit(f"no pcap records under {sources} (set PROBE_SHARED_DIR)")
    records.sort(key=lambda r: r[0])
    first = records[0][0]
    span = records[-1][0] - first + 30.0  # gap between copies: every flow of a copy has ended
    with out.open("wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype or 1))
        for copy in range(copies):
            shift = copy * span
            for ts, data, wirelen in records:
                t = ts + shift
                sec = int(t)
                usec = int(round((t - sec) * 1e6))
                if usec >= 1_000_000:
                    sec, usec = sec + 1, usec - 1_000_000
                handle.write(struct.pack("<IIII", sec, usec, len(data), wirelen))
                handle.write(data)
    return out


def load_frames(path: Path) -> list[tuple[float, int, bytes, int]]:
    from probe.replay import read_frames

    return list(read_frames(path))


def measure(frames: list, verify: bool, chunk: int = 4096) -> tuple[float, float, dict[str, int], int]:
    """CPU seconds of (ours, dpkt) over ``frames``, the two interleaved chunk by chunk.

    Interleaving makes both loops run under the same machine conditions (the machine is
    shared); ours keeps its flow table across chunks as one continuous run would.
    """
    import dpkt

    from protocols.dissect import DissectSettings, Dissector

    ethernet = dpkt.ethernet.Ethernet
    dpkt_errors = (dpkt.UnpackError, struct.error, ValueError)
    dissector = Dissector(DissectSettings(verify_transport_checksums=verify))
    clock = time.process_time
    ours = theirs = 0.0
    events = 0
    for i in range(0, len(frames), chunk):
        part = frames[i : i + chunk]
        start = clock()
        events += len(dissector.feed(part))
        ours += clock() - start
        start = clock()
        for _ts, _linktype, data, _wirelen in part:
            try:
                ethernet(data)
            except dpkt_errors:
                pass
        theirs += clock() - start
    start = clock()
    events += len(dissector.finish())
    ours += clock() - start
    return ours, theirs, dissector.counters, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="?", type=Path, help="capture to measure (default: build one)")
    parser.add_argument("--build", type=int, default=200, metavar="N", help="copies of ../shared/pcaps to build")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each loop counts")
    parser.add_argument("--parsers", action="store_true", help="let registered parsers run (default: none)")
    args = parser.parse_args()

    if not args.parsers:
        import protocols.parsers  # noqa: F401  (register them first, so that clearing sticks)
        from protocols import analyzer

        analyzer.ANALYZERS.clear()  # measure decode + flows only
    capture = args.capture or build_capture(copies=args.build)
    frames = load_frames(capture)
    n = len(frames)
    print(f"capture: {capture} ({n} frames)")

    # the machine is shared: interleave, repeat, keep each loop's best round
    best = {"ours": float("inf"), "ours+checksums": float("inf"), "dpkt": float("inf")}
    counters: dict[str, int] = {}
    events = 0
    for _ in range(args.rounds):
        ours, theirs, counters, events = measure(frames, verify=False)
        best["ours"] = min(best["ours"], ours)
        best["dpkt"] = min(best["dpkt"], theirs)
        ours, theirs, _, _ = measure(frames, verify=True)
        best["ours+checksums"] = min(best["ours+checksums"], ours)
        best["dpkt"] = min(best["dpkt"], theirs)
    ours_pps = n / best["ours"]
    dpkt_pps = n / best["dpkt"]
    verify_pps = n / best["ours+checksums"]
    print(f"ours (decode + flows):               {ours_pps:10,.0f} packets/s  "
          f"({counters['flows']} flows, {events} events)")
    print(f"ours with transport checksums:       {verify_pps:10,.0f} packets/s")
    print(f"dpkt (decode only):                  {dpkt_pps:10,.0f} packets/s")
    print(f"ratio ours / dpkt:                   {ours_pps / dpkt_pps:10.2f}x "
          f"(with checksums {verify_pps / dpkt_pps:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
