"""Reading a capture file from disk through the sans-I/O :class:`CaptureReader`.

    replay = FileReplay("trace.pcapng")
    for batch in replay.batches():      # lists of frames, one per chunk read
        ...
    replay.error                        # None, or one line: unreadable file, corrupt, truncated
    replay.counters                     # the reader's counters (packets, bytes, skip reasons)

``read_frames(path)`` is the one-frame-at-a-time shorthand for tests and tools, and
``dissect_file(path)`` runs a whole file through the flow engine. A missing or unreadable
file is an ``error``, never an exception.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from protocols.capfile import CaptureReader, Frame
from protocols.dissect import DissectSettings, Dissector

DEFAULT_CHUNK = 1 << 20


class FileReplay:
    """One pass over a capture file: frames in file order, then its error and counters."""

    def __init__(self, path: str | os.PathLike[str], chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path = Path(path)
        self.chunk_size = max(1, chunk_size)
        self.reader = CaptureReader()
        self.bytes_read = 0
        self.size: int | None = None  # known once the file is open; for progress
        self._io_error: str | None = None

    @property
    def error(self) -> str | None:
        """Why the replay stopped early or the file is damaged (None if it read cleanly)."""
        return self._io_error or self.reader.error

    @property
    def counters(self) -> dict[str, int]:
        """The reader's counters: packets, bytes and one per skip or failure reason."""
        return self.reader.counters

    def batches(self) -> Iterator[list[Frame]]:
        """Frames a chunk at a time (each list non-empty), as the dissector wants them."""
        try:
            stream = open(self.path, "rb")
        except OSError as exc:
            self._io_error = f"cannot open capture file {self.path}: {exc.strerror or exc}"
            return
        with stream:
            try:
                self.size = os.fstat(stream.fileno()).st_size
                while chunk := stream.read(self.chunk_size):
                    self.bytes_read += len(chunk)
                    frames = self.reader.feed(chunk)
                    if frames:
                        yield frames
                    if self.reader.error is not None:
                        return
            except OSError as exc:
                self._io_error = (f"cannot read capture file {self.path} at byte {self.bytes_read}: "
                                  f"{exc.strerror or exc}")
                return
        frames = self.reader.close()
        if frames:
            yield frames

    def frames(self) -> Iterator[Frame]:
        """Frames one at a time, in file order."""
        for batch in self.batches():
            yield from batch


def read_frames(path: str | os.PathLike[str], chunk_size: int = DEFAULT_CHUNK) -> Iterator[Frame]:
    """Every frame of the capture at ``path``; use :class:`FileReplay` to see errors too."""
    return FileReplay(path, chunk_size).frames()


def dissect_file(path: str | Path, settings: DissectSettings = DissectSettings()) -> tuple[list[Any], dict[str, int]]:
    """Every event the engine produces for a capture file, and its counters.

    The reader's counters join the engine's as ``capfile:<name>`` (as the capture actor
    reports them), so a damaged file shows up as ``capfile:truncated_record`` and the like.
    """
    dissector = Dissector(settings)
    replay = FileReplay(path)
    events: list[Any] = []
    for batch in replay.batches():
        events.extend(dissector.feed(batch))
    events.extend(dissector.finish())
    counters = dict(dissector.counters)
    counters.update((f"capfile:{name}", value) for name, value in replay.counters.items())
    return events, counters
