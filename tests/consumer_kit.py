"""Helpers for the tests that drive the real consumer in-process (WebsocketCommunicator on the
in-memory channel layer): test_consumer.py, test_signals.py, test_hub.py.

No mocks: the consumer, the hub, the store and the in-memory layer are the real ones; the
database is the test SQLite file (tests need ``transactional_db``, since the store runs in the
ORM thread of ``database_sync_to_async``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from thinws_channels.hub import Hub
from thinws_channels.routing import websocket_urlpatterns

PATH = "/ws/thinws/"
TIMEOUT = 3.0  # every wait for a frame is bounded by this
QUIET = 0.2  # how long "nothing arrives" is watched for

# The app as a project routes it.
application = URLRouter(websocket_urlpatterns)


class Client:
    """One socket to the consumer, speaking ThinWS frames as dicts."""

    def __init__(
        self,
        app: Any = None,
        *,
        user: Any = None,
        client: tuple[str, int] | None = ("127.0.0.1", 50000),
    ) -> None:
        self.comm = WebsocketCommunicator(app or application, PATH)
        if user is not None:
            self.comm.scope["user"] = user
        if client is not None:
            self.comm.scope["client"] = list(client)
        self._ids = itertools.count(1)
        self.closed = False

    async def open(self) -> Client:
        accepted, _ = await self.comm.connect(timeout=TIMEOUT)
        assert accepted, "the consumer refused the WebSocket"
        return self

    # Sending ---------------------------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    async def send(self, type_: str, **fields: Any) -> Any:
        """Send one frame with a fresh integer messageID (unless given); return the messageID."""
        frame: dict[str, Any] = {"type": type_, **fields}
        frame.setdefault("messageID", self.next_id())
        await self.comm.send_json_to(frame)
        return frame["messageID"]

    async def send_raw(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.comm.send_to(bytes_data=data)

    # Receiving -------------------------------------------------------------------------------

    async def recv(self, within: float = TIMEOUT) -> dict[str, Any]:
        return await self.comm.receive_json_from(timeout=within)

    async def recv_raw(self, within: float = TIMEOUT) -> dict[str, Any]:
        """The next ASGI message the consumer sent (websocket.send or websocket.close)."""
        return await self.comm.receive_output(timeout=within)

    async def recv_many(self, count: int, within: float = TIMEOUT) -> list[dict[str, Any]]:
        return [await self.recv(within) for _ in range(count)]

    async def nothing(self, within: float = QUIET) -> bool:
        """True when no frame arrives ``within`` seconds."""
        return await self.comm.receive_nothing(timeout=within)

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a frame and return its reply (the next frame; fails if it is not the reply)."""
        message_id = await self.send(type_, **fields)
        reply = await self.recv()
        assert reply.get("type") in ("ack", "error"), f"expected the reply, got {reply}"
        assert reply["messageID"] == message_id, (message_id, reply)
        return reply

    async def settle(self) -> None:
        """Return once the consumer finished every frame sent before (signals included).

        Replies go out before a handler's last steps (signals); a frame that touches nothing
        (an unknown type) is answered only after the handlers of the frames before it ended.
        """
        reply = await self.request("thinws-test-sync")
        assert reply["type"] == "error" and reply["code"] == "unknown_type", reply

    async def ok(self, type_: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request(type_, **fields)
        assert reply["type"] == "ack", reply
        return reply

    async def connect(self, connection_id: str, **fields: Any) -> dict[str, Any]:
        return await self.ok("connect", connectionID=connection_id, **fields)

    async def subscribe(self, room_id: str) -> dict[str, Any]:
        return await self.ok("subscribe", roomID=room_id)

    async def unsubscribe(self, room_id: str) -> dict[str, Any]:
        return await self.ok("unsubscribe", roomID=room_id)

    async def publish(self, room_id: str, payload: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Publish and return (ack, own echo): the echo may come before or after the ack."""
        message_id = await self.send("message", roomID=room_id, payload=payload)
        frames = await self.recv_many(2)
        acks = [f for f in frames if f["type"] == "ack"]
        echoes = [f for f in frames if f["type"] == "message"]
        assert len(acks) == 1 and len(echoes) == 1, frames
        assert acks[0]["messageID"] == message_id, frames
        return acks[0], echoes[0]

    async def close(self) -> None:
        """The socket drops (websocket.disconnect), and the consumer finishes."""
        if not self.closed:
            self.closed = True
            await self.comm.disconnect(timeout=TIMEOUT)


class Clients:
    """Opens clients and closes every one at teardown, so each test ends with the hub stopped."""

    def __init__(self) -> None:
        self.made: list[Client] = []

    async def __call__(self, connection_id: str | None = None, **kwargs: Any) -> Client:
        client = await Client(**kwargs).open()
        self.made.append(client)
        if connection_id is not None:
            client.connect_ack = await client.connect(connection_id)  # type: ignore[attr-defined]
        return client

    def adopt(self, client: Client) -> Client:
        self.made.append(client)
        return client

    async def close_all(self) -> None:
        for client in self.made:
            await client.close()


def layer() -> Any:
    return get_channel_layer()


def hub() -> Hub:
    """This event loop's hub (the one the consumers of this test use)."""
    return Hub.for_loop()


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], within: float = TIMEOUT
) -> None:
    """Poll ``predicate`` until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


def db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run a sync ORM function from async test code."""
    return database_sync_to_async(fn)


def dumps(value: Any) -> str:
    return json.dumps(value)
