"""What the client puts on the wire: JSON encoding, URL checks, and one socket's handshake (open
the WebSocket, send ``connect``, wait for its reply). No state of the client lives here."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.typing import Origin
from websockets.uri import parse_uri

from ._errors import Frame, ThinWSError

TokenProvider = Callable[[], "str | Awaitable[str | None] | None"]

# The server closes a socket that sends more than about 90 frames at once (its rate limit's burst
# and close-after settings); a flushed offline queue must stay well below that.
MAX_QUEUE_LIMIT = 50
MAX_INCOMING_BYTES = 2**21  # daphne refuses frames over 1 MiB; relayed frames add a little
CLOSE_TIMEOUT = 2.0  # seconds to wait for the closing handshake before dropping TCP
# A connect refused with one of these will be refused again: the client stops, not retries.
# (forbidden has rules of its own: one retry with a fresh token from a token_provider.)
FATAL_CONNECT_ERRORS = frozenset(
    {"invalid_json", "invalid_envelope", "unknown_type", "too_large", "already_connected"}
)


def check_url(url: object) -> str:
    """``url`` if it is a ws:// or wss:// URL, else ValueError naming it."""
    if not isinstance(url, str):
        raise ValueError(f"a URL must be a string like 'wss://host/ws/thinws/', got {url!r}")
    try:
        parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"not a WebSocket URL: {exc}") from None
    return url


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def encode(frame: Frame) -> str:
    """The frame as compact JSON text; ValueError naming the bad value when it is not JSON that
    can travel (NaN, a set, a lone surrogate, nesting deeper than Python can encode, ...)."""
    try:
        text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")  # a lone surrogate fails here, not inside the socket
    except (TypeError, ValueError, RecursionError) as exc:
        value = frame.get("payload", frame)
        if isinstance(exc, RecursionError):
            reason = "it is nested too deeply"
        elif isinstance(exc, UnicodeEncodeError):
            reason = "it holds a lone surrogate, which is not valid UTF-8"
        else:
            reason = str(exc)
        raise ValueError(f"cannot send {_short(value)} as JSON: {reason}") from None
    return text


async def fetch_token(token: str | None, provider: TokenProvider | None) -> str | None:
    """The token for the next ``connect``: the provider's (sync or async) if there is one."""
    if provider is None:
        return token
    try:
        fresh = provider()
        if inspect.isawaitable(fresh):
            fresh = await fresh
    except Exception as exc:
        raise ThinWSError("token_provider_failed", f"the token_provider raised {exc!r}") from exc
    if fresh is not None and not isinstance(fresh, str):
        raise ThinWSError(
            "token_provider_failed", f"the token_provider returned {fresh!r}, not a string"
        )
    return fresh


async def open_session(
    url: str,
    connect_frame: Frame,
    *,
    origin: str | None,
    headers: dict[str, str],
    deadline: float,
) -> tuple[ClientConnection, Frame]:
    """Open a WebSocket to ``url``, send ``connect_frame``, return the socket and the ack.

    Raises :class:`ThinWSError` when the server answers with an error (the socket is then
    dropped: the server closes it anyway), ``forbidden`` for an HTTP 401/403 handshake,
    ``TimeoutError`` at ``deadline`` (the loop's clock), and whatever ``websockets`` raises
    for a network failure (``OSError``, ``InvalidHandshake``, ``ConnectionClosed``).
    """
    ws: ClientConnection | None = None
    try:
        async with asyncio.timeout_at(deadline):
            ws = await connect(
                url,
                origin=Origin(origin) if origin else None,
                additional_headers=headers,
                open_timeout=None,  # the timeout above bounds the whole handshake
                close_timeout=CLOSE_TIMEOUT,
                max_size=MAX_INCOMING_BYTES,
            )
            with contextlib.suppress(ConnectionClosed):  # it may have said why: read on
                await ws.send(encode(connect_frame))
            reply = await _first_reply(ws)
    except TimeoutError:
        _drop(ws)
        raise TimeoutError(f"no connect ack from {url} in time (connect_timeout)") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise ThinWSError(
                "forbidden",
                f"{url} refused the WebSocket handshake with HTTP {status} (a foreign Origin? "
                "missing credentials?)",
            ) from exc
        raise
    except BaseException:
        _drop(ws)
        raise
    if reply.get("type") == "error":
        _drop(ws)
        raise ThinWSError.from_frame(reply)
    return ws, reply


async def _first_reply(ws: ClientConnection) -> Frame:
    """The first ``ack`` or ``error`` on a new socket (nothing else is due before it)."""
    while True:
        raw = await ws.recv()
        try:
            frame = json.loads(raw)
        except ValueError:
            continue
        if isinstance(frame, dict) and frame.get("type") in ("ack", "error"):
            return frame


def _drop(ws: ClientConnection | None) -> None:
    """Drop a socket whose handshake failed, without waiting for a closing handshake."""
    if ws is not None and ws.transport is not None:
        ws.transport.abort()
