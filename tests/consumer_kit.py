"""Helpers for the tests that drive the real consumer in-process (WebsocketCommunicator):
test_consumer.py, test_signals.py, test_hub.py.

No mocks: the consumer, the hub, the store and the channel layer are the real ones; the
database is the test SQLite file (tests need ``transactional_db``, since the store runs in the
ORM thread of ``database_sync_to_async``). The layer is the in-memory one of tests/settings.py,
or one of the two channels-redis layers on the private redis-server of the ``redis_server``
fixture, put in place with ``override_settings(CHANNEL_LAYERS=channel_layers_setting(...))``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
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


# Channel layers ------------------------------------------------------------------------------

# The layers the protocol tests run on: "memory" is tests/settings.py's InMemoryChannelLayer,
# "pubsub" channels_redis.pubsub.RedisPubSubChannelLayer, "core" channels_redis.core's
# RedisChannelLayer (configured as demo_project configures them).
LAYER_KINDS = ("memory", "pubsub", "core")


def channel_layers_setting(
    kind: str, redis_url: str | None = None, prefix: str = "asgi"
) -> dict[str, Any]:
    """A CHANNEL_LAYERS setting whose "default" layer is of ``kind``.

    ``prefix`` keeps the Redis layers of one test apart from everything else on the server:
    the core layer's keys and the pub/sub layer's channels all start with it (pub/sub channels
    are not scoped by database number, so a database of its own would not be enough).
    """
    if kind == "memory":
        return {
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 10_000},
            }
        }
    assert redis_url, f"the {kind!r} layer needs a redis URL"
    if kind == "pubsub":
        return {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [redis_url], "prefix": prefix},
            }
        }
    if kind == "core":
        return {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_url], "prefix": prefix, "capacity": 10_000},
            }
        }
    raise ValueError(f"layer kind must be one of {LAYER_KINDS}, not {kind!r}")


def layer_kind() -> str:
    current = layer()
    if isinstance(current, InMemoryChannelLayer):
        return "memory"
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    if isinstance(current, RedisPubSubChannelLayer):
        return "pubsub"
    if isinstance(current, RedisChannelLayer):
        return "core"
    raise TypeError(f"no helpers for the channel layer {current!r}")


def _redis_client(url: str) -> Any:
    from redis import asyncio as aioredis

    return aioredis.Redis.from_url(url)  # use as "async with": closed with its pool


async def layer_groups(*, applied: bool = False) -> set[str]:
    """The groups that have a member on the current layer, as the layer keeps them.

    memory: the layer's dict. core: the group sorted sets in Redis (``group_add`` and
    ``group_discard`` return after Redis applied them). pubsub: the process's subscriptions in
    the layer; with ``applied``, the group channels Redis has a subscriber for instead (Redis
    applies a SUBSCRIBE or UNSUBSCRIBE a moment after the layer wrote it: poll for those).
    """
    kind, current = layer_kind(), layer()
    if kind == "memory":
        return set(current.groups)
    if kind == "core":
        start = f"{current.prefix}:group:"
        async with _redis_client(current.hosts[0]["address"]) as client:
            keys = await client.keys(start + "*")
        return {key.decode()[len(start) :] for key in keys}
    loop_layer = current._get_layer()
    start = loop_layer._get_group_channel_name("")
    if not applied:
        names = set(loop_layer.groups)
        for shard in loop_layer._shards:
            names |= {n for n in shard._subscribed_to if n.startswith(start)}
    else:
        async with _redis_client(current._kwargs["hosts"][0]) as client:
            names = {n.decode() for n in await client.pubsub_channels(start + "*")}
    return {name[len(start) :] for name in names}


async def assert_layer_left(group: str) -> None:
    """The process (its hub) is out of ``group``, in its own state and on the layer."""
    assert group not in hub()._groups
    assert group not in await layer_groups()

    async def applied() -> bool:
        return group not in await layer_groups(applied=True)

    await wait_until(applied)


async def assert_layer_has_no_groups() -> None:
    """Nothing of the process is left in any group (after its hub stopped)."""
    assert await layer_groups() == set()

    async def applied() -> bool:
        return await layer_groups(applied=True) == set()

    await wait_until(applied)


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
