"""One hub per event loop: the process's side of the channel layer.

The hub knows which local sockets are in which room and which local sockets share a
connectionID. It joins a room's channel-layer group once for the whole process, through a channel
of its own, and fans each room message out to its local sockets; the frame was encoded once by the
sender, so a delivery costs one hand-over per socket. It leaves a group when its last local member
leaves, refreshes its memberships before the layer's ``group_expiry``, and writes a heartbeat so
the admin can tell who is online.

It starts with the first socket that sends ``connect`` and stops when the last one is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from channels.layers import get_channel_layer
from redis.exceptions import ConnectionError as RedisConnectionError

from . import events, protocol, store
from .conf import conf

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)

# At most this many channel-layer calls of one process are in flight at once. redis-py's
# connection pool (which RedisChannelLayer uses, one connection per call in flight) holds 100
# connections and raises "Too many connections" past that instead of waiting; a hundred sockets
# publishing at the same moment would get ``unavailable`` without this bound.
LAYER_CALLS_IN_FLIGHT = 64

# Seconds before a subscribe probe that did not come back is published again (then doubling,
# up to half a second), until SUBSCRIBE_PROBE_TIMEOUT.
PROBE_RESEND_INTERVAL = 0.1


class LocalSocket(Protocol):
    """What the hub needs of a consumer."""

    socket_id: str
    connection_id: str | None

    def deliver(self, message: dict[str, Any]) -> None: ...

    def connection_changed(self, kind: str, room_id: str) -> None: ...

    def revoke(self, reason: str) -> None: ...


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Hub]] = (
    weakref.WeakKeyDictionary()
)


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until every one ended, cancelling again while one runs on.

    One ``cancel()`` is not always enough: on Python 3.11, ``asyncio.wait_for`` drops a
    cancellation that arrives just as its inner future finishes, and redis-py (8, whose default
    ``socket_timeout`` is 5s) writes every command through it. The core layer's ``receive`` then
    misses the cancel and blocks on in BZPOPMIN, forever, and so would this wait.
    """
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    while pending:
        # As before, the caller's own cancellation does not cut the stop short.
        with contextlib.suppress(asyncio.CancelledError):
            _, pending = await asyncio.wait(pending, timeout=0.1)
        for task in pending:
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieve it: the loops log their own failures


def _session_key(socket: LocalSocket) -> str | None:
    session = getattr(socket, "scope", {}).get("session")
    return getattr(session, "session_key", None)


def _is_pubsub(layer: BaseChannelLayer) -> bool:
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # pragma: no cover - channels-redis is a dependency
        return False
    return isinstance(layer, RedisPubSubChannelLayer)


class Hub:
    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.layer: Any = None
        self.channel_name = ""
        self.instance_id: int | None = None
        self.rooms: dict[str, set[LocalSocket]] = {}
        self.connections: dict[str, set[LocalSocket]] = {}
        self.users: dict[str, set[LocalSocket]] = {}  # by user key (see user_key())
        self._sockets: set[LocalSocket] = set()
        self._groups: set[str] = set()  # the groups the hub's channel is in
        self._group_locks: dict[str, asyncio.Lock] = {}
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lifecycle = asyncio.Lock()
        self._layer_slots = asyncio.Semaphore(LAYER_CALLS_IN_FLIGHT)
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            events.ROOM_MESSAGE: self._on_room_message,
            events.CONNECTION_SUBSCRIBED: self._on_connection_change,
            events.CONNECTION_UNSUBSCRIBED: self._on_connection_change,
            events.CONNECTION_BOUND: self._on_connection_change,
            events.PROBE: self._on_probe,
            events.USER_REVOKED: self._on_user_revoked,
        }

    # Life cycle ------------------------------------------------------------------------------

    @classmethod
    def for_loop(cls, alias: str | None = None) -> Hub:
        alias = alias or conf.CHANNEL_LAYER
        per_loop = _hubs.setdefault(asyncio.get_running_loop(), {})
        if alias not in per_loop:
            per_loop[alias] = cls(alias)
        return per_loop[alias]

    @property
    def running(self) -> bool:
        return bool(self.channel_name)

    async def add_socket(self, socket: LocalSocket) -> None:
        """Start the hub if needed and register ``socket`` under its connectionID."""
        async with self._lifecycle:
            if not self.running:
                await self._start()
            self._sockets.add(socket)
        assert socket.connection_id is not None
        await self._join(
            self.connections,
            protocol.connection_group(socket.connection_id),
            socket.connection_id,
            socket,
        )

    async def add_user(self, socket: LocalSocket, user: Any) -> None:
        """Listen for the revocation of ``user``'s credentials (logout, password change)."""
        key = events.user_key(user)
        await self._join(self.users, protocol.user_group(key), key, socket)

    async def remove_socket(self, socket: LocalSocket) -> None:
        """Take ``socket`` out of every room; stop the hub after the last socket."""
        for room_id in [r for r, members in self.rooms.items() if socket in members]:
            await self.leave(room_id, socket)
        for key in [k for k, members in self.users.items() if socket in members]:
            await self._leave(self.users, protocol.user_group(key), key, socket)
        if socket.connection_id is not None:
            await self._leave(
                self.connections,
                protocol.connection_group(socket.connection_id),
                socket.connection_id,
                socket,
            )
        async with self._lifecycle:
            self._sockets.discard(socket)
            if not self._sockets and self.running:
                await self._stop()

    async def _start(self) -> None:
        self.layer = get_channel_layer(self.alias)
        if self.layer is None:
            raise RuntimeError(f"no channel layer {self.alias!r} in CHANNEL_LAYERS")
        self.channel_name = await self.layer.new_channel()
        self.instance_id = await store.register_instance(conf.INSTANCE_NAME)
        self._tasks = [asyncio.ensure_future(self._receive_loop())]
        if hasattr(self.layer, "group_expiry"):
            self._tasks.append(asyncio.ensure_future(self._keep_groups_alive()))
        self._tasks.append(asyncio.ensure_future(self._heartbeat_loop()))
        logger.info("hub started on channel %s", self.channel_name)

    async def _stop(self) -> None:
        await _cancel_and_wait(self._tasks)
        self._tasks = []
        for group in list(self._groups):
            with contextlib.suppress(Exception):
                await self._call_layer(self.layer.group_discard, group, self.channel_name)
        self._groups.clear()
        instance_id, self.instance_id, self.channel_name = self.instance_id, None, ""
        if instance_id is not None:
            with contextlib.suppress(Exception):
                await store.unregister_instance(instance_id)
        logger.info("hub stopped")

    # Rooms -----------------------------------------------------------------------------------

    async def join(self, room_id: str, socket: LocalSocket) -> None:
        """Put ``socket`` in the room; from return on, it receives the room's messages."""
        await self._join(self.rooms, protocol.room_group(room_id), room_id, socket)

    async def leave(self, room_id: str, socket: LocalSocket) -> None:
        """Take ``socket`` out of the room; from return on, it receives nothing more of it."""
        await self._leave(self.rooms, protocol.room_group(room_id), room_id, socket)

    def members(self, room_id: str) -> set[LocalSocket]:
        return self.rooms.get(room_id, set())

    async def _join(
        self, index: dict[str, set[LocalSocket]], group: str, key: str, socket: LocalSocket
    ) -> None:
        members = index.get(key)
        if members is not None and group in self._groups:
            members.add(socket)  # the process is in the group already: nothing to wait for
            return
        async with self._lock(group):
            if group not in self._groups:
                await self._layer_join(group)
            index.setdefault(key, set()).add(socket)
        self._forget_lock(group)

    async def _leave(
        self, index: dict[str, set[LocalSocket]], group: str, key: str, socket: LocalSocket
    ) -> None:
        members = index.get(key)
        if members is None or socket not in members:
            return
        members.discard(socket)
        if members:
            return
        del index[key]
        async with self._lock(group):
            if key not in index and group in self._groups:
                self._groups.discard(group)
                try:
                    await self._call_layer(self.layer.group_discard, group, self.channel_name)
                except Exception:
                    logger.warning("could not leave group %s", group, exc_info=True)
        self._forget_lock(group)

    def _lock(self, group: str) -> asyncio.Lock:
        return self._group_locks.setdefault(group, asyncio.Lock())

    def _forget_lock(self, group: str) -> None:
        lock = self._group_locks.get(group)
        if lock is not None and not lock.locked():
            del self._group_locks[group]

    async def _layer_join(self, group: str) -> None:
        await self._call_layer(self.layer.group_add, group, self.channel_name)
        self._groups.add(group)
        if _is_pubsub(self.layer):
            await self._probe(group)

    async def _probe(self, group: str) -> None:
        """Wait until the pub/sub layer's SUBSCRIBE is live.

        ``RedisPubSubChannelLayer.group_add`` returns once SUBSCRIBE is written, not when Redis
        applied it: a message published in between would be missed. A probe published to the
        group is received only once the subscription is live. The layer publishes on another
        connection than it subscribes on, so Redis may run that PUBLISH before the SUBSCRIBE and
        the probe is lost: publish it again, at growing intervals, until one comes back.
        """
        loop = asyncio.get_running_loop()
        nonce = secrets.token_hex(8)
        future = loop.create_future()
        self._probes[nonce] = future
        deadline = loop.time() + conf.SUBSCRIBE_PROBE_TIMEOUT
        interval = PROBE_RESEND_INTERVAL
        try:
            while True:
                await self._call_layer(self.layer.group_send, group, events.probe(nonce))
                remaining = deadline - loop.time()
                if remaining > 0:
                    await asyncio.wait({future}, timeout=min(interval, remaining))
                if future.done():
                    return
                if loop.time() >= deadline:
                    break
                interval = min(interval * 2, 0.5)
            logger.warning(
                "group %s: no probe came back within %ss; joining anyway",
                group,
                conf.SUBSCRIBE_PROBE_TIMEOUT,
            )
        finally:
            self._probes.pop(nonce, None)

    # Sending ---------------------------------------------------------------------------------

    async def publish(self, room_id: str, event: dict[str, Any]) -> None:
        """Send a room event to every process in the room's group."""
        await self._call_layer(self.layer.group_send, protocol.room_group(room_id), event)

    async def tell_connection(self, kind: str, socket: LocalSocket, room_id: str) -> None:
        """Tell the other live sockets of ``socket``'s connectionID, on every instance."""
        assert socket.connection_id is not None
        event = events.connection_change(kind, socket.connection_id, room_id, socket.socket_id)
        group = protocol.connection_group(socket.connection_id)
        await self._call_layer(self.layer.group_send, group, event)

    async def _call_layer(self, call: Callable[..., Awaitable[None]], *args: Any) -> None:
        """One channel-layer call: bounded in flight, and retried once on a dropped connection.

        redis-py keeps idle connections in its pool and, with RESP3 (its default since 6),
        does not test them before use: after Redis restarted, the first command on each one
        fails with "Connection closed by server" although Redis is back. A retried
        ``group_send`` repeats the same event, with the same server messageID, so a client
        that got it twice can tell.
        """
        async with self._layer_slots:
            try:
                await call(*args)
            except RedisConnectionError:
                logger.info("channel layer connection dropped; retrying once")
                await call(*args)

    # Receiving -------------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        delay = 0.1
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("channel layer receive failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self.dispatch(message)

    def dispatch(self, message: dict[str, Any]) -> None:
        handler = self._handlers.get(message.get("type", ""))
        if handler is None:
            logger.debug("ignoring event of unknown type %r", message.get("type"))
            return
        if message.get("v") != events.VERSION:
            logger.warning("ignoring %s event of version %r", message["type"], message.get("v"))
            return
        try:
            handler(message)
        except Exception:
            logger.exception("handling a %s event failed", message["type"])

    def _on_room_message(self, message: dict[str, Any]) -> None:
        members = self.rooms.get(message["room"])
        if not members:
            return
        outgoing = {"type": "websocket.send", "text": message["frame"]}
        for socket in members:  # sockets cut off meanwhile leave the room later, in a task
            try:
                socket.deliver(outgoing)
            except Exception:  # one socket's failure must not cost the others the message
                logger.exception("delivering to socket %s failed", socket.socket_id)

    def _on_connection_change(self, message: dict[str, Any]) -> None:
        for socket in self.connections.get(message["cid"], ()):
            if socket.socket_id != message["origin"]:
                socket.connection_changed(message["type"], message["room"])

    def _on_user_revoked(self, message: dict[str, Any]) -> None:
        session = message.get("session")
        for socket in list(self.users.get(message["user"], ())):
            if session is None or _session_key(socket) == session:
                socket.revoke(message["reason"])

    def _on_probe(self, message: dict[str, Any]) -> None:
        future = self._probes.get(message["nonce"])
        if future is not None and not future.done():
            future.set_result(None)

    # Upkeep ----------------------------------------------------------------------------------

    async def _keep_groups_alive(self) -> None:
        """Re-add the hub's channel to its groups, well before the layer's ``group_expiry``,
        and soon after Redis lost them (a restart without persistence)."""
        while True:
            interval = min(conf.GROUP_REFRESH_INTERVAL, float(self.layer.group_expiry) / 3)
            await asyncio.sleep(max(0.1, interval))
            for group in list(self._groups):
                try:
                    await self._call_layer(self.layer.group_add, group, self.channel_name)
                except Exception:
                    logger.warning("could not refresh group %s", group, exc_info=True)

    async def _heartbeat_loop(self) -> None:
        while True:
            interval = conf.HEARTBEAT_INTERVAL
            await asyncio.sleep(interval)
            if self.instance_id is None:
                continue
            try:
                await store.heartbeat(self.instance_id, interval)
            except Exception:
                logger.warning("heartbeat failed", exc_info=True)
