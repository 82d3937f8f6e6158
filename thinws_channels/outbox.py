"""The frames on their way to one socket.

A room message is fanned out to every local socket. Awaiting each socket's ASGI ``send`` in turn
would let one slow socket hold up the others on servers whose ``send`` waits for the socket to
drain; a task per socket per message would cost more than the send itself on servers whose
``send`` never waits (daphne hands the frame to Twisted and returns).

So an outbox steps the server's ``send`` coroutine once, inline. If it finishes, nothing more is
needed (daphne, always). If it suspends, the rest of that send and every later frame for the socket
go to a task of the socket's own, in order, and the caller moves on to the next socket at once.

A socket that does not keep up (its client reads too slowly, or not at all) must not make the
server's memory grow without bound. With ``max_buffer`` set, the outbox counts the bytes waiting
for the socket and calls ``on_overflow`` once when they pass it: the bytes in its own backlog on
servers whose ``send`` waits while the socket's buffer is full (uvicorn, hypercorn), and, on
daphne, whose ``send`` never waits, the bytes in the socket's Twisted transport buffer.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


def transport_buffer_probe(send: Any) -> Callable[[], int] | None:
    """For daphne's ``send``: a function that returns the bytes buffered for the socket.

    daphne hands each socket's application ``functools.partial(server.handle_reply, protocol)``
    and writes frames to the protocol's Twisted transport, which buffers without bound. channels'
    session middleware (in ``AuthMiddlewareStack``) wraps that ``send`` in a bound method of an
    object that keeps it as ``real_send``: unwrap those. Any other server, or a daphne that
    changes this, gets None (and its send's own backpressure counts).
    """
    for _ in range(8):  # middleware wraps send: channels' sessions keep the inner one
        if isinstance(send, functools.partial):
            break
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return None
        send = inner
    if not isinstance(send, functools.partial) or not send.args:
        return None
    transport = getattr(send.args[0], "transport", None)
    for _ in range(3):  # TLS wraps the TCP transport
        if transport is None or hasattr(transport, "_tempDataLen"):
            break
        transport = getattr(transport, "transport", None)
    if transport is None or not all(
        hasattr(transport, a) for a in ("_tempDataLen", "dataBuffer", "offset")
    ):
        return None
    tcp: Any = transport

    def buffered() -> int:
        return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen

    return buffered


def _size(message: dict[str, Any]) -> int:
    data = message.get("text") or message.get("bytes")
    return len(data) if data else 0


class Outbox:
    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_max_buffer",
        "_on_overflow",
        "_probe",
        "_send",
        "_task",
        "overflowed",
    )

    def __init__(
        self,
        send: Send,
        *,
        max_buffer: int | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._backlog: deque[dict[str, Any]] | None = None  # None: nothing is waiting
        self._backlog_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._max_buffer = max_buffer
        self._on_overflow = on_overflow
        self._probe = transport_buffer_probe(send) if max_buffer is not None else None
        self.overflowed = False

    @property
    def buffered(self) -> int:
        """Bytes waiting for the socket: in the backlog, and in daphne's transport buffer."""
        return self._backlog_bytes + (self._probe() if self._probe is not None else 0)

    @property
    def pending(self) -> int:
        """Frames waiting behind a send that has not finished."""
        return 0 if self._backlog is None else len(self._backlog) + 1

    def push(self, message: dict[str, Any]) -> None:
        """Send ``message`` now if the server takes it at once, else queue it, in order."""
        if self.overflowed:
            return
        if self._backlog is not None:
            self._backlog.append(message)
            self._backlog_bytes += _size(message)
            if self._max_buffer is not None and self._backlog_bytes > self._max_buffer:
                self._overflow()
            return
        awaitable = self._send(message)
        if not inspect.iscoroutine(awaitable):
            self._start(asyncio.ensure_future(awaitable), None)
            return
        try:
            waiting_on = awaitable.send(None)
        except StopIteration:
            probe = self._probe
            if probe is not None and probe() > self._max_buffer:  # type: ignore[operator]
                self._overflow()
            return
        except Exception:
            logger.exception("sending to a socket failed")
            return
        self._start(awaitable, waiting_on)

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        self._probe = None  # from now on nothing is measured: only the close is still sent
        if self._backlog is not None:
            self._backlog.clear()  # the frames are dropped: the socket is cut off
            self._backlog_bytes = 0
        if self._on_overflow is not None:
            self._on_overflow()

    def push_final(self, message: dict[str, Any]) -> None:
        """After an overflow: queue one last message (the close), behind nothing but the send
        in progress."""
        if self._backlog is not None:
            self._backlog.append(message)
            return
        self.overflowed = False
        self.push(message)
        self.overflowed = True

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
                message = self._backlog.popleft()
                self._backlog_bytes -= _size(message)
                await self._send(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sending to a socket failed")
        finally:
            self._backlog = None
            self._backlog_bytes = 0
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
