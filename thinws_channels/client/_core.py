"""ThinWSClient, the public face of the client: options, what it knows, and the calls. The
socket work is done by the engine it extends (``_engine.Engine``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ._calls import Calls
from ._engine import Engine, State
from ._errors import Frame, ThinWSClosed, ThinWSError
from ._events import CloseInfo, Emitter, Listener
from ._inbox import Inbox
from ._retry import RetryPolicy
from ._wire import MAX_QUEUE_LIMIT, TokenProvider, check_url, encode


class ThinWSClient(Engine):
    """One connectionID over a series of sockets; see the package documentation."""

    def __init__(
        self,
        url: str | Sequence[str],
        connection_id: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        queue_limit: int = MAX_QUEUE_LIMIT,
        reconnect: bool = True,
        max_attempts: int | None = None,
        give_up_after: float | None = None,
        buffer_messages: bool = True,
    ) -> None:
        self.urls = [check_url(url)] if isinstance(url, str) else [check_url(u) for u in url]
        if not self.urls:
            raise ValueError("url must be a URL or a non-empty list of URLs, got an empty list")
        if not isinstance(connection_id, str) or not connection_id:
            raise ValueError(f"connection_id must be a non-empty string, got {connection_id!r}")
        encode({"connectionID": connection_id})  # no lone surrogates
        if not (isinstance(queue_limit, int) and 0 <= queue_limit <= MAX_QUEUE_LIMIT):
            raise ValueError(
                f"queue_limit must be 0..{MAX_QUEUE_LIMIT} (the server closes a socket that "
                f"sends ~90 frames at once), got {queue_limit!r}"
            )
        for name, value in (
            ("request_timeout", request_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be above 0 seconds, got {value!r}")
        self.retry = RetryPolicy(
            backoff_initial, backoff_max, backoff_factor, max_attempts, give_up_after
        )
        self.connection_id = connection_id
        self.token = token
        self.token_provider = token_provider
        self.origin = origin
        self.headers = dict(headers or {})
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.buffer_messages = buffer_messages
        self.url = None
        self.connect_ack = None
        self._state = "idle"
        self._rooms = {}
        self._calls = Calls(request_timeout, queue_limit)
        self._events = Emitter()
        self._inbox = Inbox()
        self._url_index = 0
        self._opens = 0
        self._ws = None
        self._task = None
        self._first = None
        self._fatal = None
        self._stopping = False
        self._stop_error = None

    # -- what the client knows ---------------------------------------------------------------
    @property
    def state(self) -> State:
        """``idle`` (before connect()), ``connecting`` (until the first connect ack), ``open``,
        ``reconnecting``, ``closed``."""
        return self._state

    @property
    def connected(self) -> bool:
        return self._state == "open"

    @property
    def rooms(self) -> list[str]:
        """The rooms this connectionID is in, in the order they were joined."""
        return list(self._rooms)

    @property
    def instance(self) -> str | None:
        """The server instance of the last connect ack (its ``INSTANCE_NAME``), or None."""
        name = (self.connect_ack or {}).get("instance")
        return name if isinstance(name, str) else None

    @property
    def queued(self) -> int:
        """How many calls wait for a socket (the offline queue)."""
        return len(self._calls.queue)

    @property
    def pending(self) -> int:
        """How many calls were sent and wait for their reply."""
        return len(self._calls.pending)

    def on(self, event: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(argument)`` on each ``event`` (see the docs); returns the remover."""
        return self._events.on(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        self._events.off(event, listener)

    # -- calls -------------------------------------------------------------------------------
    async def __aenter__(self) -> ThinWSClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> Frame:
        """Connect and return the connect ack. With ``reconnect`` on, retries with backoff until
        an ack, a refusal, or ``max_attempts`` / ``give_up_after``; else tries each URL once."""
        if self._state not in ("idle", "closed"):
            raise ThinWSError("already_connected", f"connect() was called already: {self._state}")
        if self._state == "closed":
            self._inbox.reopen()
        self._stopping, self._stop_error, self._fatal = False, None, None
        first = self._first = asyncio.get_running_loop().create_future()
        self._set_state("connecting")
        self._task = asyncio.create_task(self._run(), name=f"thinws-client {self.connection_id}")
        try:
            return await asyncio.shield(first)
        except asyncio.CancelledError:
            await self.close()
            raise

    async def subscribe(self, room_id: str) -> Frame:
        """Join the room (stored for the connectionID); returns the ack."""
        return await self._call({"type": "subscribe", "roomID": room_id})

    async def unsubscribe(self, room_id: str) -> Frame:
        """Leave the room; returns the ack."""
        return await self._call({"type": "unsubscribe", "roomID": room_id})

    async def publish(self, room_id: str, payload: Any) -> str:
        """Publish ``payload`` (any JSON value) to the room; returns the server's message id."""
        ack = await self._call({"type": "message", "roomID": room_id, "payload": payload})
        return str(ack.get("id"))

    async def disconnect(self) -> None:
        """Leave every room on this socket (they stay stored), close, do not reconnect."""
        if self._state != "open":
            await self.close()
            return
        self._stopping = True
        try:
            await self._call({"type": "disconnect"})
            if self._task is not None:  # the server closes with 1000 after the ack
                await asyncio.wait([self._task], timeout=self.request_timeout)
        except ThinWSClosed:
            pass  # the socket went away first: it is closed all the same
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop reconnecting and close the socket; waiting calls raise ThinWSClosed (those
        already sent ThinWSDisconnected). Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
            code, reason = ws.close_code or 1000, ws.close_reason or ""
            self._emit("close", CloseInfo(code=code, reason=reason, will_reconnect=False))
        self._finish(None)

    async def messages(self) -> AsyncIterator[Frame]:
        """Room messages, duplicates dropped, buffered from connect() on. Ends when the client
        closes; raises the error that stopped it, if one did. Meant for one reader."""
        if not self.buffer_messages:
            raise RuntimeError("messages() needs buffer_messages=True; use on('message', ...)")
        async for message in self._inbox:
            yield message

    async def _call(self, frame: Frame) -> Frame:
        call = self._calls.new(frame)  # a payload that is not JSON fails here, with a ValueError
        if self._state == "closed":
            raise self._stop_error or ThinWSClosed("the client is closed")
        if self._state == "idle":
            raise ThinWSError("not_connected", "call connect() first (or use 'async with')")
        if self._state != "open" or self._ws is None:
            self._calls.enqueue(call)
            return await call.future
        try:
            await self._calls.write(self._ws, call)
        except asyncio.CancelledError:
            call.future.cancel()  # its reply, when it comes, goes nowhere
            raise
        return await call.future
