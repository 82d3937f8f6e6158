"""The limits a socket lives under, read once when it opens (docs/security.md).

Reading them once keeps settings lookups off the message path; ``override_settings`` in a test
applies to the sockets opened after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .conf import conf

# Open sockets per client address, in this process (MAX_CONNECTIONS_PER_ADDRESS).
open_sockets: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int | None
    max_connection_id_length: int
    max_room_id_length: int
    max_rooms_per_connection: int | None
    max_sockets_per_connection: int | None
    max_connections_per_address: int | None
    client_address_header: str | None
    rate_limit: float | None
    rate_burst: int
    rate_limit_close_after: int | None
    max_payload_depth: int | None
    max_send_buffer: int | None
    connect_timeout: float | None

    @classmethod
    def from_settings(cls) -> Limits:
        get = conf.limit
        rate = get("RATE_LIMIT")
        burst = get("RATE_BURST")
        timeout = get("CONNECT_TIMEOUT")
        header = get("CLIENT_ADDRESS_HEADER")
        return cls(
            max_frame_bytes=get("MAX_FRAME_BYTES"),
            max_connection_id_length=get("MAX_CONNECTION_ID_LENGTH") or 128,
            max_room_id_length=get("MAX_ROOM_ID_LENGTH") or 200,
            max_rooms_per_connection=get("MAX_ROOMS_PER_CONNECTION"),
            max_sockets_per_connection=get("MAX_SOCKETS_PER_CONNECTION"),
            max_connections_per_address=get("MAX_CONNECTIONS_PER_ADDRESS"),
            client_address_header=header.strip().lower() if header else None,
            rate_limit=None if rate is None else float(rate),
            rate_burst=int(burst) if burst is not None else max(1, int(float(rate or 1))),
            rate_limit_close_after=get("RATE_LIMIT_CLOSE_AFTER"),
            max_payload_depth=get("MAX_PAYLOAD_DEPTH"),
            max_send_buffer=get("MAX_SEND_BUFFER"),
            connect_timeout=None if timeout is None else float(timeout),
        )


class TokenBucket:
    """``rate`` frames per second on average, ``burst`` at once; ``rate`` None: no limit."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float | None, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> bool:
        """Take one token; False when the bucket is empty (the frame must be refused)."""
        if self._rate is None:
            return True
        now = time.monotonic()
        tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


def client_address(scope: dict[str, Any], header: str | None) -> str:
    """The client's address: the peer's, or, behind a proxy, the one in ``header``.

    Of a comma-separated header (X-Forwarded-For), the rightmost entry counts: it is the one the
    trusted proxy itself added; entries to its left came from the client and may be forged.
    """
    if header:
        wanted = header.encode("latin-1")
        for name, value in scope.get("headers") or ():
            if name.lower() == wanted:
                entries = [e.strip() for e in value.decode("latin-1").split(",") if e.strip()]
                if entries:
                    return entries[-1][:100]
    client = scope.get("client")
    if not client:
        return ""
    return str(client[0])[:100]
