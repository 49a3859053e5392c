"""Replaying a capture file through the flow engine (a convenience for tests and tools)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from protocols.dissect import DissectSettings, Dissector, Frame


def read_frames(path: str | Path) -> Iterator[Frame]:
    """TEMPORARY until branch capfile lands: frames of a pcap/pcapng file via dpkt."""
    import dpkt

    with open(path, "rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        reader = dpkt.pcapng.Reader(handle) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(handle)
        linktype = reader.datalink()
        for ts, buf in reader:
            yield float(ts), linktype, bytes(buf), len(buf)


def dissect_file(path: str | Path, settings: DissectSettings = DissectSettings()) -> tuple[list[Any], dict[str, int]]:
    """Every event the engine produces for a capture file, and its counters."""
    dissector = Dissector(settings)
    events: list[Any] = []
    batch: list[Frame] = []
    for frame in read_frames(path):
        batch.append(frame)
        if len(batch) >= 1024:
            events.extend(dissector.feed(batch))
            batch = []
    events.extend(dissector.feed(batch))
    events.extend(dissector.finish())
    return events, dict(dissector.counters)
