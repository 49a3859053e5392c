"""Packets per second with every parser on, side by side with ``tshark -r`` on the same file.

    python3 benchmarks/inspection.py [--copies N] [--capture FILE] [--rounds R] [--skip-pipeline]

A large capture is built under /tmp from the mixed captures of ../shared/pcaps (DNS, HTTP,
TLS, SMB2 with NTLM, DCE/RPC, Kerberos, ICMP): every record of every capture, ``N`` times
over; copy k is shifted in time by k spans and its ports of 1024 and above by k * 1009
(TCP/UDP checksums recomputed), so that each copy makes new flows. Then, in one run:

* the engine on one core: ``Dissector.feed`` over the frames already in memory, every
  parser registered (conn, dns, http, ssl, smb_*, ntlm, dce_rpc*, kerberos, weird events);
  CPU time of this process, the best of ``R`` rounds;
* the same with the capture file read inside the loop (``probe.replay.FileReplay``, 1 MB chunks);
* the whole application: ``python -m probe run --pcap FILE`` (capture, dissection process,
  signing, LMDB spool, WebSocket to an embedded Core that verifies and stores every
  event), wall time of the process from start to exit and CPU time of its processes;
* ``tshark -r FILE -T fields -e frame.number`` (whole process, printing only frame
  numbers), wall time and CPU time.

Ratios are against tshark's packets/s by wall time and by CPU time (the stricter one when
other work shares the machine: tshark's wall time then includes time it waited). The
loops alternate and the best of the rounds counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("PROBE_SHARED_DIR", REPO.parent / "shared")) / "pcaps"
DEFAULT_OUT = Path("/tmp/probe-bench-inspection.pcap")
PORT_STRIDE = 1009


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _shift_ports(frame: bytes, shift: int) -> bytes:
    """``frame`` (Ethernet) with TCP/UDP ports >= 1024 moved by ``shift``, checksum recomputed."""
    if shift == 0 or len(frame) < 14:
        return frame
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        if struct.unpack_from("!H", frame, 20)[0] & 0x3FFF:
            return frame  # a fragment: leave it whole
        l4 = 14 + ihl
        total = struct.unpack_from("!H", frame, 16)[0]
        pseudo_addrs = frame[26:34]
        l4_len = total - ihl
    elif ethertype == 0x86DD and len(frame) >= 54:
        proto = frame[20]
        l4 = 54
        l4_len = struct.unpack_from("!H", frame, 18)[0]
        pseudo_addrs = frame[22:54]
    else:
        return frame
    if proto not in (6, 17) or len(frame) < l4 + l4_len or l4_len < (20 if proto == 6 else 8):
        return frame
    sport, dport = struct.unpack_from("!HH", frame, l4)
    move = lambda p: p if p < 1024 else 1024 + (p - 1024 + shift) % 64512  # noqa: E731
    segment = bytearray(frame[l4 : l4 + l4_len])
    struct.pack_into("!HH", segment, 0, move(sport), move(dport))
    at = 16 if proto == 6 else 6
    segment[at : at + 2] = b"\0\0"
    if ethertype == 0x0800:
        pseudo = pseudo_addrs + struct.pack("!BBH", 0, proto, l4_len)
    else:
        pseudo = pseudo_addrs + struct.pack("!IxxxB", l4_len, proto)
    value = _checksum(pseudo + bytes(segment)) or (0xFFFF if proto == 17 else 0)
    struct.pack_into("!H", segment, at, value)
    return frame[:l4] + bytes(segment) + frame[l4 + l4_len :]


def build_capture(out: Path, copies: int, sources: Path = SHARED) -> Path:
    """Write a classic pcap: every Ethernet record of ``sources``/*.pcap, ``copies`` times over."""
    from probe.replay import read_frames

    records = [(ts, data, wirelen) for path in sorted(sources.glob("*.pcap"))
               for ts, linktype, data, wirelen in read_frames(path) if linktype == 1]
    if not records:
        raise SystemExit(f"no pcap records under {sources} (set PROBE_SHARED_DIR)")
    records.sort(key=lambda r: r[0])
    span = records[-1][0] - records[0][0] + 1.0
    with out.open("wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for copy in range(copies):
            shift = copy * span
            for ts, data, wirelen in records:
                t = ts + shift
                sec = int(t)
                usec = int(round((t - sec) * 1e6))
                if usec >= 1_000_000:
                    sec, usec = sec + 1, usec - 1_000_000
                data = _shift_ports(data, copy * PORT_STRIDE)
                handle.write(struct.pack("<IIII", sec, usec, len(data), wirelen))
                handle.write(data)
    return out


def engine_seconds(frames: list, chunk: int = 2048) -> tuple[float, dict[str, int], dict[str, int]]:
    """CPU seconds of the engine with every parser over ``frames``; its counters; events by kind."""
    from protocols.dissect import DissectSettings, Dissector

    dissector = Dissector(DissectSettings())
    kinds: dict[str, int] = {}
    clock = time.process_time
    start = clock()
    for i in range(0, len(frames), chunk):
        for event in dissector.feed(frames[i : i + chunk]):
            name = type(event).__name__
            kinds[name] = kinds.get(name, 0) + 1
    for event in dissector.finish():
        name = type(event).__name__
        kinds[name] = kinds.get(name, 0) + 1
    return clock() - start, dissector.counters, kinds


def engine_with_reading_seconds(capture: Path) -> float:
    """CPU seconds of reading the file and dissecting it, a chunk of frames at a time as the probe does."""
    from probe.replay import FileReplay
    from protocols.dissect import DissectSettings, Dissector

    dissector = Dissector(DissectSettings())
    clock = time.process_time
    start = clock()
    for batch in FileReplay(capture).batches():
        dissector.feed(batch)
    dissector.finish()
    return clock() - start


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tshark_seconds(capture: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``tshark -r FILE -T fields -e frame.number``."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(["tshark", "-r", str(capture), "-T", "fields", "-e", "frame.number"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - cpu


def pipeline_seconds(capture: Path) -> tuple[float, float, dict]:
    """(wall, CPU of every process) seconds of ``python -m probe run --pcap`` (embedded Core), its summary."""
    data_dir = tempfile.mkdtemp(prefix="probe-bench-")
    try:
        cpu = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "probe", "run", "--pcap", str(capture), "--data-dir", data_dir,
             "--log-level", "warning", "--json-summary"],
            cwd=REPO, capture_output=True, text=True, check=True,
        )
        wall = time.perf_counter() - start
        return wall, _children_cpu() - cpu, json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=100, help="copies of ../shared/pcaps in the capture")
    parser.add_argument("--capture", type=Path, help="measure this capture instead of building one")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best of each measure counts")
    parser.add_argument("--skip-pipeline", action="store_true", help="leave out the whole `probe run`")
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        raise SystemExit("tshark is not installed")

    from probe.replay import read_frames

    capture = args.capture or build_capture(DEFAULT_OUT, args.copies)
    frames = list(read_frames(capture))
    n = len(frames)
    print(f"capture {capture}: {n} packets, {capture.stat().st_size / 1e6:.1f} MB")

    best = {name: float("inf") for name in ("engine", "engine+read", "pipeline", "pipeline cpu", "tshark",
                                             "tshark cpu")}
    counters: dict[str, int] = {}
    kinds: dict[str, int] = {}
    summary: dict = {}
    for _ in range(args.rounds):
        seconds, counters, kinds = engine_seconds(frames)
        best["engine"] = min(best["engine"], seconds)
        wall, cpu = tshark_seconds(capture)
        best["tshark"], best["tshark cpu"] = min(best["tshark"], wall), min(best["tshark cpu"], cpu)
        best["engine+read"] = min(best["engine+read"], engine_with_reading_seconds(capture))
        if not args.skip_pipeline:
            wall, cpu, summary = pipeline_seconds(capture)
            best["pipeline"], best["pipeline cpu"] = min(best["pipeline"], wall), min(best["pipeline cpu"], cpu)
    events = sum(kinds.values())
    print(f"engine events: {events} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
          f"flows {counters.get('flows')}; detected "
          + ", ".join(f"{k[7:]} {v}" for k, v in sorted(counters.items()) if k.startswith("detect:")))
    tshark_pps = n / best["tshark"]
    tshark_cpu_pps = n / best["tshark cpu"]
    rows = [
        ("engine, every parser, frames in memory (CPU, one core)", best["engine"]),
        ("engine, every parser, reading the file (CPU, one core)", best["engine+read"]),
    ]
    if not args.skip_pipeline:
        rows.append(("python -m probe run, whole application (wall)", best["pipeline"]))
        rows.append(("python -m probe run, CPU of its 3 processes", best["pipeline cpu"]))
    rows.append(("tshark -r FILE -T fields -e frame.number (wall)", best["tshark"]))
    rows.append(("tshark -r FILE -T fields -e frame.number (CPU)", best["tshark cpu"]))
    print(f"{'':<56}{'packets/s':>11}  {'/ tshark wall':>13}  {'/ tshark CPU':>12}")
    for label, seconds in rows:
        pps = n / seconds
        print(f"{label:<56}{pps:>11,.0f}  {pps / tshark_pps:>12.2f}x  {pps / tshark_cpu_pps:>11.2f}x  ({seconds:.2f} s)")
    if summary:
        print(f"probe run summary: {summary['events_created']} events created, {summary['delivered']} delivered, "
              f"dissection {summary['packets_per_second']:,.0f} packets/s by its own clock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
