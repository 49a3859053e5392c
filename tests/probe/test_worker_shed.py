"""A dissection process takes a shed request on its control pipe and passes it to its dissector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from protocols.ipc import MessageReader
from tests.ops.flood import write_flood_pcap

REPO = Path(__file__).resolve().parents[2]


def test_a_shed_line_reaches_the_dissector(tmp_path):
    pcap = write_flood_pcap(tmp_path / "flood.pcap", 10_000, per_flow=10)
    spec = {"index": 0, "source": "test:shed", "capture": {"kind": "file", "path": str(pcap)}, "dissect": {"udp_idle_timeout": 1.0}, "batch_packets": 256, "window_batches": 2}
    proc = subprocess.Popen([sys.executable, "-m", "probe.worker"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(spec) + "\n").encode())
    proc.stdin.flush()
    reader = MessageReader()
    done = None
    asked = False
    while done is None:
        chunk = proc.stdout.read1(1 << 16)
        assert chunk, "the dissection process ended without saying it was done"
        for message in reader.feed(chunk):
            if message["t"] == "events" and not asked:  # busy dissecting: ask it to shed now
                proc.stdin.write((json.dumps({"t": "shed", "fraction": 0.5}) + "\n").encode())
                proc.stdin.flush()
                asked = True
            elif message["t"] == "done":
                done = message
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    events = [json.loads(line).get("event") for line in proc.stderr.read().decode().splitlines() if line.startswith("{")]
    assert "flows_evicted" in events
    assert done["events"] == 10_000 + 1_000  # shedding ends flows early, it loses no event
