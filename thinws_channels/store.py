"""Database work, only on connect, subscribe, unsubscribe and disconnect.

Small sync functions, each wrapped for async callers with ``database_sync_to_async`` (which
closes stale database connections around the call). Nothing here runs on the message path.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .models import Connection, Presence, Room, ServerInstance, Subscription
from .protocol import ErrorCode, ProtocolError, storage_key
from .tokens import TokenClaims, user_hash


def _refuse(code: ErrorCode, message: str) -> ProtocolError:
    return ProtocolError(code, message)


def _token_user(claims: TokenClaims) -> Any:
    """The active user a token names, as long as their password did not change since."""
    user = get_user_model()._default_manager.filter(pk=claims.user_id).first()
    if user is None or not getattr(user, "is_active", True):
        raise _refuse(ErrorCode.FORBIDDEN, "the token's user does not exist or is not active")
    if claims.user_hash is not None and claims.user_hash != user_hash(user):
        raise _refuse(
            ErrorCode.FORBIDDEN,
            "the token was issued before its user's password changed: get a new one",
        )
    return user


def _connect(
    connection_id: str,
    *,
    user: Any,
    claims: TokenClaims | None,
    socket_id: str,
    instance_id: int,
    client: str,
    max_sockets: int | None,
) -> tuple[list[str], Any, bool]:
    """Check who may claim the connectionID, record the socket as online, and return the
    connectionID's rooms in the order joined, the user the socket acts as, and whether this
    connect bound a connectionID used anonymously until now to that user.

    ``user``: the logged-in user, or None. With a token (``claims``), the token decides: the
    socket acts as the token's user, or as nobody. See docs/security.md for the rules.
    """
    if claims is not None:
        user = _token_user(claims) if claims.user_id is not None else None
    user_id = None if user is None else user.pk
    with transaction.atomic():
        connection = (
            Connection.objects.select_for_update().filter(key=storage_key(connection_id)).first()
        )
        bound_now = False  # an anonymous connectionID that this connect binds to a user
        if connection is None:
            connection = Connection.objects.create(connection_id=connection_id, user_id=user_id)
        elif connection.user_id is not None and connection.user_id != user_id:
            raise _refuse(
                ErrorCode.FORBIDDEN,
                f"connectionID {connection_id!r} belongs to "
                + ("another user" if user_id is not None else "a user: log in as them")
                + ", pick another connectionID",
            )
        elif connection.user_id is None and user_id is not None and claims is None:
            raise _refuse(
                ErrorCode.FORBIDDEN,
                f"connectionID {connection_id!r} was first used without a login: to claim it "
                "for your user, connect with a token issued for it",
            )
        else:
            bound_now = connection.user_id is None and user_id is not None
            connection.user_id = user_id
            connection.save(update_fields=["user", "last_seen_at"])
        if max_sockets is not None:
            live = Presence.objects.filter(connection=connection).count()
            if live >= max_sockets:
                raise _refuse(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"connectionID {connection_id!r} has {live} live "
                    f"{'socket' if live == 1 else 'sockets'}, the limit is "
                    f"{max_sockets}",
                )
        Presence.objects.create(
            socket_id=socket_id,
            connection=connection,
            instance_id=instance_id,
            user_id=user_id,
            client=client[:100],
        )
    rooms = list(
        Subscription.objects.filter(connection=connection)
        .order_by("id")
        .values_list("room__room_id", flat=True)
    )
    return rooms, user, bound_now


def _subscribe(connection_id: str, room_id: str, max_rooms: int | None) -> bool:
    """Store the membership; True when it is new. Past ``max_rooms``: limit_exceeded."""
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(key=storage_key(connection_id))
        existing = Subscription.objects.filter(
            connection=connection, room__key=storage_key(room_id)
        ).exists()
        if existing:
            return False
        if max_rooms is not None:
            count = Subscription.objects.filter(connection=connection).count()
            if count >= max_rooms:
                raise _refuse(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"connection {connection_id!r} is in {count} rooms, the limit is "
                    f"{max_rooms}: unsubscribe from one first",
                )
        room, _ = Room.objects.get_or_create(
            key=storage_key(room_id), defaults={"room_id": room_id}
        )
        _, created = Subscription.objects.get_or_create(connection=connection, room=room)
    return created


def _unsubscribe(connection_id: str, room_id: str) -> bool:
    """Delete the membership; True when there was one."""
    deleted, _ = Subscription.objects.filter(
        connection__key=storage_key(connection_id), room__key=storage_key(room_id)
    ).delete()
    return deleted > 0


def _disconnect(socket_id: str) -> None:
    Presence.objects.filter(socket_id=socket_id).delete()


def _register_instance(name: str) -> int:
    hostname = socket.gethostname()
    instance = ServerInstance.objects.create(
        name=name or f"{hostname}:{os.getpid()}",
        hostname=hostname,
        pid=os.getpid(),
        heartbeat_at=timezone.now(),
    )
    return instance.pk


def _heartbeat(instance_id: int, interval: float) -> None:
    """Mark this instance alive; forget instances (and their sockets) that stopped beating."""
    now = timezone.now()
    ServerInstance.objects.filter(pk=instance_id).update(heartbeat_at=now)
    ServerInstance.objects.filter(heartbeat_at__lt=now - timedelta(seconds=3 * interval)).exclude(
        pk=instance_id
    ).delete()


def _unregister_instance(instance_id: int) -> None:
    ServerInstance.objects.filter(pk=instance_id).delete()


connect = database_sync_to_async(_connect)
subscribe = database_sync_to_async(_subscribe)
unsubscribe = database_sync_to_async(_unsubscribe)
disconnect = database_sync_to_async(_disconnect)
register_instance = database_sync_to_async(_register_instance)
heartbeat = database_sync_to_async(_heartbeat)
unregister_instance = database_sync_to_async(_unregister_instance)
