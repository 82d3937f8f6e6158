"""What the app sends through the channel layer, between processes.

Every event carries ``v`` (its version), so instances of two releases can run side by side
during a rolling deploy: a hub ignores, with a log line, the versions it does not know.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from . import protocol
from .conf import conf

VERSION = 1

ROOM_MESSAGE = "thinws.room.message"  # a message for a room's sockets, its frame encoded once
CONNECTION_SUBSCRIBED = "thinws.conn.subscribed"  # a connectionID joined a room
CONNECTION_UNSUBSCRIBED = "thinws.conn.unsubscribed"  # a connectionID left a room
CONNECTION_BOUND = "thinws.conn.bound"  # an anonymous connectionID now belongs to a user
PROBE = "thinws.probe"  # a process checks that its new group subscription is live
USER_REVOKED = "thinws.user.revoked"  # a user logged out or changed their password

_id_prefix = secrets.token_hex(6)
_id_counter = itertools.count(1)


def new_message_id() -> str:
    """A server message id: unique across processes (random prefix) and cheap (a counter)."""
    return f"{_id_prefix}-{next(_id_counter)}"


def room_message(
    room_id: str, payload: Any, *, sender: str | None, legacy: bool = False
) -> tuple[str, dict[str, Any]]:
    """The server id and the layer event of one room message, its client frame encoded here,
    once, for every socket in every process."""
    message_id = new_message_id()
    frame = protocol.room_message_frame(
        room_id,
        payload,
        sender=sender,
        message_id=message_id,
        legacy_key=legacy or conf.LEGACY_MESSAGE_KEY,
    )
    return message_id, {
        "type": ROOM_MESSAGE,
        "v": VERSION,
        "room": room_id,
        "frame": protocol.encode(frame),
    }


def connection_change(kind: str, connection_id: str, room_id: str, origin: str) -> dict[str, Any]:
    """Tell the other live sockets of ``connection_id`` that it joined or left ``room_id``;
    ``origin`` is the socket that did it (it already knows)."""
    return {"type": kind, "v": VERSION, "cid": connection_id, "room": room_id, "origin": origin}


def probe(nonce: str) -> dict[str, Any]:
    return {"type": PROBE, "v": VERSION, "nonce": nonce}


def user_key(user: Any) -> str:
    """A user, or a user's primary key, as the key of its group and revocation events."""
    return str(getattr(user, "pk", user))


def user_revoked(user: Any, session_key: str | None, reason: str) -> dict[str, Any]:
    """Close the live sockets of ``user``: those of one session, or all (``session_key`` None)."""
    return {
        "type": USER_REVOKED,
        "v": VERSION,
        "user": user_key(user),
        "session": session_key,
        "reason": reason,
    }
