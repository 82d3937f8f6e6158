"""Server-side sending: from views, tasks, management commands, any process.

Talks to sockets only through the channel layer, so it works wherever the project's
CHANNEL_LAYERS reach the servers' layer (with the in-memory layer: only inside the server process).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import events, protocol
from .conf import conf


async def asend_to_room(room_id: str, payload: Any, *, layer_alias: str | None = None) -> str:
    """Publish ``payload`` to every live socket in ``room_id``; return the server message id.

    The relayed frame's ``connectionID`` is ``null``: the message comes from the server.
    """
    protocol.validate_room_id(room_id)
    layer = get_channel_layer(layer_alias or conf.CHANNEL_LAYER)
    if layer is None:
        raise RuntimeError("no channel layer configured: see docs/configuration.md")
    message_id, event = events.room_message(room_id, payload, sender=None)
    await layer.group_send(protocol.room_group(room_id), event)
    return message_id


def send_to_room(room_id: str, payload: Any, *, layer_alias: str | None = None) -> str:
    """The sync twin of :func:`asend_to_room`, for views and tasks."""
    return async_to_sync(asend_to_room)(room_id, payload, layer_alias=layer_alias)


async def arevoke_user(
    user: Any,
    *,
    session_key: str | None = None,
    reason: str = "your credentials were revoked: log in again",
    layer_alias: str | None = None,
) -> None:
    """Close ``user``'s live sockets on every instance with a ``forbidden`` error and 4001.

    ``user``: a user or a primary key. ``session_key``: only the sockets opened with that
    session's cookie (a logout); None: all of them, token sockets included (a password change).
    The app calls this itself on ``user_logged_out`` and when a password is set.
    """
    layer = get_channel_layer(layer_alias or conf.CHANNEL_LAYER)
    if layer is None:
        return
    event = events.user_revoked(user, session_key, reason)
    await layer.group_send(protocol.user_group(event["user"]), event)


def revoke_user(user: Any, **kwargs: Any) -> None:
    """The sync twin of :func:`arevoke_user`."""
    async_to_sync(arevoke_user)(user, **kwargs)
