"""Property tests that fuzz the real consumer: hypothesis drives ``ThinWSConsumer`` frame by frame.

Everything is real: the consumer, the hub, the in-memory channel layer of tests/settings.py and
the SQLite test database, driven through ``channels.testing.WebsocketCommunicator``. Each example
opens one socket, sends a sequence of frames (arbitrary JSON values, arbitrary text, binary
frames, or envelopes that are mostly valid), and checks every reply against a small reference
model of docs/protocol.md and the security spec, written here independently of
``thinws_channels.protocol`` (only the JSON reader is shared: the protocol names orjson as its
parser). The properties:

- every text frame gets exactly one reply, an ``ack`` or an ``error``, in order, carrying the
  frame's messageID when it had a valid one, and the code the model predicts (so only codes of
  ``ErrorCode``, never ``internal``); a publish's ack comes with exactly one echo of the message;
- a fatal frame (binary 4003, refused connect 4001, oversized 4009, rate abuse 4008, disconnect
  1000) is followed by the close and then by nothing at all, whatever the client sends;
- after every frame the database holds what the model says (so a refused frame changes nothing:
  this is also asserted explicitly, row counts before and after it), and after a non-fatal error
  the socket answers the next frame as usual;
- the consumer's task never fails (the communicator's ``disconnect`` re-raises its exception)
  and nothing of ``thinws_channels`` logs a warning or an error.

The suite runs a fixed, derandomized set of examples per property (CI). For a long local run
with fresh random examples each time (about 25 minutes on 2 cores)::

    THINWS_FUZZ_EXAMPLES=5000 python -m pytest -p no:cacheprovider -o timeout=0 tests/test_fuzz.py

``THINWS_FUZZ_EXAMPLES`` is the number of examples of each property; ``-o timeout=0`` lifts the
suite's per-test timeout. A failure prints the shrunk frames and a ``@reproduce_failure`` line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, TypeGuard

import orjson
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.db.backends.signals import connection_created
from django.test import override_settings
from hypothesis import (
    HealthCheck,
    Phase,
    currently_in_test_context,
    event,
    example,
    given,
    settings,
)
from hypothesis import strategies as st

from tests.consumer_kit import PATH, TIMEOUT, application
from thinws_channels import tokens
from thinws_channels.hub import Hub
from thinws_channels.models import Connection, Presence, Room, ServerInstance, Subscription
from thinws_channels.protocol import ErrorCode

pytestmark = pytest.mark.usefixtures("transactional_db")

# Hypothesis settings -----------------------------------------------------------------------------

_LONG_RUN = int(os.environ.get("THINWS_FUZZ_EXAMPLES") or 0)

settings.register_profile(
    "thinws-fuzz-ci",
    derandomize=True,  # the same examples on every run: CI never fails at random
    database=None,
    deadline=None,
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    # transactional_db and caplog are function-scoped, so hypothesis would warn that they are
    # not reset between examples. Every example resets what it depends on itself: it deletes
    # the app's rows (reset_database), clears caplog, and opens a socket of its own on an event
    # loop of its own (async_to_sync), with the channel layer flushed.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
settings.register_profile(
    "thinws-fuzz-long",
    settings.get_profile("thinws-fuzz-ci"),
    derandomize=False,  # new examples on every long run
    max_examples=max(_LONG_RUN, 1),
)
_PROFILE = settings.get_profile("thinws-fuzz-long" if _LONG_RUN else "thinws-fuzz-ci")


def fuzz(ci_examples: int) -> settings:
    """The settings of one property: ``ci_examples`` in CI, THINWS_FUZZ_EXAMPLES in a long run."""
    if _LONG_RUN:
        return settings(_PROFILE)
    return settings(_PROFILE, max_examples=ci_examples)


# The reference model -----------------------------------------------------------------------------

TYPES = ("connect", "subscribe", "unsubscribe", "message", "disconnect")
KEYS = ("type", "messageID", "connectionID", "roomID", "payload", "message", "token")
MAX_SAFE = 2**53 - 1
CODES = {str(code) for code in ErrorCode}
# Unicode category Cc, as docs/protocol.md spells it out.
CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)))
SYNC = {"type": "thinws-fuzz-sync", "messageID": "sync"}  # ends a session: an unknown type


@dataclass(frozen=True)
class Rules:
    """What a settings profile means for the model."""

    settings: dict[str, Any] | None  # THINWS_CHANNELS for the test; None: tests/settings.py's
    anonymous_open: bool
    max_frame_bytes: int | None = 65536
    rate_burst: int | None = None  # None: no frame of a session is ever rate limited
    close_after: int | None = None
    max_depth: int | None = 32
    max_rooms: int | None = 100
    max_connection_id: int = 128
    max_room_id: int = 200


# tests/settings.py: ANONYMOUS "open", no rate limit, the other limits at their defaults.
OPEN = Rules(settings=None, anonymous_open=True)
# The secure defaults. Their rate limit (30/s, bursts of 60) never refuses a frame here: a
# session sends fewer than 60 frames.
SECURE = Rules(settings={}, anonymous_open=False)
# Tight limits, so that fuzzing reaches every limit. The rate is so low that the bucket refills
# by less than one frame during a test: the first RATE_BURST frames pass, then none.
TIGHT = Rules(
    settings={
        "RATE_LIMIT": 1e-9,
        "RATE_BURST": 10,
        "RATE_LIMIT_CLOSE_AFTER": 3,
        "MAX_FRAME_BYTES": 400,
        "MAX_PAYLOAD_DEPTH": 4,
        "MAX_ROOMS_PER_CONNECTION": 2,
        "MAX_CONNECTION_ID_LENGTH": 6,
        "MAX_ROOM_ID_LENGTH": 8,
    },
    anonymous_open=False,
    max_frame_bytes=400,
    rate_burst=10,
    close_after=3,
    max_depth=4,
    max_rooms=2,
    max_connection_id=6,
    max_room_id=8,
)
MAX_FRAMES = 40  # per session, under SECURE's burst of 60


@dataclass(frozen=True)
class Text:
    """A text frame sent as it is."""

    text: str


@dataclass(frozen=True)
class Binary:
    data: bytes


@dataclass(frozen=True)
class Value:
    """A JSON value, encoded with json.dumps when sent (after its TokenRef is resolved)."""

    value: Any
    ascii: bool = False


@dataclass(frozen=True)
class TokenRef:
    """A token made at run time for the frame's connectionID (tokens carry an expiry time)."""

    kind: str  # valid, rooms, other, expired, tampered


TOKEN_ROOMS = ("lob*", "😀")  # the room patterns of a "rooms" token


@dataclass(frozen=True)
class Token:
    connection_id: str
    valid: bool
    rooms: tuple[str, ...] | None = None


def make_token(kind: str, connection_id: Any, issued: dict[str, Token]) -> str:
    """A token of ``kind`` for ``connection_id``, recorded in ``issued`` for the model."""
    cid = connection_id if isinstance(connection_id, str) else "c-1"
    try:
        tokens.issue_token(cid)
    except ValueError:  # an id the protocol refuses (ProtocolError is a ValueError)
        cid = "c-1"
    if kind == "valid":
        token, info = tokens.issue_token(cid), Token(cid, True)
    elif kind == "rooms":
        token = tokens.issue_token(cid, rooms=list(TOKEN_ROOMS))
        info = Token(cid, True, TOKEN_ROOMS)
    elif kind == "other":
        other = "other-" + cid[:20]
        token, info = tokens.issue_token(other), Token(other, True)
    elif kind == "expired":  # expired an hour after the epoch; issue_token cannot make one
        token = signing.dumps({"c": cid, "e": 3600}, salt=tokens.SALT, compress=True)
        info = Token(cid, False)
    else:  # tampered: one character of the signed value changed
        good = tokens.issue_token(cid)
        token = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
        info = Token(cid, False)
    issued[token] = info
    return token


def resolve(value: Any, issued: dict[str, Token]) -> Any:
    if isinstance(value, dict) and isinstance(value.get("token"), TokenRef):
        token = make_token(value["token"].kind, value.get("connectionID"), issued)
        return {**value, "token": token}
    return value


def encode(frame: Text | Value, issued: dict[str, Token]) -> str:
    if isinstance(frame, Text):
        return frame.text
    return json.dumps(resolve(frame.value, issued), ensure_ascii=frame.ascii)


@dataclass
class Expected:
    """The model's reply to one frame."""

    code: str | None  # None: an ack
    message_id: Any
    ack: dict[str, Any] | None = None  # the exact ack (a message ack also has an "id")
    echo: dict[str, Any] | None = None  # a message ack's echo, without its "messageID"
    close: int | None = None  # the close that follows the reply


def _valid_message_id(data: dict[str, Any]) -> tuple[bool, Any]:
    if "messageID" not in data:
        return True, None
    value = data["messageID"]
    valid = (isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_SAFE) or (
        isinstance(value, str) and 1 <= len(value) <= 64
    )
    return (True, value) if valid else (False, None)


def _valid_id(value: Any, max_length: int) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= max_length
        and not any(char in CONTROL for char in value)
    )


def _depth(value: Any) -> int:
    """Levels of arrays and objects (iterative: orjson reads up to 1024 levels)."""
    depth, level = 0, [value]
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return depth


@dataclass
class Model:
    """One socket as docs/protocol.md and the security spec describe it."""

    rules: Rules
    issued: dict[str, Token] = field(default_factory=dict)
    connection_id: str | None = None
    token_rooms: tuple[str, ...] | None = None
    rooms: list[str] = field(default_factory=list)
    rooms_ever: set[str] = field(default_factory=set)
    online: bool = False
    closed: bool = False
    tokens_left: int = 0
    refused_in_a_row: int = 0

    def __post_init__(self) -> None:
        self.tokens_left = self.rules.rate_burst or 0

    def counts(self) -> tuple[int, int, int, int]:
        """Connection, Room, Subscription, Presence rows."""
        return (
            int(self.connection_id is not None),
            len(self.rooms_ever),
            len(self.rooms),
            int(self.online),
        )

    def error(self, code: ErrorCode, message_id: Any, close: int | None = None) -> Expected:
        if close is not None:
            self.closed = True
        return Expected(str(code), message_id, close=close)

    def ack(self, message_id: Any, **fields: Any) -> Expected:
        return Expected(None, message_id, ack={"type": "ack", "messageID": message_id, **fields})

    def predict(
        self, frame: Text | Value | Binary, text: str | None, queued: int = 0
    ) -> Expected | None:
        """The reply to ``frame`` (sent as ``text``, with ``queued`` frames sent behind it and
        not read yet); None when nothing may answer it."""
        if self.closed:
            return None
        rules = self.rules
        if rules.rate_burst is not None and queued > rules.rate_burst + (rules.close_after or 0):
            # A flood: more frames wait in the server's queue than the bucket could ever take.
            return self.error(ErrorCode.RATE_LIMITED, None, close=4008)
        if isinstance(frame, Binary):
            return self.error(ErrorCode.UNSUPPORTED_DATA, None, close=4003)
        assert text is not None
        # The order of the checks: size, JSON, rate limit, shape and type, messageID, depth,
        # connected, fields, authorization, action. (The spec lists the rate limit first; the
        # consumer reads the frame before, so that a rate_limited error can carry its
        # messageID, and a frame over the size limit is refused without taking a token.)
        size = len(text.encode("utf-8", "surrogatepass"))
        if rules.max_frame_bytes is not None and size > rules.max_frame_bytes:
            return self.error(ErrorCode.TOO_LARGE, None, close=4009)
        try:
            data, is_json = orjson.loads(text), True
        except orjson.JSONDecodeError:
            data, is_json = None, False
        if rules.rate_burst is not None:
            if self.tokens_left >= 1:
                self.tokens_left -= 1
                self.refused_in_a_row = 0
            else:
                self.refused_in_a_row += 1
                fatal = rules.close_after is not None and self.refused_in_a_row >= rules.close_after
                lenient = _valid_message_id(data)[1] if isinstance(data, dict) else None
                return self.error(ErrorCode.RATE_LIMITED, lenient, 4008 if fatal else None)
        if not is_json:
            return self.error(ErrorCode.INVALID_JSON, None)
        if not isinstance(data, dict):
            return self.error(ErrorCode.INVALID_ENVELOPE, None)
        lenient = _valid_message_id(data)[1]
        if not isinstance(data.get("type"), str):
            return self.error(ErrorCode.INVALID_ENVELOPE, lenient)
        type_ = data["type"]
        if type_ not in TYPES:
            return self.error(ErrorCode.UNKNOWN_TYPE, lenient)
        valid, message_id = _valid_message_id(data)
        if not valid:
            return self.error(ErrorCode.INVALID_ENVELOPE, None)
        if rules.max_depth is not None and _depth(data) > rules.max_depth:
            return self.error(ErrorCode.TOO_LARGE, message_id)
        if type_ == "connect" and self.connection_id is not None:
            return self.error(ErrorCode.ALREADY_CONNECTED, message_id)
        if type_ != "connect" and self.connection_id is None:
            return self.error(ErrorCode.NOT_CONNECTED, message_id)
        if type_ == "connect":
            return self.connect(data, message_id)
        if type_ == "disconnect":
            self.online, self.closed = False, True
            return Expected(None, message_id, ack={"type": "ack", "messageID": None}, close=1000)
        room = data.get("roomID")
        if not _valid_id(room, rules.max_room_id):
            return self.error(ErrorCode.INVALID_ENVELOPE, message_id)
        if type_ == "subscribe":
            if self.token_rooms is not None and not any(
                fnmatchcase(room, pattern) for pattern in self.token_rooms
            ):
                return self.error(ErrorCode.FORBIDDEN, message_id)
            if room not in self.rooms:
                if rules.max_rooms is not None and len(self.rooms) >= rules.max_rooms:
                    return self.error(ErrorCode.LIMIT_EXCEEDED, message_id)
                self.rooms.append(room)
                self.rooms_ever.add(room)
            return self.ack(message_id)
        if type_ == "unsubscribe":
            if room not in self.rooms:
                return self.error(ErrorCode.NOT_SUBSCRIBED, message_id)
            self.rooms.remove(room)
            return self.ack(message_id)
        # message
        if "payload" in data:
            payload, legacy = data["payload"], False
        elif "message" in data:
            payload, legacy = data["message"], True
        else:
            return self.error(ErrorCode.INVALID_ENVELOPE, message_id)
        if room not in self.rooms:
            return self.error(ErrorCode.NOT_SUBSCRIBED, message_id)
        echo = {
            "type": "message",
            "roomID": room,
            "payload": payload,
            "connectionID": self.connection_id,
        }
        if legacy:
            echo["message"] = payload
        return Expected(None, message_id, ack={"type": "ack", "messageID": None}, echo=echo)

    def connect(self, data: dict[str, Any], message_id: Any) -> Expected:
        token = data.get("token")
        if token is not None and not isinstance(token, str):
            return self.error(ErrorCode.INVALID_ENVELOPE, message_id)
        connection_id = data.get("connectionID")
        if not _valid_id(connection_id, self.rules.max_connection_id):
            return self.error(ErrorCode.INVALID_ENVELOPE, message_id)
        if token is not None:
            info = self.issued.get(token)
            if info is None or not info.valid or info.connection_id != connection_id:
                return self.error(ErrorCode.FORBIDDEN, message_id, close=4001)
            self.token_rooms = info.rooms
        elif not self.rules.anonymous_open:
            return self.error(ErrorCode.FORBIDDEN, message_id, close=4001)
        self.connection_id, self.online = connection_id, True
        return self.ack(message_id, protocol=1, connectionID=connection_id, rooms=[])


# Running a session -------------------------------------------------------------------------------


def _no_fsync(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous = OFF")


@pytest.fixture(autouse=True, scope="module")
def _fast_sqlite() -> Iterator[None]:
    """SQLite without fsync on commit, for the database connections of this module's tests: the
    consumer commits on every connect and subscribe, and examples run by the thousand. It only
    changes what a power cut would lose (nothing of value in a test database)."""
    connection_created.connect(_no_fsync)
    try:
        yield
    finally:
        connection_created.disconnect(_no_fsync)


def _counts() -> tuple[int, int, int, int]:
    return (
        Connection.objects.count(),
        Room.objects.count(),
        Subscription.objects.count(),
        Presence.objects.count(),
    )


db_counts = database_sync_to_async(_counts)


def reset_database() -> None:
    """Delete the app's rows: each example starts from an empty database."""
    for model in (Presence, Subscription, Connection, Room, ServerInstance):
        model.objects.all().delete()


def _same(actual: Any, expected: Any) -> bool:
    """Equal and of the same JSON type (7 is not "7", and 1 is not true)."""
    return type(actual) is type(expected) and actual == expected


class Session:
    """One socket driven through a list of frames, each reply checked against the model."""

    def __init__(self, rules: Rules, *, pipelined: bool) -> None:
        self.model = Model(rules)
        self.pipelined = pipelined
        self.comm = WebsocketCommunicator(application, PATH)
        self.comm.scope["client"] = ["127.0.0.1", 50000]
        self.replies: list[dict[str, Any]] = []  # every ack and error, in order
        self.closed_with: int | None = None
        self.echoes: dict[str, dict[str, Any]] = {}  # server id -> echo received
        self.published: dict[str, dict[str, Any]] = {}  # server id -> expected echo
        self.outcomes: list[Expected | None] = []  # for the statistics of hypothesis

    async def run(self, frames: list[Text | Value | Binary]) -> None:
        await get_channel_layer().flush()
        accepted, _ = await self.comm.connect(timeout=TIMEOUT)
        assert accepted
        try:
            await self._run(frames)
        finally:
            # Re-raises an exception that ended the consumer's task.
            await self.comm.disconnect(timeout=TIMEOUT)
        self._check_leftovers()
        assert await db_counts() == (*self.model.counts()[:3], 0), "rows left after close"
        assert not Hub.for_loop().running, "the hub still runs after its last socket closed"

    async def _run(self, frames: list[Text | Value | Binary]) -> None:
        frames = [*frames, Value(SYNC)]  # its reply shows that nothing else was pending
        expected: list[tuple[Text | Value | Binary, Expected | None]] = []
        for index, frame in enumerate(frames):
            # Sent all at once, the frames wait in the consumer's queue (asyncio.Queue.put does
            # not yield to the consumer's task): the consumer sees how many are behind each.
            queued = len(frames) - index - 1 if self.pipelined else 0
            text = None if isinstance(frame, Binary) else encode(frame, self.model.issued)
            before = None if self.pipelined else await db_counts()
            if isinstance(frame, Binary):
                await self.comm.send_input({"type": "websocket.receive", "bytes": frame.data})
            else:
                await self.comm.send_input({"type": "websocket.receive", "text": text})
            outcome = self.model.predict(frame, text, queued)
            self.outcomes.append(outcome)
            if self.pipelined:
                expected.append((frame, outcome))
                continue
            if outcome is not None:
                await self._check_reply(frame, outcome)
                after = await db_counts()
                if outcome.close is None:
                    assert after == self.model.counts(), (frame, outcome)
                    if outcome.code is not None:
                        assert after == before, f"the refused frame {frame} changed the database"
                else:  # the socket goes offline after its close
                    assert after[:3] == self.model.counts()[:3], (frame, outcome)
        for frame, outcome in expected:
            if outcome is not None:
                await self._check_reply(frame, outcome)
        for server_id, echo in self.echoes.items():
            assert echo == self.published.get(server_id), ("an echo of no publish", echo)
        if not self.pipelined:
            # With one frame at a time the socket is in the room while its publish travels.
            assert self.echoes.keys() == self.published.keys()

    async def _output(self, frame: Any) -> dict[str, Any]:
        try:
            return await self.comm.receive_output(timeout=TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no reply to {frame}") from None

    def _read(self, message: dict[str, Any]) -> dict[str, Any]:
        assert message["type"] == "websocket.send", message
        assert message.get("bytes") is None and isinstance(message.get("text"), str), message
        frame = orjson.loads(message["text"])
        assert isinstance(frame, dict), frame
        return frame

    def _echo(self, echo: dict[str, Any]) -> None:
        server_id = echo.get("messageID")
        assert isinstance(server_id, str) and server_id not in self.echoes, echo
        self.echoes[server_id] = echo

    async def _check_reply(self, frame: Any, outcome: Expected) -> None:
        while True:
            message = await self._output(frame)
            assert message["type"] != "websocket.close", (
                f"closed with {message.get('code')} instead of answering {frame}"
            )
            reply = self._read(message)
            if reply.get("type") == "message":
                self._echo(reply)
                continue
            break
        self.replies.append(reply)
        assert reply.get("type") in ("ack", "error"), reply
        assert reply.get("code") in (CODES if reply["type"] == "error" else {None}), reply
        assert reply.get("code") == outcome.code, (frame, reply, outcome)
        assert _same(reply["messageID"], outcome.message_id), (frame, reply, outcome)
        if outcome.code is not None:
            assert set(reply) == {"type", "messageID", "code", "message"}, reply
            assert isinstance(reply["message"], str) and reply["message"], reply
        else:
            assert outcome.ack is not None
            wanted = {**outcome.ack, "messageID": outcome.message_id}
            if outcome.echo is not None:
                server_id = reply.get("id")
                assert isinstance(server_id, str) and server_id, reply
                wanted["id"] = server_id
                self.published[server_id] = {**outcome.echo, "messageID": server_id}
                if not self.pipelined and server_id not in self.echoes:
                    self._echo(self._read(await self._output(f"the echo of {frame}")))
            assert reply == wanted, (frame, reply, wanted)
        if outcome.close is not None:
            message = await self._output(f"the close after {frame}")
            assert message == {"type": "websocket.close", "code": outcome.close}, message
            self.closed_with = outcome.close

    def _check_leftovers(self) -> None:
        """What the consumer sent after the last expected frame: at most late echoes."""
        queue = self.comm.output_queue
        while not queue.empty():
            message = queue.get_nowait()
            assert self.closed_with is None, f"sent after its close {self.closed_with}: {message}"
            echo = self._read(message)
            assert echo.get("type") == "message", f"an unexpected frame: {echo}"
            self._echo(echo)
            assert echo == self.published.get(echo["messageID"]), echo


def run_session(
    rules: Rules,
    frames: list[Text | Value | Binary],
    caplog: pytest.LogCaptureFixture,
    *,
    pipelined: bool = False,
) -> Session:
    """Run one example from a clean slate; return the session for further assertions."""
    assert len(frames) < MAX_FRAMES
    reset_database()
    caplog.clear()
    session = Session(rules, pipelined=pipelined)
    if rules.settings is None:
        async_to_sync(session.run)(frames)
    else:
        with override_settings(THINWS_CHANNELS=rules.settings):
            async_to_sync(session.run)(frames)
    logged = [
        record
        for record in caplog.records
        if record.name.startswith("thinws_channels") and record.levelno >= logging.WARNING
    ]
    assert not logged, [record.getMessage() for record in logged]
    for outcome in session.outcomes if currently_in_test_context() else ():
        # Shown by pytest --hypothesis-show-statistics.
        if outcome is None:
            event("a frame after the close")
        else:
            event((outcome.code or "ack") + (f", close {outcome.close}" if outcome.close else ""))
    return session


# Strategies --------------------------------------------------------------------------------------

MISSING: Any = object()  # a field left out of a frame

ROOMS = ["lobby", "lob", "Lobby", " lobby ", "大厅", "😀", "r" * 200]
CONNECTION_IDS = ["c-1", "c-2", "😀", "-12345", "x" * 128]
# Characters that the protocol treats specially, mixed into arbitrary text.
SPECIAL = [
    *sorted(CONTROL),
    "\u200d",
    "\u2028",
    "\ufeff",
    "\ue000",
    "😀",
    "\uff43",  # a full-width c
    "\u0430",  # a Cyrillic a
    "é",
    "\u0301",  # a combining accent
    "\ud800",  # lone surrogates: not JSON, escaped or raw
    "\udfff",
]


def weighted(often: st.SearchStrategy[Any], rarely: st.SearchStrategy[Any], odds: int = 4) -> Any:
    """``often``, ``odds`` times out of ``odds + 1``; shrinks towards ``often``."""
    return st.sampled_from([often] * odds + [rarely]).flatmap(lambda strategy: strategy)


def json_of(scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[str]) -> Any:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=10,
    )


# Text a client can send: any Unicode but lone surrogates, the protocol's own words more often.
clean_texts = st.text(
    st.characters() | st.sampled_from(SPECIAL[:-2]), max_size=20
) | st.sampled_from([*TYPES, *ROOMS, *CONNECTION_IDS, "Connect", ""])
clean_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(
        [0, -1, MAX_SAFE, -MAX_SAFE, 2**53, -(2**53), 2**63, 2**64 - 1, 2**64, -(2**63) - 1]
    )
    | st.integers(min_value=2**64, max_value=10**300)  # beyond 64 bits: read as floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | clean_texts
)
# Values that json.dumps writes but that are not JSON, or that no double can hold: invalid_json.
not_json = st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 10**400, -(10**309), "\ud800", "a\udfffb"]
)
json_keys = (
    st.sampled_from(KEYS) | st.sampled_from(["RoomID", "Type", "messageId", ""]) | clean_texts
)
# Arrays nested n deep: the depth limit is 32 (4 in TIGHT), counting the frame object.
nested = st.integers(min_value=1, max_value=40).map(lambda n: json.loads("[" * n + "]" * n))
clean_values = json_of(clean_scalars, json_keys) | nested
json_values = json_of(weighted(clean_scalars, not_json, odds=30), json_keys)
# Frames: any JSON value, objects (with the protocol's keys, mostly) more often than not.
json_frames = st.builds(
    Value,
    st.dictionaries(json_keys, json_values, min_size=1, max_size=7) | json_values,
    st.booleans(),
)

valid_message_ids = (
    st.integers(min_value=-MAX_SAFE, max_value=MAX_SAFE)
    | st.text(st.characters() | st.sampled_from(SPECIAL[:-2]), min_size=1, max_size=64)
    | st.sampled_from([0, MAX_SAFE, -MAX_SAFE, "7", "😀" * 64])
)
message_ids = weighted(
    valid_message_ids,
    st.sampled_from(
        [MISSING, None, "", "x" * 65, 2**53, -(2**53), 2**64, 7.0, 1e20, -0.0, True, False, [], {}]
    )
    | clean_values,
    odds=8,
)
connection_ids = weighted(
    st.sampled_from(CONNECTION_IDS),
    st.sampled_from([MISSING, "", "x" * 129, "c\x00", "c\x85", "c\n", 42, None, [], {}])
    | clean_texts,
    odds=6,
)
room_ids = weighted(
    st.sampled_from(ROOMS),
    st.sampled_from([MISSING, "", "r" * 201, "lob\x00by", "lobby\x7f", 5, None, ["lobby"]])
    | clean_texts,
    odds=6,
)
token_values = weighted(
    st.sampled_from([TokenRef("valid"), TokenRef("valid"), TokenRef("rooms"), MISSING]),
    st.sampled_from(
        [
            TokenRef("other"),
            TokenRef("expired"),
            TokenRef("tampered"),
            MISSING,
            None,
            "not-a-token",
            "",
            5,
            ["token"],
        ]
    )
    | st.text(max_size=30),
    odds=3,
)
frame_types = weighted(
    # disconnect ends a session: sent less often than the frames that build up its state.
    st.sampled_from([*TYPES, *TYPES[1:4], *TYPES[1:4]]),
    st.sampled_from(
        [
            MISSING,
            "Connect",
            "CONNECT",
            "connect ",
            "\uff43\uff4f\uff4e\uff4e\uff45\uff43\uff54",
            "",
            "ping",
        ]
    )
    | clean_scalars,
    odds=6,
)


@st.composite
def envelopes(draw: st.DrawFn, *, with_tokens: bool = False, type_: Any = None) -> Value:
    """Mostly valid envelopes: each field is valid most of the time, and of the right type's."""
    kind = draw(frame_types) if type_ is None else type_
    fields: dict[str, Any] = {
        "type": kind,
        "messageID": draw(message_ids),
        "connectionID": draw(connection_ids) if kind == "connect" else MISSING,
        "roomID": draw(room_ids) if kind in TYPES[1:4] else MISSING,
        "token": draw(token_values) if with_tokens and kind == "connect" else MISSING,
    }
    if kind == "message":
        shape = draw(st.sampled_from(["payload", "payload", "message", "both", "neither"]))
        if shape in ("payload", "both"):
            fields["payload"] = draw(clean_values)
        if shape in ("message", "both"):
            fields["message"] = draw(clean_values)
    frame = {name: value for name, value in fields.items() if value is not MISSING}
    # Fields the frame's type does not use, and unknown ones.
    extras = weighted(st.just({}), st.dictionaries(json_keys, clean_values, max_size=2), odds=2)
    for name, value in draw(extras).items():
        frame.setdefault(name, value)
    return Value(frame, draw(st.booleans()))


def connect_frame(connection_id: str = "c-1", **fields: Any) -> Value:
    return Value({"type": "connect", "messageID": 0, "connectionID": connection_id, **fields})


VALID_TEXT = '{"type": "connect", "messageID": 1, "connectionID": "c-1"}'
odd_texts = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "null",
        "true",
        "[]",
        "{}",
        '"connect"',
        "{'type': 'connect'}",
        '{"type": "disconnect",}',
        '{"type": "disconnect"} // bye',
        "NaN",
        "Infinity",
        "1e400",
        '{"type": "message", "messageID": 1, "roomID": "lobby", "payload": 1e400}',
        '{"type": "disconnect"}{"type": "disconnect"}',
        '\ufeff{"type": "disconnect"}',
        '{"type": "disconnect", "messageID": "\\ud800"}',
        '{"type": "disconnect", "messageID": "\\ude00\\ud83d"}',
        '{"type": "subscribe", "messageID": "\\ud83d\\ude00", "roomID": "\\ud83d\\ude00"}',
        '{"type": "connect", "messageID": 1, "connectionID": "c\x01"}',
        '{"type": "ping", "messageID": 18446744073709551616}',
        '{"type": "ping", "messageID": 9007199254740991}',
        '{"type": "disconnect", "type": "connect", "connectionID": "c-1", "messageID": 3}',
        '\t{ "type" : "connect" , "messageID" : 1 , "connectionID" : "c-1" }\n',
        "[" * 1024 + "]" * 1024,
        "[" * 1025 + "]" * 1025,
        '{"type": "ping", "messageID": 4, "x": ' + "[" * 40 + "]" * 40 + "}",
        '{"type": "disconnect", "messageID": 5, "payload": ' + "[" * 32 + "]" * 32 + "}",
        VALID_TEXT,
    ]
)


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """A valid frame's text with a slice replaced: near misses of the JSON grammar."""
    base = draw(
        st.sampled_from(
            [
                VALID_TEXT,
                '{"type": "subscribe", "messageID": 2, "roomID": "lobby"}',
                '{"type": "message", "messageID": 3, "roomID": "lobby", "payload": {"a": [1]}}',
            ]
        )
    )
    start = draw(st.integers(0, len(base)))
    end = draw(st.integers(start, min(len(base), start + 3)))
    return (
        base[:start]
        + draw(st.text(st.sampled_from('{}[]",:\\ 0ae\x00😀'), max_size=3))
        + base[end:]
    )


text_frames = st.builds(
    Text,
    st.text(st.characters() | st.sampled_from(SPECIAL)) | odd_texts | mutated_texts(),
)
binary_frames = st.builds(Binary, st.binary(max_size=64))


# Properties --------------------------------------------------------------------------------------


@fuzz(150)
@given(
    connect_first=st.booleans(),
    frames=st.lists(json_frames, min_size=1, max_size=8),
)
def test_arbitrary_json_values(caplog, connect_first, frames):
    """Any JSON value as a frame, before and after ``connect``."""
    run_session(OPEN, [connect_frame()] * connect_first + frames, caplog)


@fuzz(150)
@given(
    connect_first=st.booleans(),
    frames=st.lists(weighted(text_frames, binary_frames, odds=5), min_size=1, max_size=8),
)
@example(connect_first=False, frames=[Binary(b""), Text(VALID_TEXT)])
@example(connect_first=True, frames=[Text("[" * 1025 + "]" * 1025), Text("{}")])
def test_arbitrary_text_and_binary_frames(caplog, connect_first, frames):
    """Any text (not JSON, nearly JSON, not even UTF-8) and binary frames, which are fatal."""
    run_session(OPEN, [connect_frame()] * connect_first + frames, caplog)


@fuzz(200)
@given(
    first=weighted(envelopes(type_="connect"), envelopes()),
    frames=st.lists(envelopes(), min_size=1, max_size=14),
    pipelined=st.booleans(),
)
def test_envelope_sequences(caplog, first, frames, pipelined):
    """Sequences of valid and invalid envelopes: one frame at a time (with the database checked
    after each), or all sent at once (replies still one per frame, in order)."""
    run_session(OPEN, [first, *frames], caplog, pipelined=pipelined)


@fuzz(150)
@given(
    first=weighted(envelopes(with_tokens=True, type_="connect"), envelopes(with_tokens=True)),
    frames=st.lists(envelopes(with_tokens=True), min_size=1, max_size=12),
    pipelined=st.booleans(),
)
def test_envelope_sequences_with_the_secure_defaults(caplog, first, frames, pipelined):
    """THINWS_CHANNELS = {}: connect needs a token (forbidden + 4001 without a valid one for
    exactly its connectionID); a token's room patterns restrict subscribe."""
    run_session(SECURE, [first, *frames], caplog, pipelined=pipelined)


@fuzz(150)
@given(
    first=weighted(
        st.just(connect_frame(token=TokenRef("valid"))),
        envelopes(with_tokens=True, type_="connect"),
        odds=2,
    ),
    frames=st.lists(
        weighted(
            envelopes(with_tokens=True),
            st.one_of(json_frames, text_frames, binary_frames),
            odds=8,
        ),
        min_size=6,
        max_size=24,
    ),
    pipelined=st.booleans(),
)
def test_frames_under_tight_limits(caplog, first, frames, pipelined):
    """Small limits, so that fuzzing reaches them: bursts of 10 frames (then rate_limited, and
    4008 on the 3rd refusal in a row), 400 bytes (too_large + 4009), depth 4 (too_large), 2 rooms
    (limit_exceeded), ids of 6 and 8 characters (invalid_envelope)."""
    run_session(TIGHT, [first, *frames], caplog, pipelined=pipelined)


# Plain examples of the paths above ---------------------------------------------------------------


def test_secure_defaults_refuse_an_anonymous_connect(caplog):
    session = run_session(
        SECURE,
        [connect_frame(), Value({"type": "subscribe", "messageID": 1, "roomID": "lobby"})],
        caplog,
    )
    assert [reply["code"] for reply in session.replies] == ["forbidden"]
    assert session.closed_with == 4001


def test_secure_defaults_accept_a_token(caplog):
    session = run_session(
        SECURE,
        [
            connect_frame(token=TokenRef("valid")),
            Value({"type": "subscribe", "messageID": 1, "roomID": "lobby"}),
            Value({"type": "message", "messageID": 2, "roomID": "lobby", "payload": None}),
        ],
        caplog,
    )
    assert [reply["type"] for reply in session.replies] == ["ack", "ack", "ack", "error"]
    assert session.replies[-1]["code"] == "unknown_type"  # the session's closing SYNC frame


def test_tight_limits_rate_limit_then_close(caplog):
    sync = Value({"type": "ping", "messageID": "p"})
    session = run_session(TIGHT, [connect_frame(token=TokenRef("valid"))] + [sync] * 12, caplog)
    codes = [reply["code"] for reply in session.replies[1:]]
    assert codes == ["unknown_type"] * 9 + ["rate_limited"] * 3
    assert [reply["messageID"] for reply in session.replies[1:]] == ["p"] * 12
    assert session.closed_with == 4008


def test_tight_limits_rooms_and_depth_are_not_fatal(caplog):
    def subscribe(room: str, message_id: int) -> Value:
        return Value({"type": "subscribe", "messageID": message_id, "roomID": room})

    deep = Value({"type": "message", "messageID": 4, "roomID": "a", "payload": [[[[]]]]})
    session = run_session(
        TIGHT,
        [
            connect_frame(token=TokenRef("valid")),
            subscribe("a", 1),
            subscribe("b", 2),
            subscribe("c", 3),  # a third room: limit_exceeded
            deep,
            subscribe("a", 5),  # a room it is in already: no new row, so no limit
        ],
        caplog,
    )
    assert [reply.get("code") for reply in session.replies] == [
        None,
        None,
        None,
        "limit_exceeded",
        "too_large",
        None,
        "unknown_type",  # the session's closing SYNC frame
    ]


def test_frames_after_disconnect_are_not_answered(caplog):
    """After the ack of ``disconnect`` and the close 1000, a frame the client had already sent
    gets no reply. (On daphne the reply would go to a closing socket: autobahn raises
    Disconnected from ``send``, and the outbox logs it as an error.)"""
    session = run_session(
        OPEN,
        [
            connect_frame(),
            Value({"type": "disconnect", "messageID": 1}),
            Value({"type": "subscribe", "messageID": 2, "roomID": "lobby"}),
        ],
        caplog,
    )
    assert session.closed_with == 1000
    assert [reply["messageID"] for reply in session.replies] == [0, 1]
