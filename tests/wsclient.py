"""A small asyncio ThinWS test client on the ``websockets`` package.

Every wait is bounded by a timeout. A background task reads every frame as it arrives, so
nothing is lost while a test waits for something else: replies (``ack``/``error``) are matched
to requests by ``messageID``; every other frame (room messages, ``subscribed``...) is buffered
in arrival order for ``next_message`` / ``next_frame``.

    async with await ThinWSClient.open(url) as c:
        ack = await c.connect("c-1")
        await c.subscribe("lobby")
        await c.publish("lobby", {"x": 1})
        msg = await c.next_message()
"""

# Every wait takes an explicit timeout: that is the point of this helper.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]

DEFAULT_TIMEOUT = 10.0
REPLY_TYPES = ("ack", "error")


class ProtocolError(AssertionError):
    """The server answered with something a test did not expect."""


def origin_for(url: str) -> str:
    """``ws://127.0.0.1:8001/ws/thinws/`` -> ``http://127.0.0.1:8001``."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


class ThinWSClient:
    _ids = itertools.count(1)

    def __init__(self, ws: ClientConnection, url: str):
        self.ws = ws
        self.url = url
        self.connection_id: str | None = None
        self.frames: list[Frame | bytes | str] = []  # everything received, in order (for debugging)
        self._pending: list[Frame | bytes | str] = []  # received and not consumed yet
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.reader_error: BaseException | None = None
        self._reader = asyncio.create_task(self._read(), name=f"thinws-reader {url}")

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        url: str,
        *,
        origin: str | None = "auto",
        timeout: float = DEFAULT_TIMEOUT,
        max_size: int | None = 16 * 1024 * 1024,
        **kwargs: Any,
    ) -> ThinWSClient:
        """Open the socket (no ``connect`` frame). ``origin=None`` sends no Origin header."""
        if origin == "auto":
            origin = origin_for(url)
        ws = await connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=timeout,
            close_timeout=5,
            max_size=max_size,
            max_queue=None,  # the reader task drains it; never stall the server's writes
            proxy=None,  # loopback only, whatever the environment says
            compression=None,
            **kwargs,
        )
        return cls(ws, url)

    @classmethod
    async def connected(
        cls, url: str, connection_id: str, *, timeout: float = DEFAULT_TIMEOUT, **fields: Any
    ) -> tuple[ThinWSClient, Frame]:
        """Open the socket and send ``connect``; returns the client and the connect ack."""
        client = await cls.open(url, timeout=timeout)
        try:
            ack = await client.connect(connection_id, timeout=timeout, **fields)
        except BaseException:
            await client.close()
            raise
        return client, ack

    async def __aenter__(self) -> ThinWSClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reading ----------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                item: Frame | bytes | str
                if isinstance(raw, bytes):
                    item = raw
                else:
                    try:
                        item = json.loads(raw)
                    except ValueError:
                        item = raw  # not JSON: kept as text, tests will see it
                self.frames.append(item)
                self._pending.append(item)
                self._changed.set()
        except ConnectionClosed:
            pass
        except BaseException as exc:  # recorded for the tests to see
            self.reader_error = exc
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self._closed.set()
            self._changed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def _wait_for(
        self, match: Callable[[Frame | bytes | str], bool], timeout: float, what: str
    ) -> Frame:
        """Remove and return the first pending frame that ``match``es, waiting up to ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, item in enumerate(self._pending):
                if match(item):
                    del self._pending[i]
                    return item  # type: ignore[return-value]
            if self._closed.is_set():
                raise ProtocolError(
                    f"socket closed (code {self.close_code}, reason {self.close_reason!r}) "
                    f"while waiting for {what}; pending frames: {self._pending!r}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no {what} within {timeout}s on {self.url}; pending frames: "
                    f"{self._pending[-20:]!r}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- sending ----------------------------------------------------------------------------
    async def send(self, frame: Frame | Any) -> None:
        """Send one JSON frame (any JSON value, for envelope tests)."""
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        """Send raw text (a text frame) or bytes (a binary frame)."""
        await self.ws.send(data)

    def new_id(self) -> int:
        return next(self._ids)

    async def request(self, frame: Frame, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Send ``frame`` (a messageID is added if missing) and wait for its ack or error."""
        frame = dict(frame)
        if "messageID" not in frame:
            frame["messageID"] = self.new_id()
        await self.send(frame)
        return await self.reply(frame["messageID"], timeout)

    async def reply(self, message_id: Any, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The ack or error carrying ``message_id`` (already received or still to come)."""

        def match(item: Frame | bytes | str) -> bool:
            return (
                isinstance(item, dict)
                and item.get("type") in REPLY_TYPES
                and "messageID" in item
                and item["messageID"] == message_id
                and type(item["messageID"]) is type(message_id)
            )

        return await self._wait_for(match, timeout, f"reply to messageID {message_id!r}")

    async def next_reply(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next ack or error, whatever its messageID."""
        return await self._wait_for(
            lambda f: isinstance(f, dict) and f.get("type") in REPLY_TYPES, timeout, "reply"
        )

    async def ok(self, frame: Frame, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """``request`` that must be acked."""
        reply = await self.request(frame, timeout)
        if reply.get("type") != "ack":
            raise ProtocolError(f"expected an ack to {frame!r}, got {reply!r}")
        return reply

    # -- protocol shortcuts -----------------------------------------------------------------
    async def connect(
        self, connection_id: str, timeout: float = DEFAULT_TIMEOUT, **fields: Any
    ) -> Frame:
        ack = await self.ok(
            {"type": "connect", "connectionID": connection_id, **fields}, timeout=timeout
        )
        self.connection_id = connection_id
        return ack

    async def subscribe(self, room: str, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        return await self.ok({"type": "subscribe", "roomID": room}, timeout)

    async def unsubscribe(self, room: str, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        return await self.ok({"type": "unsubscribe", "roomID": room}, timeout)

    async def publish(self, room: str, payload: Any, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        return await self.ok({"type": "message", "roomID": room, "payload": payload}, timeout)

    async def disconnect(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        return await self.ok({"type": "disconnect"}, timeout)

    # -- what the server pushes -------------------------------------------------------------
    async def next_frame(
        self,
        types: str | Iterable[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        room: str | None = None,
    ) -> Frame:
        """The next pushed (non-reply) frame, optionally of the given type(s) / room."""
        wanted = {types} if isinstance(types, str) else set(types) if types is not None else None

        def match(item: Frame | bytes | str) -> bool:
            if not isinstance(item, dict) or item.get("type") in REPLY_TYPES:
                return False
            if wanted is not None and item.get("type") not in wanted:
                return False
            return room is None or item.get("roomID") == room

        what = f"frame of type {sorted(wanted) if wanted else 'any'}"
        if room is not None:
            what += f" in room {room!r}"
        return await self._wait_for(match, timeout, what)

    async def next_message(
        self, timeout: float = DEFAULT_TIMEOUT, room: str | None = None
    ) -> Frame:
        """The next relayed room message (``{"type": "message", ...}``)."""
        return await self.next_frame("message", timeout, room)

    async def messages(
        self, count: int, timeout: float = DEFAULT_TIMEOUT, room: str | None = None
    ) -> list[Frame]:
        """``count`` room messages; ``timeout`` is per message."""
        return [await self.next_message(timeout, room) for _ in range(count)]

    def pending(self, types: str | Iterable[str] | None = None) -> list[Frame | bytes | str]:
        """Frames received and not consumed yet (of the given types)."""
        if types is None:
            return list(self._pending)
        wanted = {types} if isinstance(types, str) else set(types)
        return [f for f in self._pending if isinstance(f, dict) and f.get("type") in wanted]

    async def expect_nothing(
        self, seconds: float = 1.0, types: str | Iterable[str] | None = ("message",)
    ) -> None:
        """Fail if a frame of ``types`` (every pushed type with None) arrives within ``seconds``.

        Frames already pending count too.
        """
        wanted = {types} if isinstance(types, str) else set(types) if types is not None else None

        def match(item: Frame | bytes | str) -> bool:
            if not isinstance(item, dict):
                return True
            if item.get("type") in REPLY_TYPES:
                return False
            return wanted is None or item.get("type") in wanted

        try:
            got = await self._wait_for(match, seconds, "nothing")
        except TimeoutError:
            return
        except ProtocolError:  # closed: nothing more can come
            return
        raise ProtocolError(f"expected nothing within {seconds}s, got {got!r}")

    # -- closing ----------------------------------------------------------------------------
    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Wait until the server closes the socket; return the close code."""
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"socket to {self.url} still open after {timeout}s") from None
        return self.close_code

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close cleanly (bounded) and stop the reader."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, reason), 10)
        await self._stop_reader()

    async def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a crashed client)."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        if not self._reader.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
                with contextlib.suppress(BaseException):
                    await self._reader
