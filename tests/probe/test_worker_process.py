"""The dissection process on a capture file: pacing, pause/resume, graceful stop, clean exit.

The worker runs as a real ``python -m probe.worker`` child; its messages are read off the pipe.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocols.ipc import MessageReader

REPO = Path(__file__).resolve().parent.parent.parent


def udp_frame(sport: int, payload: bytes = b"x" * 16) -> bytes:
    ip_len = 20 + 8 + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    total = sum(struct.unpack(">10H", ip))
    total = (total & 0xFFFF) + (total >> 16)
    ip = ip[:10] + struct.pack(">H", ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF) + ip[12:]
    udp = struct.pack(">HHHH", sport, 9999, 8 + len(payload), 0)
    return bytes(6) + bytes.fromhex("020000000002") + b"\x08\x00" + ip + udp + payload


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in packets:
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


@pytest.fixture
def one_second_capture(tmp_path) -> Path:
    """11 packets of 11 UDP flows, 0.1 s apart: one second of capture time."""
    path = tmp_path / "second.pcap"
    write_pcap(path, [(1_700_000_000.0 + i / 10, udp_frame(40000 + i)) for i in range(11)])
    return path


class Worker:
    def __init__(self, path: Path, pace: str = "fast") -> None:
        spec = {"index": 0, "source": "test", "capture": {"kind": "file", "path": str(path), "pace": pace}, "dissect": {}}
        self.proc = subprocess.Popen([sys.executable, "-m", "probe.worker"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.send(spec)
        self.started = time.monotonic()

    def send(self, line: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(line) + "\n").encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = 20) -> tuple[list[dict], float]:
        """Read until the worker ends by itself (stdin stays open: closing it means "go away")."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        took = time.monotonic() - self.started
        assert self.proc.wait(timeout=timeout) == 0
        self.proc.stdin.close()
        return MessageReader().feed(out), took


def conns(messages: list[dict]) -> int:
    return sum(1 for m in messages if m["t"] == "events" for e in m["ev"] if e and e[1] == "conn")


def test_fast_replay_finishes_at_once_and_the_process_exits(one_second_capture):
    messages, took = Worker(one_second_capture).finish()
    assert messages[-1]["t"] == "done" and messages[-1]["c"]["packets"] == 11
    assert conns(messages) == 11
    assert took < 5  # no waiting for a kill: the process ends by itself


@pytest.mark.slow
def test_pause_holds_a_replay_until_resumed(one_second_capture):
    worker = Worker(one_second_capture, "realtime")
    worker.send({"t": "pause"})
    time.sleep(1.5)
    worker.send({"t": "resume"})
    messages, took = worker.finish()
    assert took >= 2.4  # 1.5 s paused + 1 s of capture time
    assert messages[-1]["c"]["packets"] == 11


def test_stop_ends_a_paced_replay_with_its_open_flows_flushed(one_second_capture):
    worker = Worker(one_second_capture, "0.1")  # would take 10 s
    time.sleep(1.0)
    worker.send({"t": "stop"})
    messages, took = worker.finish()
    assert took < 5
    done = messages[-1]
    assert done["t"] == "done" and 0 < done["c"]["packets"] < 11  # stopped part way
    assert conns(messages) == done["c"]["flows"] == done["c"]["packets"]  # every flow seen became a conn event
    assert done["c"]["capture_unreplayed"] == 11 - done["c"]["packets"]
