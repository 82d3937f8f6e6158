"""The frames on their way to one socket.

A room message is fanned out to every local socket. Awaiting each socket's ASGI ``send`` in turn
would let one slow socket hold up the others on servers whose ``send`` waits for the socket to
drain; a task per socket per message would cost more than the send itself on servers whose
``send`` never waits (daphne hands the frame to Twisted and returns).

So an outbox steps the server's ``send`` coroutine once, inline. If it finishes, nothing more is
needed (daphne, always). If it suspends, the rest of that send and every later frame for the socket
go to a task of the socket's own, in order, and the caller moves on to the next socket at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Outbox:
    __slots__ = ("_backlog", "_send", "_task")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._backlog: deque[dict[str, Any]] | None = None  # None: nothing is waiting
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Frames waiting behind a send that has not finished."""
        return 0 if self._backlog is None else len(self._backlog) + 1

    def push(self, message: dict[str, Any]) -> None:
        """Send ``message`` now if the server takes it at once, else queue it, in order."""
        if self._backlog is not None:
            self._backlog.append(message)
            return
        awaitable = self._send(message)
        if not inspect.iscoroutine(awaitable):
            self._start(asyncio.ensure_future(awaitable), None)
            return
        try:
            waiting_on = awaitable.send(None)
        except StopIteration:
            return
        except Exception:
            logger.exception("sending to a socket failed")
            return
        self._start(awaitable, waiting_on)

    def _start(self, awaitable: Any, waiting_on: Any) -> None:
        self._backlog = deque()
        self._task = asyncio.ensure_future(self._drain(awaitable, waiting_on))

    async def _drain(self, first: Any, waiting_on: Any) -> None:
        try:
            if inspect.iscoroutine(first):
                await _finish(first, waiting_on)
            else:
                await first
            while self._backlog:
                await self._send(self._backlog.popleft())
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sending to a socket failed")
        finally:
            self._backlog = None
            self._task = None

    async def flush(self) -> None:
        """Wait until every queued frame was handed to the server."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """Drop what is queued (the socket is gone)."""
        if self._task is not None:
            self._task.cancel()


async def _finish(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
    """Drive a coroutine that was stepped once and suspended on ``waiting_on`` to its end.

    This is what an asyncio Task does: wait for the future the coroutine yielded, then resume
    it; the coroutine reads the future's outcome (result, exception, cancellation) itself.
    """
    while True:
        if waiting_on is None:  # a bare yield, as in asyncio.sleep(0)
            await asyncio.sleep(0)
        else:
            # The coroutine's ``await`` marked the future as yielded to a task; a Task clears
            # that mark when it takes the future, and so must we, or awaiting it here raises
            # "await wasn't used with future" (C futures) and the frames are lost.
            if getattr(waiting_on, "_asyncio_future_blocking", False):
                waiting_on._asyncio_future_blocking = False
            try:
                await waiting_on
            except BaseException:
                if not waiting_on.done():  # we were cancelled: cancel what it waits for
                    waiting_on.cancel()
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
