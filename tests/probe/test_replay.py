"""FileReplay / read_frames: a file on disk through the capture reader, errors without tracebacks."""

from __future__ import annotations

import json
import struct

import pytest

from probe.replay import FileReplay, read_frames

PCAP = (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        + b"".join(struct.pack("<IIII", 100 + i, 0, 3, 3) + bytes([i, i, i]) for i in range(5)))


def test_reads_frames_in_small_and_large_chunks(tmp_path):
    path = tmp_path / "five.pcap"
    path.write_bytes(PCAP)
    expected = [(100.0 + i, 1, bytes([i, i, i]), 3) for i in range(5)]
    assert list(read_frames(path)) == expected
    replay = FileReplay(path, chunk_size=7)
    batches = list(replay.batches())
    assert [f for b in batches for f in b] == expected and all(batches)
    assert replay.error is None
    assert replay.bytes_read == replay.size == len(PCAP)
    assert replay.counters["packets"] == 5


def test_missing_file_is_an_error_not_an_exception(tmp_path):
    replay = FileReplay(tmp_path / "nope.pcap")
    assert list(replay.frames()) == []
    assert replay.error == f"cannot open capture file {tmp_path / 'nope.pcap'}: No such file or directory"


def test_directory_is_an_error_not_an_exception(tmp_path):
    replay = FileReplay(tmp_path)
    assert list(replay.frames()) == []
    assert replay.error == f"cannot open capture file {tmp_path}: Is a directory"


def test_truncated_file_keeps_the_good_frames_and_says_why(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(PCAP[:-2])
    replay = FileReplay(path, chunk_size=16)
    assert len(list(replay.frames())) == 4
    assert replay.error == "truncated pcap file: record at byte 100 has 17 of 19 bytes"
    assert replay.counters["truncated_record"] == 1


def test_corrupt_file_stops_reading_early(tmp_path):
    path = tmp_path / "bad.pcap"
    path.write_bytes(PCAP[:24] + struct.pack("<IIII", 0, 0, 0xFFFFFFFF, 1) + bytes(4 << 20))
    replay = FileReplay(path, chunk_size=1 << 20)
    assert list(replay.frames()) == []
    assert "corrupt pcap record at byte 24" in replay.error
    assert replay.bytes_read == 1 << 20  # it did not read the rest of the file


@pytest.mark.shared
def test_shared_capture_through_read_frames(pcaps_dir):
    truth = json.loads((pcaps_dir / "dns.truth.json").read_text())["summary"]
    frames = list(read_frames(pcaps_dir / "dns.pcap", chunk_size=1000))
    assert len(frames) == truth["packets"]
    assert sum(f[3] for f in frames) == truth["bytes"]
