"""The calls of a client that wait for something: a reply (``pending``, in the order sent, each
with its ``request_timeout`` timer) or a socket (``queue``, the offline queue, in call order)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ._errors import Frame, ThinWSDisconnected, ThinWSError, ThinWSTimeout
from ._wire import encode

# Calls that may be sent again when their socket dropped before the reply: the outcome is the
# same whether the first one went through or not (see Calls.after_drop).
IDEMPOTENT = ("subscribe", "unsubscribe")


@dataclass(eq=False)
class Call:
    frame: Frame  # as the caller made it, without a messageID (read for its type and room)
    text: str  # the frame as JSON, encoded once; each write puts a fresh messageID in front
    future: asyncio.Future[Frame]
    timer: asyncio.TimerHandle | None = None
    resent: bool = False  # written again after its first socket dropped


class Calls:
    def __init__(self, request_timeout: float, queue_limit: int) -> None:
        self.request_timeout = request_timeout
        self.queue_limit = queue_limit
        self.pending: OrderedDict[int, Call] = OrderedDict()
        self.queue: deque[Call] = deque()
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def new(self, frame: Frame) -> Call:
        """A call for ``frame`` (ValueError naming the payload when it is not JSON)."""
        return Call(frame, encode(frame), asyncio.get_running_loop().create_future())

    def enqueue(self, call: Call) -> None:
        if len(self.queue) >= self.queue_limit:
            raise ThinWSError(
                "queue_full",
                f"not connected, and {len(self.queue)} calls are queued already (queue_limit)",
            )
        self.queue.append(call)

    async def write(self, ws: ClientConnection, call: Call) -> None:
        """Send the call on ``ws``. It is pending from now on, even when the socket turns out to
        be closed: the client's reader sees that close and settles it (``after_drop``)."""
        message_id = self.next_id()
        self.pending[message_id] = call
        call.timer = asyncio.get_running_loop().call_later(
            self.request_timeout, self._expire, message_id
        )
        with contextlib.suppress(ConnectionClosed):
            # '{"type":...}' -> '{"messageID":7,"type":...}' (the frame always has its type)
            await ws.send(f'{{"messageID":{message_id},{call.text[1:]}')

    async def flush(self, ws: ClientConnection) -> None:
        """Send the queued calls in order; calls made meanwhile join the end of the queue."""
        while self.queue:
            call = self.queue.popleft()
            if not call.future.done():  # not cancelled by its caller
                await self.write(ws, call)

    def take(self, reply: Frame) -> Call | None:
        """The pending call an ``ack`` or ``error`` answers (no longer pending), or None."""
        message_id = reply.get("messageID")
        if message_id is None and reply.get("type") == "error":
            # The server replies in order: an error about a frame it could not read answers the
            # oldest call still waiting.
            message_id = next(iter(self.pending), None)
        if not isinstance(message_id, int):
            return None  # this client only sends integer ids
        call = self.pending.pop(message_id, None)
        if call is None:
            return None
        _cancel(call)
        return None if call.future.done() else call

    def after_drop(self, close_code: int, *, requeue: bool) -> None:
        """The socket closed: every pending call loses its reply. Subscribe and unsubscribe go
        back to the front of the queue, in order, when the client reconnects (``requeue``) and
        the queue has room; every other call raises ThinWSDisconnected."""
        calls = list(self.pending.values())
        self.pending.clear()
        back: list[Call] = []
        for call in calls:
            _cancel(call)
            room = len(back) + len(self.queue) < self.queue_limit
            if requeue and room and call.frame["type"] in IDEMPOTENT:
                call.resent = True
                back.append(call)
            else:
                _fail(call, lost(call, f"the socket closed ({close_code})", close_code))
        self.queue.extendleft(reversed(back))

    def fail_all(self, queued_error: ThinWSError, close_code: int | None = None) -> None:
        """The client stops: pending calls lost their reply, queued ones were never sent."""
        for call in self.pending.values():
            _cancel(call)
            _fail(call, lost(call, "the client closed", close_code))
        for call in self.queue:
            _fail(call, queued_error)
        self.pending.clear()
        self.queue.clear()

    def _expire(self, message_id: int) -> None:
        call = self.pending.pop(message_id, None)
        if call is not None and not call.future.done():
            kind = call.frame["type"]
            call.future.set_exception(
                ThinWSTimeout(
                    f"no reply to {kind!r} (messageID {message_id}) within "
                    f"{self.request_timeout:g} s"
                )
            )


def lost(call: Call, what: str, close_code: int | None) -> ThinWSDisconnected:
    kind = call.frame["type"]
    unknown = ": it may or may not have been published" if kind == "message" else ""
    return ThinWSDisconnected(
        f"{what} before the reply to {kind!r} came{unknown}", close_code=close_code
    )


def _cancel(call: Call) -> None:
    if call.timer is not None:
        call.timer.cancel()
        call.timer = None


def _fail(call: Call, error: ThinWSError) -> None:
    if not call.future.done():
        call.future.set_exception(error)
        call.future.exception()  # its caller may be gone: no "never retrieved" warning
