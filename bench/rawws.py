"""A bare WebSocket client on a blocking TCP socket, for the benchmarks that need a client that
misbehaves on purpose: one that never reads (``slow_consumer.py``), one that floods (``flood.py``).

A library client reads the socket in the background and answers pings; these clients do exactly
what they are told and nothing else. Client frames are masked, as RFC 6455 requires; server frames
are assumed unfragmented (every server measured sends a text frame in one piece).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from typing import Any

OP_TEXT, OP_CLOSE = 0x1, 0x8


def handshake(
    host: str,
    port: int,
    path: str,
    *,
    rcvbuf: int | None = None,
    origin: str | None = None,
    timeout: float = 10.0,
) -> FrameReader:
    """Open a TCP connection and upgrade it; ``rcvbuf`` sets SO_RCVBUF before connecting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"{host}:{port} closed the connection during the handshake")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101" not in status:
        sock.close()
        raise ConnectionError(f"handshake refused: {status.decode(errors='replace')!r}")
    return FrameReader(sock, bytearray(rest))


def encode_frame(data: str | bytes, opcode: int = OP_TEXT) -> bytes:
    payload = data.encode() if isinstance(data, str) else data
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    if n:
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    else:
        masked = b""
    return header + mask + masked


def encode_json(frame: dict[str, Any]) -> bytes:
    return encode_frame(json.dumps(frame, separators=(",", ":")))


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class FrameReader:
    """Reads the server's frames from ``sock`` (``buf``: bytes already read past the headers)."""

    def __init__(self, sock: socket.socket, buf: bytearray) -> None:
        self.sock = sock
        self.buf = buf
        self.bytes_read = len(buf)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the TCP connection")
            self.bytes_read += len(chunk)
            self.buf += chunk

    def frame(self) -> tuple[int, bytes]:
        """The next frame as (opcode, payload); EOFError when the connection is closed."""
        self._fill(2)
        opcode, n, pos = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
        if n == 126:
            self._fill(4)
            n, pos = struct.unpack_from("!H", self.buf, 2)[0], 4
        elif n == 127:
            self._fill(10)
            n, pos = struct.unpack_from("!Q", self.buf, 2)[0], 10
        self._fill(pos + n)
        payload = bytes(self.buf[pos : pos + n])
        del self.buf[: pos + n]
        return opcode, payload

    def send(self, frame: dict[str, Any]) -> None:
        self.sock.sendall(encode_json(frame))

    def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send ``frame`` and return the server's ack or error for its messageID (frames in
        between, such as room messages, are skipped)."""
        self.send(frame)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            opcode, payload = self.frame()
            if opcode == OP_CLOSE:
                raise ConnectionError(f"closed with {close_code(payload)} waiting for a reply")
            if opcode != OP_TEXT:
                continue
            reply = json.loads(payload)
            if reply.get("type") in ("ack", "error") and reply.get("messageID") == frame.get(
                "messageID"
            ):
                return reply
        raise TimeoutError(f"no reply to {frame.get('type')!r} within {timeout} s")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
