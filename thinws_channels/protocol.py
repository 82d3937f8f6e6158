"""The ThinWS wire protocol, version 1: pure parsing, validation and frame building.

Nothing here does I/O or imports Django: this module is what client authors read and what the
fuzz tests hammer. ``docs/protocol.md`` is its prose twin.

A client frame is checked in this order, and the first failure is the reply: JSON, envelope
shape and ``type``, known type, ``messageID``, connected (the consumer's check), fields,
authorization, action. :func:`read_frame` covers the first four, :func:`validate_fields` the
fields of a frame that passed them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson

PROTOCOL_VERSION = 1

MAX_MESSAGE_ID_LENGTH = 64
MAX_CONNECTION_ID_LENGTH = 128
MAX_ROOM_ID_LENGTH = 200
MAX_SAFE_INTEGER = 2**53 - 1  # integer messageIDs: |n| < 2**53

GROUP_PREFIX = "thinws.room."
CONNECTION_GROUP_PREFIX = "thinws.conn."
USER_GROUP_PREFIX = "thinws.user."


class FrameType(StrEnum):
    CONNECT = "connect"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    MESSAGE = "message"
    DISCONNECT = "disconnect"


class ErrorCode(StrEnum):
    """The closed set of error codes; ``docs/protocol.md`` gives each one's meaning."""

    INVALID_JSON = "invalid_json"
    UNSUPPORTED_DATA = "unsupported_data"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_TYPE = "unknown_type"
    NOT_CONNECTED = "not_connected"
    ALREADY_CONNECTED = "already_connected"
    FORBIDDEN = "forbidden"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    LIMIT_EXCEEDED = "limit_exceeded"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (daphne only sends 1000 and 3000-4999)."""

    NORMAL = 1000  # after the ack of ``disconnect``: do not reconnect
    MESSAGE_TOO_BIG = 1009  # a frame over the server's limit (daphne 4.2 drops TCP instead: 1006)
    REFUSED = 4001  # connect refused or credentials revoked
    UNSUPPORTED_DATA = 4003  # a binary frame, after an ``unsupported_data`` error
    POLICY = 4008  # rate-limit abuse, slow consumer
    TOO_LARGE = 4009  # a frame over the app's own size limit, after a ``too_large`` error
    GOING_AWAY = 4012  # the server is shutting down: reconnect elsewhere now


MessageID = str | int | None


class ProtocolError(ValueError):
    """A client frame that cannot be accepted; becomes one ``error`` reply."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        message_id: MessageID = None,
        *,
        close_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_id = message_id
        self.close_code = close_code  # set when the error is fatal: the socket is then closed

    def frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.message_id)


@dataclass(frozen=True, slots=True)
class Frame:
    """A client frame that passed the JSON, shape, type and ``messageID`` checks."""

    type: FrameType
    message_id: MessageID
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A client frame whose fields are valid for its type."""

    type: FrameType
    message_id: MessageID
    connection_id: str | None = None
    room_id: str | None = None
    payload: Any = None
    legacy: bool = False  # the payload came under the 1.0.x key ``message``
    token: str | None = None


def decode(text: str | bytes) -> Any:
    """Parse one frame's JSON text; raise ``invalid_json`` with the parser's reason."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"the frame is not valid JSON: {exc}") from None


def lenient_message_id(data: Any) -> MessageID:
    """A decoded frame's messageID when it has a valid one, else None."""
    return _lenient_message_id(data) if isinstance(data, dict) else None


def _lenient_message_id(data: dict[str, Any]) -> MessageID:
    """The frame's messageID when it is valid, else None: what an early error echoes."""
    try:
        return _message_id(data)
    except ProtocolError:
        return None


def _message_id(data: dict[str, Any]) -> MessageID:
    if "messageID" not in data:
        return None
    value = data["messageID"]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"'messageID' must be a string of 1..{MAX_MESSAGE_ID_LENGTH} characters or an "
            f"integer with absolute value below 2**53, got {_describe(value)}",
        )
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ProtocolError(
                ErrorCode.INVALID_ENVELOPE,
                f"'messageID' {value!r} is out of range: integers must have absolute value "
                "below 2**53",
            )
        return value
    if not 1 <= len(value) <= MAX_MESSAGE_ID_LENGTH:
        raise ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"'messageID' {_short(value)!r} has {len(value)} characters, expected "
            f"1..{MAX_MESSAGE_ID_LENGTH}",
        )
    return value


def read_frame(data: Any) -> Frame:
    """Check a decoded frame's shape, ``type`` and ``messageID``, in that order."""
    if not isinstance(data, dict):
        raise ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"a frame must be a JSON object, got {_json_type(data)}",
        )
    if "type" not in data:
        raise ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            "the frame has no 'type' field",
            _lenient_message_id(data),
        )
    raw_type = data["type"]
    if not isinstance(raw_type, str):
        raise ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"'type' must be a string, got {_describe(raw_type)}",
            _lenient_message_id(data),
        )
    try:
        frame_type = FrameType(raw_type)
    except ValueError:
        known = ", ".join(t.value for t in FrameType)
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown frame type {_short(raw_type)!r}, expected one of: {known}",
            _lenient_message_id(data),
        ) from None
    return Frame(frame_type, _message_id(data), data)


def _text_field(data: dict[str, Any], name: str, max_length: int, message_id: MessageID) -> str:
    if name not in data:
        raise ProtocolError(ErrorCode.INVALID_ENVELOPE, f"'{name}' is required", message_id)
    value = data[name]
    if not isinstance(value, str):
        raise ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"'{name}' must be a string, got {_describe(value)}",
            message_id,
        )
    if not 1 <= len(value) <= max_length:
        raise ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"'{name}' {_short(value)!r} has {len(value)} characters, expected 1..{max_length}",
            message_id,
        )
    for index, char in enumerate(value):
        category = unicodedata.category(char)
        if category in ("Cc", "Cs"):
            # orjson refuses lone surrogates in frames; server-side callers can still pass one.
            what = "control character" if category == "Cc" else "lone surrogate"
            raise ProtocolError(
                ErrorCode.INVALID_ENVELOPE,
                f"'{name}' {_short(value)!r} contains the {what} {char!r} at position {index}",
                message_id,
            )
    return value


def validate_fields(
    frame: Frame,
    *,
    max_connection_id_length: int = MAX_CONNECTION_ID_LENGTH,
    max_room_id_length: int = MAX_ROOM_ID_LENGTH,
) -> Envelope:
    """Check the fields the frame's type needs; ignore the ones it does not.

    The maximum lengths may be lowered (a server's settings), never raised past the protocol's.
    """
    data, message_id = frame.data, frame.message_id
    max_connection_id_length = min(max_connection_id_length, MAX_CONNECTION_ID_LENGTH)
    max_room_id_length = min(max_room_id_length, MAX_ROOM_ID_LENGTH)
    if frame.type is FrameType.CONNECT:
        token = data.get("token")
        if token is not None and not isinstance(token, str):
            raise ProtocolError(
                ErrorCode.INVALID_ENVELOPE,
                f"'token' must be a string, got {_describe(token)}",
                message_id,
            )
        connection_id = _text_field(data, "connectionID", max_connection_id_length, message_id)
        return Envelope(frame.type, message_id, connection_id=connection_id, token=token)
    if frame.type is FrameType.DISCONNECT:
        return Envelope(frame.type, message_id)
    room_id = _text_field(data, "roomID", max_room_id_length, message_id)
    if frame.type is not FrameType.MESSAGE:
        return Envelope(frame.type, message_id, room_id=room_id)
    if "payload" in data:
        return Envelope(frame.type, message_id, room_id=room_id, payload=data["payload"])
    if "message" in data:
        return Envelope(
            frame.type, message_id, room_id=room_id, payload=data["message"], legacy=True
        )
    raise ProtocolError(
        ErrorCode.INVALID_ENVELOPE,
        "a 'message' frame needs a 'payload' (any JSON value, null included)",
        message_id,
    )


def validate_room_id(room_id: str) -> str:
    """Check a room id by the envelope's rules (for server-side callers); raise ProtocolError."""
    return _text_field({"roomID": room_id}, "roomID", MAX_ROOM_ID_LENGTH, None)


def check_size(text: str, max_bytes: int) -> None:
    """Refuse a text frame over ``max_bytes`` bytes of UTF-8 with ``too_large``."""
    if len(text) * 4 <= max_bytes:  # a character is at most 4 bytes: no need to encode
        return
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"the frame has {size} bytes, the limit is {max_bytes}",
            close_code=CloseCode.TOO_LARGE,
        )


def check_depth(data: Any, max_depth: int, message_id: MessageID = None) -> None:
    """Refuse JSON nested deeper than ``max_depth`` arrays and objects with ``too_large``.

    The frame object itself is depth 1, so a payload object inside it is depth 2.
    """
    level: list[Any] = [data]
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"the frame is nested more than {max_depth} arrays and objects deep",
                message_id,
            )
        children: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                children.extend(v for v in value.values() if isinstance(v, dict | list))
            elif isinstance(value, list):
                children.extend(v for v in value if isinstance(v, dict | list))
        level = children


def parse(text: str | bytes) -> Envelope:
    """Text to a validated envelope, all checks but the consumer's own (connected, auth)."""
    return validate_fields(read_frame(decode(text)))


# Server to client -----------------------------------------------------------------------------


def ack_frame(message_id: MessageID, **fields: Any) -> dict[str, Any]:
    return {"type": "ack", "messageID": message_id, **fields}


def error_frame(code: ErrorCode, message: str, message_id: MessageID = None) -> dict[str, Any]:
    return {"type": "error", "messageID": message_id, "code": str(code), "message": message}


def room_message_frame(
    room_id: str,
    payload: Any,
    *,
    sender: str | None,
    message_id: str,
    legacy_key: bool = False,
) -> dict[str, Any]:
    """A relayed room message; ``legacy_key`` adds the payload under ``message`` too."""
    frame = {
        "type": "message",
        "roomID": room_id,
        "payload": payload,
        "connectionID": sender,
        "messageID": message_id,
    }
    if legacy_key:
        frame["message"] = payload
    return frame


def encode(frame: dict[str, Any]) -> str:
    """One frame to JSON text, compact, UTF-8 characters left as they are."""
    return orjson.dumps(frame).decode()


# Channel-layer group names --------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def room_group(room_id: str) -> str:
    """The channel-layer group of a room: ``thinws.room.`` + 40 hex digits of SHA-256."""
    return GROUP_PREFIX + _digest(room_id)


def connection_group(connection_id: str) -> str:
    """The group through which the live sockets of one connectionID hear of each other."""
    return CONNECTION_GROUP_PREFIX + _digest(connection_id)


def user_group(user_key: str) -> str:
    """The group through which a user's live sockets hear that their credentials were revoked."""
    return USER_GROUP_PREFIX + _digest(user_key)


def storage_key(identifier: str) -> str:
    """The 40 hex digits that identify a room or connectionID in the database.

    Lookups go through this key, so ids compare exactly (no case folding, no normalisation)
    whatever the database's collation.
    """
    return _digest(identifier)


# Helpers for messages -------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _describe(value: Any) -> str:
    """A value named for a person: its JSON type, and the value itself when it is short."""
    kind = _json_type(value)
    if value is None or isinstance(value, list | dict):
        return kind
    return f"{kind} {_short(value)!r}"


def _short(value: Any, limit: int = 60) -> Any:
    """Long values are cut in error messages, so a reply never echoes a whole frame."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value
