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

from . import events, limits, protocol, signals, store
from .conf import conf
from .exceptions import Forbidden
from .hub import Hub
from .limits import Limits
from .outbox import Outbox
from .protocol import CloseCode, Envelope, ErrorCode, FrameType, ProtocolError
from .tokens import TokenClaims, read_token

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
        self.user: Any = None  # the user the socket acts as (login or token), once connected
        self.token: TokenClaims | None = None  # the claims of the token it connected with
        self.limits = Limits.from_settings()
        self.client_address = limits.client_address(scope, self.limits.client_address_header)
        self._outbox = Outbox(
            send, max_buffer=self.limits.max_send_buffer, on_overflow=self._too_slow
        )
        self._bucket = limits.TokenBucket(self.limits.rate_limit, self.limits.rate_burst)
        self._refused_in_a_row = 0
        # daphne queues every frame it reads, without bound, and hands the application that
        # queue's ``get``: its size tells a flood that arrives faster than the consumer runs.
        queue_size = getattr(getattr(receive, "__self__", None), "qsize", None)
        self._queued: Callable[[], int] | None = queue_size if callable(queue_size) else None
        self._closing = False  # a fatal close was sent: frames that follow are not answered
        self._counted = False  # counted in limits.open_sockets
        self._connect_timer: asyncio.TimerHandle | None = None
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
            self._uncount()

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

    async def close_fatally(self, code: int, error: dict[str, Any] | None = None) -> None:
        """Send ``error`` (if any) and close with ``code``; answer nothing after that, and leave
        the rooms now rather than when the server reports the socket closed."""
        if self._closing:
            return
        self._closing = True
        self._cancel_connect_timer()
        self._uncount()  # a refused socket no longer counts against its address
        if error is not None:
            self.reply(error)
        await self.close(code)
        await self._went_away()

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
        address, limit = self.client_address, self.limits.max_connections_per_address
        open_now = limits.open_sockets[address] = limits.open_sockets.get(address, 0) + 1
        self._counted = True
        if limit is not None and open_now > limit:
            await self.close_fatally(
                CloseCode.POLICY,
                protocol.error_frame(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"too many sockets from address {address!r}: {open_now} open on this "
                    f"server, the limit is {limit}",
                ),
            )
            return
        self._start_connect_timer()

    def _start_connect_timer(self) -> None:
        if self.limits.connect_timeout is not None:
            self._connect_timer = asyncio.get_running_loop().call_later(
                self.limits.connect_timeout, self._connect_timed_out
            )

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if self.connection_id is not None or self._closing:
            return
        error = protocol.error_frame(
            ErrorCode.NOT_CONNECTED,
            f"no 'connect' was acked within {self.limits.connect_timeout:g} s of opening the "
            "socket",
        )
        task = asyncio.ensure_future(self.close_fatally(CloseCode.POLICY, error))
        task.add_done_callback(_log_failure)

    def _cancel_connect_timer(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            left = limits.open_sockets.get(self.client_address, 1) - 1
            if left > 0:
                limits.open_sockets[self.client_address] = left
            else:
                limits.open_sockets.pop(self.client_address, None)

    def _too_slow(self) -> None:
        """The outbox holds more than MAX_SEND_BUFFER bytes for this socket: cut it off."""
        logger.warning(
            "socket %s (connection %r) reads too slowly: more than %s bytes waiting; closing it "
            "with %s",
            self.socket_id,
            self.connection_id,
            self.limits.max_send_buffer,
            int(CloseCode.POLICY),
        )
        self._closing = True
        self._cancel_connect_timer()
        self._outbox.push_final({"type": "websocket.close", "code": int(CloseCode.POLICY)})
        task = asyncio.ensure_future(self._went_away())
        task.add_done_callback(_log_failure)

    def revoke(self, reason: str) -> None:
        """The socket's credentials were revoked (logout, password change): close with 4001."""
        error = protocol.error_frame(ErrorCode.FORBIDDEN, reason)
        task = asyncio.ensure_future(self.close_fatally(CloseCode.REFUSED, error))
        task.add_done_callback(_log_failure)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if self._queued is not None and self.limits.rate_limit is not None:
            waiting = self._queued()
            if waiting > self.limits.rate_burst + (self.limits.rate_limit_close_after or 0):
                # The bucket refills with time, and a flood can keep the event loop so busy
                # reading frames that this consumer runs a few times a second: without this
                # check it would never run dry while the server's queue grows.
                await self.close_fatally(
                    CloseCode.POLICY,
                    protocol.error_frame(
                        ErrorCode.RATE_LIMITED,
                        f"too many frames: {waiting} are waiting to be read, the limit is "
                        f"{self.limits.rate_limit:g} per second (bursts of "
                        f"{self.limits.rate_burst})",
                    ),
                )
                return
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
            self._closing = True
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
        self._cancel_connect_timer()
        await self._leave_everything()
        if self._was_connected is not None:
            await self._send_signal(
                signals.disconnected,
                connection_id=self._was_connected,
                user=self.user,
                graceful=self._graceful,
            )

    # Frames ----------------------------------------------------------------------------------

    async def receive_frame(self, text: str) -> None:
        """Answer one client frame with exactly one ack or error."""
        message_id: protocol.MessageID = None
        limits_ = self.limits
        try:
            if limits_.max_frame_bytes is not None:
                protocol.check_size(text, limits_.max_frame_bytes)
            try:
                data, not_json = protocol.decode(text), None
            except ProtocolError as exc:
                data, not_json = None, exc
            if not self._bucket.take():
                self._refused_in_a_row += 1
                close_after = limits_.rate_limit_close_after
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"too many frames: the limit is {limits_.rate_limit:g} per second (bursts "
                    f"of {limits_.rate_burst}); this frame was not acted on, slow down",
                    protocol.lenient_message_id(data),
                    close_code=CloseCode.POLICY
                    if close_after is not None and self._refused_in_a_row >= close_after
                    else None,
                )
            self._refused_in_a_row = 0
            if not_json is not None:
                raise not_json
            frame = protocol.read_frame(data)
            message_id = frame.message_id
            if limits_.max_payload_depth is not None:
                protocol.check_depth(data, limits_.max_payload_depth, message_id)
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
            envelope = protocol.validate_fields(
                frame,
                max_connection_id_length=limits_.max_connection_id_length,
                max_room_id_length=limits_.max_room_id_length,
            )
            await self._frame_handlers[envelope.type](envelope)
        except ProtocolError as exc:
            if exc.message_id is None:
                exc.message_id = message_id
            if exc.close_code is not None:
                await self.close_fatally(exc.close_code, exc.frame())
            else:
                self.reply(exc.frame())
        except Unavailable as exc:
            self.reply(protocol.error_frame(ErrorCode.UNAVAILABLE, str(exc), message_id))
            if self.connection_id is None and self._connect_timer is not None:
                # The server's fault, not the client's: give a retried connect the full time.
                self._cancel_connect_timer()
                self._start_connect_timer()
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
        claims = self._authenticate(envelope)
        hub = self.hub = Hub.for_loop(self.rooms_layer_alias)
        # Listen to the connectionID's news before reading its rooms, so a subscribe made
        # meanwhile on another socket is not missed; keep that news until after the ack.
        self.connection_id = connection_id
        self._early_changes = []
        try:
            await _guard(hub.add_socket(self), "the channel layer")
            # Listen for the revocation of the user's credentials before checking them in the
            # database, so that a logout or password change meanwhile is not missed.
            login_user = self._login_user()
            claimed_user = claims.user_id if claims is not None else getattr(login_user, "pk", None)
            if claimed_user is not None:
                await _guard(hub.add_user(self, claimed_user), "the channel layer")
            stored, user, bound_now = await _guard(
                store.connect(
                    connection_id,
                    user=login_user,
                    claims=claims,
                    socket_id=self.socket_id,
                    instance_id=hub.instance_id,
                    client=self.client_address,
                    max_sockets=self.limits.max_sockets_per_connection,
                ),
                "the database",
            )
            self._online = True
            self.user, self.token = user, claims
            rooms = [room for room in stored if await self._may_rejoin(room)]
            await _guard(
                asyncio.gather(*(hub.join(room, self) for room in rooms)), "the channel layer"
            )
        except BaseException as exc:
            await self._leave_everything()
            self.connection_id = None
            self.user = self.token = None
            if isinstance(exc, ProtocolError):  # refused by the store: fatal
                exc.message_id = envelope.message_id
                exc.close_code = (
                    CloseCode.REFUSED if exc.code is ErrorCode.FORBIDDEN else CloseCode.POLICY
                )
            raise
        if self._gone:
            # Closed meanwhile (credentials revoked, too slow): _went_away ran before the steps
            # above had finished; undo what they did after it, and answer nothing.
            self.hub = hub
            await self._leave_everything()
            self.connection_id = None
            self.user = self.token = None
            return
        self._cancel_connect_timer()
        self._was_connected = connection_id
        for room in rooms:
            self.rooms[room] = None
        if bound_now:
            # The connectionID was anonymous until now: its anonymous sockets lose it.
            await _guard(
                hub.tell_connection(events.CONNECTION_BOUND, self, ""),
                "the channel layer",
                log_only=True,
            )
        self.reply(
            protocol.ack_frame(
                envelope.message_id,
                protocol=protocol.PROTOCOL_VERSION,
                connectionID=connection_id,
                rooms=list(self.rooms),
                **self._instance_field(),
            )
        )
        while self._early_changes:
            kind, room_id = self._early_changes.pop(0)
            await self._apply_connection_change(kind, room_id)
        self._early_changes = None
        await self._send_signal(
            signals.connected, connection_id=connection_id, user=self.user, rooms=list(self.rooms)
        )

    @staticmethod
    def _instance_field() -> dict[str, str]:
        # The connect ack names the instance when INSTANCE_NAME is set (the demo shows it).
        name = conf.INSTANCE_NAME
        return {"instance": name} if name else {}

    def _login_user(self) -> Any:
        user = self.scope.get("user")
        return user if getattr(user, "is_authenticated", False) else None

    def _authenticate(self, envelope: Envelope) -> TokenClaims | None:
        """The token's claims; or None for a logged-in user, or an anonymous socket that the
        ``ANONYMOUS`` setting lets in. Raise forbidden (fatal) otherwise."""
        assert envelope.connection_id is not None
        try:
            if envelope.token is not None:
                claims = read_token(envelope.token, envelope.connection_id)
                if claims.user_id is None and conf.ANONYMOUS == "refuse":
                    raise Forbidden(
                        "this server accepts logged-in users only: the token names no user"
                    )
                return claims
            if self._login_user() is not None:
                return None
            policy = conf.ANONYMOUS
            if policy == "open":
                return None
            if policy == "refuse":
                raise Forbidden("this server accepts logged-in users only: log in first")
            raise Forbidden(
                "connecting without a login needs a token: get one from the site "
                "(thinws_channels.tokens.issue_token) and send it in 'token'"
            )
        except Forbidden as exc:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                exc.message,
                envelope.message_id,
                close_code=CloseCode.REFUSED,
            ) from None

    async def _may_rejoin(self, room_id: str) -> bool:
        """Whether a stored room is rejoined on ``connect``: the same rules as ``subscribe``.

        A hook that fails on one stored room must not lock the connectionID out: the room is
        skipped, and the failure logged.
        """
        try:
            await self._authorize_subscribe(room_id, None)
        except ProtocolError:
            return False
        except Exception:
            logger.exception("can_subscribe failed for stored room %r; not rejoining it", room_id)
            return False
        return True

    async def _authorize_subscribe(self, room_id: str, message_id: protocol.MessageID) -> None:
        refusal: str | None = None
        if self.token is not None and not self.token.allows_room(room_id):
            refusal = f"the token of connection {self.connection_id!r} does not allow room "
            refusal += f"{room_id!r}"
        elif conf.SUBSCRIBE_POLICY == "users" and self.user is None:
            refusal = f"room {room_id!r} is for logged-in users only"
        elif self._hooked("can_subscribe"):
            try:
                if not await self.can_subscribe(room_id):
                    refusal = f"connection {self.connection_id!r} may not subscribe to room "
                    refusal += f"{room_id!r}"
            except Forbidden as exc:
                refusal = exc.message
        if refusal is not None:
            raise ProtocolError(ErrorCode.FORBIDDEN, refusal, message_id)

    def _hooked(self, name: str) -> bool:
        """Whether a subclass overrides the hook ``name`` (the default hooks are not awaited)."""
        return getattr(type(self), name) is not getattr(ThinWSConsumer, name)

    # Hooks: override them in a subclass --------------------------------------------------------

    async def can_subscribe(self, room_id: str) -> bool:
        """May this socket join ``room_id``? Return False, or raise Forbidden with a reason.

        At hand: ``self.scope``, ``self.user`` (None when anonymous), ``self.connection_id``,
        ``self.token`` (the claims of its token, or None), ``self.rooms``. Also asked for each
        stored room on ``connect``: a room refused then is not rejoined (it stays stored).
        """
        return True

    async def can_publish(self, room_id: str, payload: Any) -> bool:
        """May this socket publish ``payload`` to ``room_id`` (it is a member)? As above."""
        return True

    async def transform_payload(self, room_id: str, payload: Any) -> Any:
        """The payload to publish instead of ``payload``: moderate, enrich or persist it here.

        Raise Forbidden to refuse the message; the client gets a ``forbidden`` error and nothing
        is published.
        """
        return payload

    async def handle_subscribe(self, envelope: Envelope) -> None:
        room_id = envelope.room_id
        assert room_id is not None and self.hub is not None
        await self._authorize_subscribe(room_id, envelope.message_id)
        hub = self.hub
        if hub is None:  # the socket was closed (revoked, too slow) while a hook ran
            return
        # Join first: when either step fails, the reply is an error and nothing is stored.
        await _guard(hub.join(room_id, self), "the channel layer")
        try:
            created = await _guard(
                store.subscribe(self.connection_id, room_id, self.limits.max_rooms_per_connection),
                "the database",
            )
        except (Unavailable, ProtocolError):
            if room_id not in self.rooms or self._gone:
                await hub.leave(room_id, self)
            raise
        if self._gone:  # closed meanwhile: its cleanup ran before this join
            await hub.leave(room_id, self)
            return
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
                user=self.user,
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
                user=self.user,
                room_id=room_id,
            )

    async def handle_message(self, envelope: Envelope) -> None:
        room_id = envelope.room_id
        assert room_id is not None and self.hub is not None
        policy = conf.PUBLISH_POLICY
        if policy == "nobody":
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"clients may not publish on this server (room {room_id!r}): its rooms are "
                "published to by the server only",
                envelope.message_id,
            )
        if room_id not in self.rooms:
            raise ProtocolError(
                ErrorCode.NOT_SUBSCRIBED,
                f"connection {self.connection_id!r} is not subscribed to room {room_id!r}: "
                "only members may publish to a room",
                envelope.message_id,
            )
        if policy == "users" and self.user is None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"only logged-in users may publish to room {room_id!r}",
                envelope.message_id,
            )
        payload = envelope.payload
        if self._hooked("can_publish") or self._hooked("transform_payload"):
            try:
                if not await self.can_publish(room_id, payload):
                    raise Forbidden(
                        f"connection {self.connection_id!r} may not publish to room {room_id!r}"
                    )
                payload = await self.transform_payload(room_id, payload)
            except Forbidden as exc:
                raise ProtocolError(ErrorCode.FORBIDDEN, exc.message, envelope.message_id) from None
        if self.hub is None:  # the socket was closed (revoked, too slow) while a hook ran
            return
        message_id, event = events.room_message(
            room_id, payload, sender=self.connection_id, legacy=envelope.legacy
        )
        await _guard(self.hub.publish(room_id, event), "the channel layer")
        self.reply(protocol.ack_frame(envelope.message_id, id=message_id))
        await self._send_signal(
            signals.message_received,
            connection_id=self.connection_id,
            user=self.user,
            room_id=room_id,
            payload=payload,
            message_id=message_id,
        )

    async def handle_disconnect(self, envelope: Envelope) -> None:
        self._graceful = True
        await self._leave_everything()
        self.reply(protocol.ack_frame(envelope.message_id))
        await self.close(CloseCode.NORMAL)
        # As after a fatal error, frames the client sent behind ``disconnect`` get no reply: it
        # would go to a closing socket (daphne's send raises once the close is on its way).
        self._closing = True

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
        if kind == events.CONNECTION_BOUND:
            if self.user is None:
                self.revoke(
                    f"connectionID {self.connection_id!r} now belongs to a user: connect again "
                    "with a token or a login"
                )
            return
        if kind == events.CONNECTION_SUBSCRIBED:
            if room_id in self.rooms or not await self._may_rejoin(room_id):
                return
            hub = self.hub
            if hub is None:
                return
            await hub.join(room_id, self)
            if self._gone:  # closed meanwhile: its cleanup ran before this join
                await hub.leave(room_id, self)
                return
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


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("applying a connection change failed", exc_info=task.exception())
