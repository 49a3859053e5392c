"""Live capture throughput: the probe beside ``tcpdump -w /dev/null`` on the same veth traffic.

A namespace and a veth pair are made (as in the tests); tcpreplay inside the namespace
sends generated office-like traffic at increasing packet rates: every flow new, half of
them HTTP/1.1 downloads over TCP (handshake, request, a 24 KB page, close: 36 packets),
half DNS lookups over UDP (2 packets). At each rate the probe (1 or 2 dissection processes,
the whole pipeline down to an embedded Core) and tcpdump capture the same packets; the
figures are what each saw and dropped. "Lossless" means every packet sent was dissected:
no kernel (ring) drop and no drop at the source (the dissector's window closed).

For reference the same traffic is captured once to a file and replayed offline: the
engine's own rate (``Dissector.feed`` in one process) and ``probe run --pcap`` end to end.

    python3 benchmarks/live_capture.py [--seconds 3] [--rates 10000,20000,...] [--workers 1,2]

Needs root (namespaces, packet sockets), tcpreplay and tcpdump.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.integration.netlab import NetLab  # noqa: E402

RING_CONFIG = """[capture]
ring_block_size = 4194304
ring_block_count = 16
ring_block_timeout_ms = 50
[logging]
level = "warning"
"""
RING_KIB = 4 * 16 * 1024  # the same buffer for tcpdump (-B, KiB)
#: the generated file holds at most this many frames; higher rates replay it again (repeated flows)
MAX_FILE_FRAMES = 400_000


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(">10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(src: bytes, dst: bytes, proto: int, l4: bytes, to_server: bool) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
    ip = ip[:10] + struct.pack(">H", _ip_checksum(ip)) + ip[12:]
    macs = bytes.fromhex("020000000002020000000001") if to_server else bytes.fromhex("020000000001020000000002")
    return macs + b"\x08\x00" + ip + l4


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 64240, 0, 0) + payload


def _flow_packets(i: int) -> list[tuple[bool, bytes]]:
    """One flow's frames: an HTTP exchange (even i) or a DNS lookup (odd i), both new addresses."""
    client = bytes([10, 1 + i // 62500 % 200, i // 250 % 250, i % 250 + 1])
    port = 1024 + i % 60000
    if i % 2:
        server = bytes([10, 250, 0, 53])
        name = b"".join(bytes([len(p)]) + p for p in (f"host{i}".encode(), b"corp", b"example")) + b"\0"
        query = struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
        answer = struct.pack(">HHHHHH", i & 0xFFFF, 0x8180, 1, 1, 0, 0) + name + b"\x00\x01\x00\x01"
        answer += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + client
        udp = lambda sp, dp, data: struct.pack(">HHHH", sp, dp, 8 + len(data), 0) + data  # noqa: E731
        return [(True, _frame(client, server, 17, udp(port, 53, query), True)), (False, _frame(server, client, 17, udp(53, port, answer), False))]
    server = bytes([10, 250, 1, 80])
    request = f"GET /files/{i}.html HTTP/1.1\r\nHost: intranet.corp.example\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n".encode()
    body = b"<html>" + b"x" * 24000 + b"</html>"
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    c, s_ = 1000, 5000
    steps = [
        (True, _tcp(port, 80, c, 0, 0x02)),
        (False, _tcp(80, port, s_, c + 1, 0x12)),
        (True, _tcp(port, 80, c + 1, s_ + 1, 0x10)),
        (True, _tcp(port, 80, c + 1, s_ + 1, 0x18, request)),
    ]
    c += 1 + len(request)
    s_ += 1
    for n, at in enumerate(range(0, len(response), 1448)):  # MSS segments, an ACK every second one
        segment = response[at : at + 1448]
        steps.append((False, _tcp(80, port, s_ + at, c, 0x18 if at + 1448 >= len(response) else 0x10, segment)))
        if n % 2 or at + 1448 >= len(response):
            steps.append((True, _tcp(port, 80, c, s_ + at + len(segment), 0x10)))
    s_ += len(response)
    steps += [
        (True, _tcp(port, 80, c, s_, 0x11)),
        (False, _tcp(80, port, s_, c + 1, 0x11)),
        (True, _tcp(port, 80, c + 1, s_ + 1, 0x10)),
    ]
    return [(out, _frame(client, server, 6, l4, True) if out else _frame(server, client, 6, l4, False)) for out, l4 in steps]


def write_traffic(path: str, packets: int) -> int:
    """A pcap of at least ``packets`` frames of new flows, 50 us apart; returns the frame count."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    count = 0
    flow = 0
    ts = 1_700_000_000.0
    # flows overlap in time as on a real link: 16 in flight, their packets interleaved
    while count < packets:
        group = [_flow_packets(flow + k) for k in range(16)]
        flow += 16
        step = 0
        while any(step < len(g) for g in group):
            for g in group:
                if step < len(g):
                    frame = g[step][1]
                    sec = int(ts)
                    out.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
                    ts += 50e-6
                    count += 1
            step += 1
    with open(path, "wb") as fh:
        fh.write(b"".join(out))
    return count


def _wait_for(stream: Any, pattern: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {pattern!r}")
        line = stream.readline()
        if not line:
            raise RuntimeError(f"process ended while waiting for {pattern!r}")
        if pattern in line:
            seen += 1


def _tcpdump_stats(text: str) -> tuple[int, int]:
    captured = int(re.search(r"(\d+) packets captured", text).group(1))
    dropped = int(re.search(r"(\d+) packets dropped by kernel", text).group(1))
    return captured, dropped


def run_rate(lab: NetLab, traffic: str, frames: int, workers: int, rate: int, seconds: float, config: str, data: str) -> dict[str, Any]:
    """Offer ``rate`` packets/s for ``seconds`` to the probe and tcpdump at once."""
    probe = subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--config", config, "--interface", lab.capture, "--workers", str(workers),
         "--json-summary", "--no-progress", "--log-level", "info", "--data-dir", data],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    dump = subprocess.Popen(
        ["tcpdump", "-i", lab.capture, "-n", "-B", str(RING_KIB), "-w", "/dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(probe.stderr, '"event": "capture_open"', workers)
        _wait_for(dump.stderr, "listening on", 1)
        total = int(rate * seconds)
        loops = -(-total // frames)  # the file again when a high rate needs more frames than it holds
        replay = lab.ns_exec(
            ["tcpreplay", "-K", "--loop", str(loops), "--limit", str(total), "--pps", str(rate), "-i", lab.inner, traffic]
        ).stdout.decode()
        sent = int(re.search(r"Actual: (\d+) packets", replay).group(1))
        achieved = float(re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay).group(1))
        time.sleep(2.0)  # the last ring blocks retire and tcpdump writes them out
        dump.send_signal(signal.SIGINT)
        probe.send_signal(signal.SIGINT)
        _, dump_err = dump.communicate(timeout=30)
        out, err = probe.communicate(timeout=300)
    finally:
        for proc in (probe, dump):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    summary = json.loads(out.strip().splitlines()[-1])
    live = summary["live"]
    td_captured, td_dropped = _tcpdump_stats(dump_err)
    return {
        "workers": workers,
        "offered_pps": rate,
        "achieved_pps": round(achieved),
        "sent": sent,
        "probe_dissected": summary["packets"],
        "probe_kernel_drops": live["kernel_drops"],
        "probe_source_drops": sum(live["dropped_at_source"].values()),
        "probe_per_worker": [w["packets"] for w in live["workers"]],
        "probe_events": summary["events_created"],
        "probe_delivered": summary["delivered"],
        "tcpdump_captured": td_captured,
        "tcpdump_drops": td_dropped,
        "probe_lossless": summary["packets"] == sent and live["kernel_drops"] == 0,
        "tcpdump_lossless": td_captured == sent and td_dropped == 0,
    }


def offline_reference(path: str, data: str) -> dict[str, float]:
    """The engine's own rate and ``probe run --pcap`` end to end on the captured traffic."""
    from probe.replay import read_frames
    from protocols.dissect import Dissector

    frames = list(read_frames(path))
    engine = Dissector()
    started = time.perf_counter()
    for i in range(0, len(frames), 2048):
        engine.feed(frames[i : i + 2048])
    engine.finish()
    engine_pps = len(frames) / (time.perf_counter() - started)
    done = subprocess.run(
        [sys.executable, "-m", "probe", "run", "--pcap", path, "--json-summary", "--no-progress", "--log-level", "warning", "--data-dir", data],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"packets": len(frames), "engine_pps": round(engine_pps), "probe_file_pps": summary["packets_per_second"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of traffic per rate")
    parser.add_argument(
        "--rates", default="10000,20000,30000,40000,50000,60000,70000,80000,120000,160000,240000", help="offered packet rates"
    )
    parser.add_argument("--workers", default="1,2", help="dissection process counts to measure")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: namespaces and packet sockets", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp, NetLab() as lab:
        config = os.path.join(tmp, "bench.toml")
        with open(config, "w") as fh:
            fh.write(RING_CONFIG)
        traffic = os.path.join(tmp, "traffic.pcap")
        frames = write_traffic(traffic, min(MAX_FILE_FRAMES, int(max(rates) * args.seconds) + 16))
        reference = offline_reference(traffic, os.path.join(tmp, "offline"))
        print(
            f"traffic: {frames:,} generated frames (HTTP and DNS flows, all new)\n"
            f"offline on that file: engine alone {reference['engine_pps']:,} packets/s; "
            f"probe run --pcap end to end {reference['probe_file_pps']:,.0f} packets/s\n",
            flush=True,
        )
        for workers in worker_counts:
            for rate in rates:
                row = run_rate(lab, traffic, frames, workers, rate, args.seconds, config, os.path.join(tmp, f"w{workers}-{rate}"))
                rows.append(row)
                print(
                    f"workers {workers}  offered {rate:>7,}/s achieved {row['achieved_pps']:>7,}/s  sent {row['sent']:>7,} | "
                    f"probe dissected {row['probe_dissected']:>7,} kernel drops {row['probe_kernel_drops']:>6,} "
                    f"source drops {row['probe_source_drops']:>6,} split {row['probe_per_worker']} | "
                    f"tcpdump {row['tcpdump_captured']:>7,} drops {row['tcpdump_drops']:>6,}",
                    flush=True,
                )
    print()
    for workers in worker_counts:
        mine = [r for r in rows if r["workers"] == workers]
        probe_best = max((r["achieved_pps"] for r in mine if r["probe_lossless"]), default=0)
        dump_best = max((r["achieved_pps"] for r in mine if r["tcpdump_lossless"]), default=0)
        ratio = probe_best / dump_best if dump_best else float("nan")
        print(
            f"workers {workers}: highest lossless rate: probe {probe_best:,} packets/s, tcpdump {dump_best:,} packets/s "
            f"(ratio {ratio:.2f}; tcpdump's figure is bounded by the highest rate offered)"
        )
    if len(worker_counts) > 1:
        best = {w: max((r["achieved_pps"] for r in rows if r["workers"] == w and r["probe_lossless"]), default=0) for w in worker_counts}
        base = best[worker_counts[0]] or float("nan")
        print("scaling: " + ", ".join(f"{w} workers {best[w] / base:.2f}x" for w in worker_counts))
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
