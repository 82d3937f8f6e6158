"""Database work, only on connect, subscribe, unsubscribe and disconnect.

Small sync functions, each wrapped for async callers with ``database_sync_to_async`` (which
closes stale database connections around the call). Nothing here runs on the message path.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from .models import Connection, Presence, Room, ServerInstance, Subscription
from .protocol import storage_key


def _connect(
    connection_id: str, user_id: int | None, socket_id: str, instance_id: int, client: str
) -> list[str]:
    """Record the socket as online and return the connectionID's rooms in the order joined."""
    with transaction.atomic():
        connection, created = Connection.objects.get_or_create(
            key=storage_key(connection_id),
            defaults={"connection_id": connection_id, "user_id": user_id},
        )
        if not created:
            if user_id is not None and connection.user_id is None:
                connection.user_id = user_id
            connection.save(update_fields=["user", "last_seen_at"])
        Presence.objects.create(
            socket_id=socket_id,
            connection=connection,
            instance_id=instance_id,
            user_id=user_id,
            client=client[:100],
        )
    return list(
        Subscription.objects.filter(connection=connection)
        .order_by("id")
        .values_list("room__room_id", flat=True)
    )


def _subscribe(connection_id: str, room_id: str) -> bool:
    """Store the membership; True when it is new."""
    with transaction.atomic():
        connection = Connection.objects.get(key=storage_key(connection_id))
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
