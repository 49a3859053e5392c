"""A real TCP proxy that damages one event record on its way to the Core.

It forwards the probe's WebSocket connection byte for byte, except that it parses the
probe's (masked) frames and, in the first events frame with at least three records,
flips one byte of the second record. The Core then sees a damaged copy, exactly as if a
bit had flipped on the wire.
"""

from __future__ import annotations

import socket
import struct
import threading

import msgpack


def _unmask(data: bytes, mask: bytes) -> bytes:
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


class FlippingProxy:
    """Listens on 127.0.0.1; ``offset`` is where in the record the byte flips (negative: from its end)."""


    def __init__(self, upstream_port: int, offset: int = -3, every_copy: bool = False) -> None:
        self.upstream_port = upstream_port
        self.offset = offset
        self.every_copy = every_copy  # damage the re-sent copies of that record too
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flipped: list[bytes] = []  # the original records that were damaged
        self.event_frames = 0
        self._sockets: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._copy, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._probe_to_core, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _probe_to_core(self, src: socket.socket, dst: socket.socket) -> None:
        buf = b""
        handshake_done = False
        try:
            while data := src.recv(1 << 16):
                buf += data
                if not handshake_done:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    dst.sendall(buf[: end + 4])
                    buf = buf[end + 4 :]
                    handshake_done = True
                while True:
                    frame, buf = self._take_frame(buf)
                    if frame is None:
                        break
                    dst.sendall(frame)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _take_frame(self, buf: bytes) -> tuple[bytes | None, bytes]:
        if len(buf) < 2:
            return None, buf
        length, offset = buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None, buf
            length, offset = struct.unpack(">H", buf[2:4])[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None, buf
            length, offset = struct.unpack(">Q", buf[2:10])[0], 10
        masked = bool(buf[1] & 0x80)
        mask = buf[offset : offset + 4] if masked else b""
        start = offset + len(mask)
        if len(buf) < start + length:
            return None, buf
        head, payload, rest = buf[:start], buf[start : start + length], buf[start + length :]
        if masked and buf[0] & 0x0F == 0x2:
            payload = self._maybe_damage(payload, mask)
        return head + payload, rest

    def _maybe_damage(self, masked_payload: bytes, mask: bytes) -> bytes:
        plain = _unmask(masked_payload, mask)
        try:
            frame = msgpack.unpackb(plain, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return masked_payload
        if not isinstance(frame, dict) or frame.get("t") != "events":
            return masked_payload
        self.event_frames += 1
        records = frame.get("records") or []
        if self.flipped and self.every_copy and self.flipped[0] in records:
            record = self.flipped[0]
        elif self.flipped or len(records) < 3:
            return masked_payload
        else:
            record = records[1]
        where = plain.find(record) + (self.offset % len(record))
        damaged = bytearray(plain)
        damaged[where] ^= 0x20
        self.flipped.append(record)
        return _unmask(bytes(damaged), mask)

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
