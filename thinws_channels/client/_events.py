"""Event listeners of the client: ``client.on(event, callback)``.

A listener is a plain function or a coroutine function; it gets one argument (see EVENTS). A
coroutine is run as a task of its own, so a slow listener never holds up the socket. A listener
that raises is logged (logger ``thinws_channels.client``) and the others still run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal, TypedDict

logger = logging.getLogger("thinws_channels.client")

EventName = Literal["open", "close", "reconnecting", "message", "error", "state"]
Listener = Callable[[Any], object]

# What each event's listener gets.
EVENTS: dict[str, str] = {
    "open": "the connect ack (rooms, connectionID, protocol, instance?) plus 'reconnected'",
    "close": "a CloseInfo: {'code', 'reason', 'will_reconnect'}",
    "reconnecting": "a ReconnectInfo: {'attempt', 'delay'} before each attempt but the first",
    "message": "the room message frame {'type', 'roomID', 'payload', 'connectionID', 'messageID'}",
    "error": "a ThinWSError: an error frame tied to no pending call, or a refused connect",
    "state": "the new state: 'connecting', 'open', 'reconnecting' or 'closed'",
}


class CloseInfo(TypedDict):
    code: int  # the WebSocket close code (1006 when the connection just dropped)
    reason: str
    will_reconnect: bool


class ReconnectInfo(TypedDict):
    attempt: int  # 1 for the first attempt after a drop or a failure, then 2, 3, ...
    delay: float  # seconds the client waits before that attempt


class Emitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {name: [] for name in EVENTS}
        self._tasks: set[asyncio.Task[Any]] = set()  # running coroutine listeners

    def on(self, event: str, listener: Listener) -> Callable[[], None]:
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}, expected one of: {', '.join(EVENTS)}")
        if not callable(listener):
            raise TypeError(f"a listener must be callable, got {listener!r}")
        self._listeners[event].append(listener)
        return lambda: self.off(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

    def emit(self, event: EventName, argument: Any) -> None:
        for listener in list(self._listeners[event]):
            try:
                result = listener(argument)
            except Exception:
                logger.exception("the %r listener %r failed", event, listener)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("an event listener failed", exc_info=task.exception())
