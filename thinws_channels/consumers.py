"""The ThinWS consumer: one socket. Decode, dispatch by type, reply with one ack or error.

Rooms are delivered by the process's hub (``hub.py``), not by a channel of each socket's own:
the consumer has no channel-layer channel. Database work happens on ``connect``, ``subscribe``,
``unsubscribe`` and when the socket goes away, never on ``message`` frames or room deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.utils import await_many_dispatch
from django.dispatch import Signal

from . import events, protocol, signals, store
from .hub import Hub
from .outbox import Outbox
from .protocol import CloseCode, Envelope, ErrorCode, FrameType, ProtocolError

logger = logging.getLogger(__name__)


class Unavailable(Exception):
    """The channel layer or the database could not be reached."""


class ThinWSConsumer(AsyncJsonWebsocketConsumer):
    """Serves the ThinWS protocol. Subclass it to override the hooks, and route the subclass."""

    # The alias in CHANNEL_LAYERS that carries the rooms; None: THINWS_CHANNELS["CHANNEL_LAYER"].
    rooms_layer_alias: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Unlike AsyncConsumer.__call__, make no channel of this socket's own: the hub receives.
        self.scope = scope
        self.channel_layer = None
        self.channel_name = None
        self.base_send = send
        self.socket_id = uuid.uuid4().hex
        self.connection_id: str | None = None
        self.rooms: dict[str, None] = {}  # the connectionID's rooms, in the order joined
        self.hub: Hub | None = None
        self._outbox = Outbox(send)
        self._user: Any = None
        self._graceful = False
        self._early_changes: list[tuple[str, str]] | None = None
        self._frame_handlers: dict[FrameType, Callable[[Envelope], Awaitable[None]]] = {
            FrameType.CONNECT: self.handle_connect,
            FrameType.SUBSCRIBE: self.handle_subscribe,
            FrameType.UNSUBSCRIBE: self.handle_unsubscribe,
            FrameType.MESSAGE: self.handle_message,
            FrameType.DISCONNECT: self.handle_disconnect,
        }
        try:
            await await_many_dispatch([receive], self.dispatch)
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            # The server cancels the task at shutdown or after application_close_timeout: the
            # socket must not stay in the hub's rooms or online in the database. The task ends
            # here anyway, so end it normally: daphne 4.2 gathers its applications at shutdown
            # without return_exceptions, and the first cancelled one would cut the cleanup of
            # the others short. If the socket is still open (a shutdown), tell the client to
            # reconnect elsewhere now; ``finally`` cleans up.
            await self.close(CloseCode.GOING_AWAY)
        finally:
            await self._went_away()
            self._outbox.cancel()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # AsyncConsumer.dispatch runs aclose_old_connections() in the ORM thread before every
        # handler; the store's database_sync_to_async calls do that themselves, and frames that
        # touch no database must not wait for that thread.
        kind = message["type"]
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)
        else:
            raise ValueError(f"no handler for ASGI message type {kind!r}")

    async def send(self, message: dict[str, Any]) -> None:  # type: ignore[override]
        self._outbox.push(message)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        message: dict[str, Any] = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = list(headers)
        self._outbox.push(message)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Through the outbox like every frame, so a close never overtakes the frames before it.
        message: dict[str, Any] = {"type": "websocket.close"}
        if code is not None and code is not True:
            message["code"] = int(code)
        if reason:
            message["reason"] = reason
        self._outbox.push(message)

    def deliver(self, message: dict[str, Any]) -> None:
        """A room message from the hub: the frame is encoded already."""
        self._outbox.push(message)

    def reply(self, frame: dict[str, Any]) -> None:
        self._outbox.push({"type": "websocket.send", "text": protocol.encode(frame)})

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return protocol.encode(content)

    # ASGI events -----------------------------------------------------------------------------

    async def connect(self) -> None:
        await self.accept()

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            self.reply(
                protocol.error_frame(
                    ErrorCode.UNSUPPORTED_DATA,
                    f"binary frames are not supported ({len(message.get('bytes') or b'')} "
                    "bytes received): send JSON as a text frame",
                )
            )
            await self.close(CloseCode.UNSUPPORTED_DATA)
            return
        await self.receive_frame(text)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self._went_away()
        raise StopConsumer()

    async def _went_away(self) -> None:
        """Once per socket: leave its rooms, go offline, send ``disconnected``."""
        if self._gone:
            return
        self._gone = True
        await self._leave_everything()
        if self._was_connected is not None:
            await self._send_signal(
                signals.disconnected,
                connection_id=self._was_connected,
                user=self._user,
                graceful=self._graceful,
            )

    # Frames ----------------------------------------------------------------------------------

    async def receive_frame(self, text: str) -> None:
        """Answer one client frame with exactly one ack or error."""
        message_id: protocol.MessageID = None
        try:
            frame = protocol.read_frame(protocol.decode(text))
            message_id = frame.message_id
            if self._graceful:
                # Frames a client sent behind ``disconnect``, before the close reached it.
                raise ProtocolError(
                    ErrorCode.NOT_CONNECTED,
                    f"this socket sent 'disconnect' and is closing: {frame.type.value!r} needs "
                    "a new socket",
                    message_id,
                )
            if frame.type is FrameType.CONNECT:
                if self.connection_id is not None:
                    raise ProtocolError(
                        ErrorCode.ALREADY_CONNECTED,
                        f"this socket is connected already as {self.connection_id!r}",
                        message_id,
                    )
            elif self.connection_id is None:
                raise ProtocolError(
                    ErrorCode.NOT_CONNECTED,
                    f"send 'connect' before {frame.type.value!r}",
                    message_id,
                )
            envelope = protocol.validate_fields(frame)
            await self._frame_handlers[envelope.type](envelope)
        except ProtocolError as exc:
            self.reply(exc.frame())
        except Unavailable as exc:
            self.reply(protocol.error_frame(ErrorCode.UNAVAILABLE, str(exc), message_id))
        except Exception:
            logger.exception("internal error while handling a frame")
            self.reply(
                protocol.error_frame(
                    ErrorCode.INTERNAL, "the server failed to handle this frame", message_id
                )
            )

    async def handle_connect(self, envelope: Envelope) -> None:
        connection_id = envelope.connection_id
        assert connection_id is not None
        user = self.scope.get("user")
        self._user = user if getattr(user, "is_authenticated", False) else None
        hub = self.hub = Hub.for_loop(self.rooms_layer_alias)
        # Listen to the connectionID's news before reading its rooms, so a subscribe made
        # meanwhile on another socket is not missed; keep that news until after the ack.
        self.connection_id = connection_id
        self._early_changes = []
        try:
            await _guard(hub.add_socket(self), "the channel layer")
            rooms = await _guard(
                store.connect(
                    connection_id,
                    getattr(self._user, "pk", None),
                    self.socket_id,
                    hub.instance_id,
                    _client_address(self.scope),
                ),
                "the database",
            )
            self._online = True
            await _guard(
                asyncio.gather(*(hub.join(room, self) for room in rooms)), "the channel layer"
            )
        except BaseException:
            await self._leave_everything()
            self.connection_id = None
            raise
        self._was_connected = connection_id
        for room in rooms:
            self.rooms[room] = None
        self.reply(
            protocol.ack_frame(
                envelope.message_id,
                protocol=protocol.PROTOCOL_VERSION,
                connectionID=connection_id,
                rooms=list(self.rooms),
            )
        )
        while self._early_changes:
            kind, room_id = self._early_changes.pop(0)
            await self._apply_connection_change(kind, room_id)
        self._early_changes = None
        await self._send_signal(
            signals.connected, connection_id=connection_id, user=self._user, rooms=list(self.rooms)
        )

    async def handle_subscribe(self, envelope: Envelope) -> None:
        room_id = envelope.room_id
        assert room_id is not None and self.hub is not None
        # Join first: when either step fails, the reply is `unavailable` and nothing is stored.
        await _guard(self.hub.join(room_id, self), "the channel layer")
        try:
            created = await _guard(store.subscribe(self.connection_id, room_id), "the database")
        except Unavailable:
            if room_id not in self.rooms:
                await self.hub.leave(room_id, self)
            raise
        self.rooms[room_id] = None
        self.reply(protocol.ack_frame(envelope.message_id))
        await _guard(
            self.hub.tell_connection(events.CONNECTION_SUBSCRIBED, self, room_id),
            "the channel layer",
            log_only=True,
        )
        if created:
            await self._send_signal(
                signals.subscribed,
                connection_id=self.connection_id,
                user=self._user,
                room_id=room_id,
            )

    async def handle_unsubscribe(self, envelope: Envelope) -> None:
        room_id = envelope.room_id
        assert room_id is not None and self.hub is not None
        deleted = await _guard(store.unsubscribe(self.connection_id, room_id), "the database")
        if not deleted and room_id not in self.rooms:
            raise ProtocolError(
                ErrorCode.NOT_SUBSCRIBED,
                f"connection {self.connection_id!r} is not subscribed to room {room_id!r}",
                envelope.message_id,
            )
        self.rooms.pop(room_id, None)
        await self.hub.leave(room_id, self)
        self.reply(protocol.ack_frame(envelope.message_id))
        await _guard(
            self.hub.tell_connection(events.CONNECTION_UNSUBSCRIBED, self, room_id),
            "the channel layer",
            log_only=True,
        )
        if deleted:
            await self._send_signal(
                signals.unsubscribed,
                connection_id=self.connection_id,
                user=self._user,
                room_id=room_id,
            )

    async def handle_message(self, envelope: Envelope) -> None:
        room_id = envelope.room_id
        assert room_id is not None and self.hub is not None
        if room_id not in self.rooms:
            raise ProtocolError(
                ErrorCode.NOT_SUBSCRIBED,
                f"connection {self.connection_id!r} is not subscribed to room {room_id!r}: "
                "only members may publish to a room",
                envelope.message_id,
            )
        message_id, event = events.room_message(
            room_id, envelope.payload, sender=self.connection_id, legacy=envelope.legacy
        )
        await _guard(self.hub.publish(room_id, event), "the channel layer")
        self.reply(protocol.ack_frame(envelope.message_id, id=message_id))
        await self._send_signal(
            signals.message_received,
            connection_id=self.connection_id,
            user=self._user,
            room_id=room_id,
            payload=envelope.payload,
            message_id=message_id,
        )

    async def handle_disconnect(self, envelope: Envelope) -> None:
        self._graceful = True
        await self._leave_everything()
        self.reply(protocol.ack_frame(envelope.message_id))
        await self.close(CloseCode.NORMAL)

    # What the hub tells this socket ----------------------------------------------------------

    def connection_changed(self, kind: str, room_id: str) -> None:
        """Another socket of this connectionID joined or left a room."""
        if self._early_changes is not None:
            self._early_changes.append((kind, room_id))
            return
        task = asyncio.ensure_future(self._apply_connection_change(kind, room_id))
        task.add_done_callback(_log_failure)

    async def _apply_connection_change(self, kind: str, room_id: str) -> None:
        if self.hub is None or self.connection_id is None:
            return
        if kind == events.CONNECTION_SUBSCRIBED:
            if room_id in self.rooms:
                return
            await self.hub.join(room_id, self)
            self.rooms[room_id] = None
            self.reply({"type": "subscribed", "roomID": room_id})
        else:
            if room_id not in self.rooms:
                return
            del self.rooms[room_id]
            await self.hub.leave(room_id, self)
            self.reply({"type": "unsubscribed", "roomID": room_id})

    # Helpers ---------------------------------------------------------------------------------

    _was_connected: str | None = None  # the connectionID, once ``connect`` was acked
    _online = False  # a Presence row exists for this socket
    _gone = False  # the socket went away and was cleaned up

    async def _leave_everything(self) -> None:
        """Leave every room on this socket (memberships stay stored) and go offline."""
        hub, self.hub = self.hub, None
        if hub is None:
            return
        try:
            await hub.remove_socket(self)
        except Exception:
            logger.warning("leaving the rooms of socket %s failed", self.socket_id, exc_info=True)
        if self._online:
            self._online = False
            try:
                await store.disconnect(self.socket_id)
            except Exception:
                logger.warning(
                    "could not record socket %s as offline", self.socket_id, exc_info=True
                )

    async def _send_signal(self, signal: Signal, **kwargs: Any) -> None:
        if not signal.receivers:
            return
        responses = await signal.asend_robust(sender=type(self), consumer=self, **kwargs)
        for receiver, response in responses:
            if isinstance(response, Exception):
                logger.error(
                    "a receiver of the thinws_channels signal failed: %r",
                    receiver,
                    exc_info=response,
                )


async def _guard(awaitable: Awaitable[Any], what: str, *, log_only: bool = False) -> Any:
    """Await; turn a failure of the database or the channel layer into ``Unavailable``."""
    try:
        return await awaitable
    except ProtocolError:
        raise
    except Exception as exc:  # DatabaseError, redis errors, OSError, timeouts
        # One line while a dependency is down (every frame would log it); details at DEBUG.
        logger.warning("%s failed: %r", what, exc)
        logger.debug("%s failed", what, exc_info=True)
        if log_only:
            return None
        raise Unavailable(f"{what} could not be reached, try again later") from exc


def _client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    if not client:
        return ""
    return f"{client[0]}:{client[1]}" if len(client) > 1 else str(client[0])


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("applying a connection change failed", exc_info=task.exception())
