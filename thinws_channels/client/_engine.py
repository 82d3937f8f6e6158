"""The engine under ThinWSClient: the task that opens sockets (``_establish``), reads them
(``_dispatch``, ``_reply``) and applies the close table of docs/protocol.md (``_after_close``)
until the client stops (``_finish``). ThinWSClient (``_core``) adds the public calls and sets
every attribute declared here in its ``__init__``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from thinws_channels.protocol import CloseCode, ErrorCode

from ._calls import Calls
from ._errors import Frame, ThinWSClosed, ThinWSError
from ._events import CloseInfo, Emitter, EventName, ReconnectInfo
from ._inbox import Inbox
from ._retry import Attempts, RetryPolicy, reconnects_after
from ._wire import FATAL_CONNECT_ERRORS, TokenProvider, fetch_token, open_session

logger = logging.getLogger("thinws_channels.client")

State = Literal["idle", "connecting", "open", "reconnecting", "closed"]
# Errors with "messageID": null that answer no frame; the server closes the socket right after.
UNSOLICITED_FATAL = frozenset(
    {ErrorCode.FORBIDDEN, ErrorCode.LIMIT_EXCEEDED, ErrorCode.NOT_CONNECTED}
)


class Engine:
    # Options (see ThinWSClient).
    urls: list[str]
    connection_id: str
    token: str | None
    token_provider: TokenProvider | None
    origin: str | None
    headers: dict[str, str]
    connect_timeout: float
    reconnect: bool
    retry: RetryPolicy
    buffer_messages: bool
    # State.
    url: str | None  # the URL of the current (or last) socket
    connect_ack: Frame | None  # the ack of the last connect
    _state: State
    _rooms: dict[str, None]  # an ordered set
    _calls: Calls
    _events: Emitter
    _inbox: Inbox
    _url_index: int  # the URL of the next attempt, modulo len(urls)
    _opens: int  # connect acks so far
    _ws: ClientConnection | None
    _task: asyncio.Task[None] | None  # the engine's task (_run)
    _first: asyncio.Future[Frame] | None  # what connect() waits for
    _fatal: ThinWSError | None  # the unsolicited error before a close
    _stopping: bool  # close() or disconnect() was called: no reconnect
    _stop_error: ThinWSError | None

    # -- the connection loop -----------------------------------------------------------------
    async def _run(self) -> None:
        at_once, refused = True, False
        try:
            while True:
                ws = await self._establish(at_once, refused)
                if isinstance(ws, ThinWSError):
                    self._finish(ws)
                    return
                code, reason = await self._read(ws)
                after = self._after_close(code, reason)
                if after is None:
                    return
                at_once, refused = after
        except Exception as exc:  # a bug: stop visibly rather than hang
            logger.exception("the ThinWS client %r failed", self.connection_id)
            self._finish(ThinWSError("internal", f"the client failed: {exc!r}"))

    async def _establish(self, at_once: bool, refused: bool) -> ClientConnection | ThinWSError:
        """Connect attempts until one is acked (returns its socket, the queue flushed) or the
        client must stop (returns why). ``refused``: a 4001 was just met."""
        limit = self.retry.max_attempts if self.reconnect else len(self.urls)
        attempts = Attempts(self.retry, self.urls, at_once=at_once, limit=limit)
        while True:
            delay = attempts.next_delay(backoff=self.reconnect)
            left = attempts.left()
            if left is not None and delay >= left:  # it would start too late: give up on time
                await asyncio.sleep(left)
                return attempts.error()
            if attempts.failures or self._state != "connecting":
                self._emit(
                    "reconnecting", ReconnectInfo(attempt=attempts.failures + 1, delay=delay)
                )
            await asyncio.sleep(delay)
            left = attempts.left()
            seconds = self.connect_timeout if left is None else min(self.connect_timeout, left)
            tried = self.urls[self._url_index % len(self.urls)]
            try:
                ws, ack, url = await self._attempt(seconds)
            except ThinWSError as exc:  # refused by the server, or the token_provider failed
                logger.info("connect to %s refused: %s", tried, exc)
                self._emit("error", exc)
                if exc.code == ErrorCode.FORBIDDEN:
                    if self.token_provider is None or refused:
                        return exc
                    refused = attempts.at_once = True  # once more, with a fresh token, now
                elif exc.code in FATAL_CONNECT_ERRORS:
                    return exc
                error: BaseException = exc
            except (OSError, InvalidHandshake, ConnectionClosed) as exc:  # TimeoutError too
                logger.info("connect to %s failed: %r", tried, exc)
                error = exc
            else:
                await self._opened(ws, ack, url)
                return ws
            if attempts.failed(error):
                return attempts.error()

    async def _attempt(self, seconds: float) -> tuple[ClientConnection, Frame, str]:
        """One socket to the next URL, its connect acked within ``seconds``."""
        url = self.urls[self._url_index % len(self.urls)]
        self._url_index += 1
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                token = await fetch_token(self.token, self.token_provider)
        except TimeoutError:
            raise TimeoutError(f"the token_provider gave no token within {seconds:g} s") from None
        frame: Frame = {"type": "connect", "messageID": self._calls.next_id()}
        frame["connectionID"] = self.connection_id
        if token is not None:
            frame["token"] = token
        ws, ack = await open_session(
            url, frame, origin=self.origin, headers=self.headers, deadline=deadline
        )
        return ws, ack, url

    async def _opened(self, ws: ClientConnection, ack: Frame, url: str) -> None:
        self._ws, self.url, self.connect_ack, self._fatal = ws, url, ack, None
        self._rooms = dict.fromkeys(r for r in ack.get("rooms") or [] if isinstance(r, str))
        await self._calls.flush(ws)  # the state is not "open" yet: new calls join the queue
        reconnected, self._opens = self._opens > 0, self._opens + 1
        self._set_state("open")
        self._emit("open", {**ack, "reconnected": reconnected})
        if self._first is not None and not self._first.done():
            self._first.set_result(ack)

    async def _read(self, ws: ClientConnection) -> tuple[int, str]:
        try:
            async for raw in ws:
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        return ws.close_code or 1006, ws.close_reason or ""

    def _after_close(self, code: int, reason: str) -> tuple[bool, bool] | None:
        """Apply the close table; returns (reconnect at once, after a 4001), or None: stop."""
        self._ws = None
        fatal, self._fatal = self._fatal, None
        again = self.reconnect and not self._stopping
        again = again and reconnects_after(code, has_token_provider=self.token_provider is not None)
        self._calls.after_drop(code, requeue=again)
        self._emit("close", CloseInfo(code=code, reason=reason, will_reconnect=again))
        refused = code == CloseCode.REFUSED
        if again:
            self._set_state("reconnecting")
            return code == CloseCode.GOING_AWAY or refused, refused
        if self._stopping or code == CloseCode.NORMAL:
            self._finish(None)
        elif refused:
            self._finish(fatal or ThinWSError("forbidden", "the server closed with 4001"))
        else:
            why = f"the socket closed with {code} {reason}".rstrip()
            self._finish(ThinWSClosed(f"{why}, and reconnect is off", close_code=code))
        return None

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        kind, room = frame.get("type"), frame.get("roomID")
        if kind in ("ack", "error"):
            self._reply(frame)
        elif kind == "message" and self._inbox.is_new(frame):
            self._emit("message", frame)
            if self.buffer_messages:
                self._inbox.put(frame)
        elif kind == "subscribed" and isinstance(room, str):
            self._rooms[room] = None
        elif kind == "unsubscribed" and isinstance(room, str):
            self._rooms.pop(room, None)

    def _reply(self, frame: Frame) -> None:
        error = frame["type"] == "error"
        if error and frame.get("messageID") is None and frame.get("code") in UNSOLICITED_FATAL:
            self._fatal = ThinWSError.from_frame(frame)  # a close follows at once
            self._emit("error", self._fatal)
            return
        call = self._calls.take(frame)
        if call is None:
            if error:  # a reply to no waiting call (one that timed out, say)
                self._emit("error", ThinWSError.from_frame(frame))
            return
        kind, room = call.frame["type"], str(call.frame.get("roomID"))
        if error:
            if not (
                call.resent and kind == "unsubscribe" and frame.get("code") == "not_subscribed"
            ):
                call.future.set_exception(ThinWSError.from_frame(frame))
                return
            # An unsubscribe sent again after a drop: the first one went through.
            frame = {"type": "ack", "messageID": frame.get("messageID")}
        if kind == "subscribe":
            self._rooms[room] = None
        elif kind == "unsubscribe":
            self._rooms.pop(room, None)
        call.future.set_result(frame)

    def _finish(self, error: ThinWSError | None) -> None:
        """The client stops for good (until connect() again): fail what waits, end messages()."""
        if self._state == "closed":
            return
        self._stop_error = error
        self._calls.fail_all(error or ThinWSClosed("the client was closed"))
        self._inbox.end(error)
        if self._first is not None and not self._first.done():
            self._first.set_exception(error or ThinWSClosed("closed before it connected"))
            self._first.exception()  # connect() may be gone: no "never retrieved" warning
        self._set_state("closed")

    def _set_state(self, state: State) -> None:
        if state != self._state:
            self._state = state
            self._emit("state", state)

    def _emit(self, event: EventName, argument: Any) -> None:
        self._events.emit(event, argument)
