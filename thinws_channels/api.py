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
