"""The room messages a client received and its reader has not taken yet, duplicates dropped."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator

from ._errors import Frame, ThinWSError

SEEN_MESSAGE_IDS = 4096  # how many server message ids are remembered to drop duplicates
_END: Frame = {}  # the end of the stream


class Inbox:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Frame] = asyncio.Queue()
        self._seen: OrderedDict[str | int, None] = OrderedDict()
        self._error: ThinWSError | None = None

    def is_new(self, frame: Frame) -> bool:
        """False for a message whose server id came before (a duplicate after a reconnect, or
        one delivered through two sockets); remembers the id."""
        server_id = frame.get("messageID")
        if not isinstance(server_id, str | int):
            return True
        if server_id in self._seen:
            return False
        self._seen[server_id] = None
        if len(self._seen) > SEEN_MESSAGE_IDS:
            self._seen.popitem(last=False)
        return True

    def put(self, frame: Frame) -> None:
        self._queue.put_nowait(frame)

    def end(self, error: ThinWSError | None) -> None:
        """No more messages: iterators stop, raising ``error`` if one is given."""
        self._error = error
        self._queue.put_nowait(_END)

    def reopen(self) -> None:
        """Start a new stream (after ``end``); the remembered ids stay."""
        self._queue = asyncio.Queue()
        self._error = None

    async def __aiter__(self) -> AsyncIterator[Frame]:
        queue = self._queue
        while True:
            item = await queue.get()
            if item is _END:
                queue.put_nowait(_END)  # for other iterators
                if self._error is not None:
                    raise self._error
                return
            yield item
