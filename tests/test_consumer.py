"""The whole ThinWS protocol through the real consumer, in-process.

WebsocketCommunicator and the test database: no mocks. The wire contract is
/work/shared/design/protocol.md (docs/protocol.md in the project). Every test that opens clients
runs on three channel layers (ids ``[memory]``, ``[pubsub]``, ``[core]``): the in-memory layer,
and channels_redis's RedisPubSubChannelLayer and RedisChannelLayer on the private redis-server of
the ``redis_server`` fixture, each test under a Redis key/channel prefix of its own.

Not covered here: the ``unavailable`` error (needs the database or the layer to fail, which
cannot be produced without mocks); the integration tests cover what needs real processes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import override_settings

from tests.consumer_kit import (
    LAYER_KINDS,
    Client,
    Clients,
    assert_layer_has_no_groups,
    assert_layer_left,
    channel_layers_setting,
    db,
    hub,
    layer,
    wait_until,
)
from tests.settings import PROTOCOL_TEST_PROFILE
from thinws_channels import api
from thinws_channels.consumers import ThinWSConsumer
from thinws_channels.models import Connection, Presence, Room, ServerInstance, Subscription
from thinws_channels.protocol import ErrorCode, ProtocolError, room_group, storage_key

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture(params=LAYER_KINDS)
def layer_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """The channel layer of the test: CHANNEL_LAYERS is overridden for its whole duration.

    A test that does not depend on the layer pins it with ``memory_only``.
    """
    kind: str = request.param
    redis_url = request.getfixturevalue("redis_server").url if kind != "memory" else None
    prefix = f"thinws-test-{uuid.uuid4().hex[:12]}"
    # channels' layer manager drops its layer instances on setting_changed for CHANNEL_LAYERS,
    # on entering and on leaving: every test gets fresh layer objects.
    with override_settings(CHANNEL_LAYERS=channel_layers_setting(kind, redis_url, prefix)):
        yield kind


# For tests about what the consumer does with a frame before any layer is involved.
memory_only = pytest.mark.parametrize("layer_kind", ["memory"])


@pytest.fixture
async def clients(layer_kind: str) -> AsyncIterator[Clients]:
    made = Clients()
    try:
        yield made
        await made.close_all()
        assert not hub().running, "the hub still runs after every socket went away"
        await assert_layer_has_no_groups()
    finally:
        await made.close_all()
        # Close the Redis layers' connections of this event loop (pytest-asyncio's loop of the
        # test) before the loop closes; the core layer also deletes its keys.
        await layer().flush()


def error_frame_ok(frame: dict[str, Any], code: str, message_id: Any) -> None:
    assert set(frame) == {"type", "messageID", "code", "message"}, frame
    assert frame["type"] == "error"
    assert frame["code"] == code, frame
    assert frame["messageID"] == message_id, frame
    assert isinstance(frame["message"], str) and frame["message"], frame


# connect -----------------------------------------------------------------------------------------


async def test_connect_ack_shape(clients):
    a = await clients()
    ack = await a.ok("connect", connectionID="c-42", messageID="m-1")
    assert ack == {
        "type": "ack",
        "messageID": "m-1",
        "protocol": 1,
        "connectionID": "c-42",
        "rooms": [],
    }


async def test_connect_ack_names_the_instance_when_instance_name_is_set(clients):
    """The ack carries ``instance`` only when INSTANCE_NAME is set (the demo shows it)."""
    with override_settings(THINWS_CHANNELS={**PROTOCOL_TEST_PROFILE, "INSTANCE_NAME": "web-2"}):
        a = await clients()
        ack = await a.ok("connect", connectionID="c-42", messageID="m-1")
    assert ack["instance"] == "web-2"
    assert ack["rooms"] == [] and ack["connectionID"] == "c-42"


async def test_connect_ack_echoes_integer_message_ids_exactly(clients):
    a = await clients()
    ack = await a.ok("connect", connectionID="c", messageID=2**53 - 1)
    assert ack["messageID"] == 2**53 - 1 and isinstance(ack["messageID"], int)


async def test_frame_without_message_id_is_answered_with_null(clients):
    a = await clients()
    await a.send_raw(json.dumps({"type": "connect", "connectionID": "c"}))
    ack = await a.recv()
    assert ack == {
        "type": "ack",
        "messageID": None,
        "protocol": 1,
        "connectionID": "c",
        "rooms": [],
    }


async def test_connection_ids_are_exact(clients):
    """No case folding: 'Room' and 'room' are two rooms, 'C' and 'c' two connectionIDs."""
    a = await clients("c")
    await a.subscribe("Room")
    b = await clients("C")
    assert b.connect_ack["rooms"] == []
    await b.subscribe("room")
    await a.publish("Room", 1)
    assert await b.nothing()


# subscribe, unsubscribe, message, disconnect -----------------------------------------------------


async def test_subscribe_unsubscribe_acks(clients):
    a = await clients("c1")
    assert await a.request("subscribe", roomID="lobby", messageID=7) == {
        "type": "ack",
        "messageID": 7,
    }
    assert await a.request("unsubscribe", roomID="lobby", messageID="u") == {
        "type": "ack",
        "messageID": "u",
    }
    assert await a.nothing()


async def test_message_ack_and_relayed_frame(clients):
    a = await clients("c-42")
    b = await clients("c-43")
    await a.subscribe("lobby")
    await b.subscribe("lobby")
    payload = {"text": "hi", "n": [1, 2.5, None, True], "nested": {"é": "大"}}
    ack, echo = await a.publish("lobby", payload)
    assert set(ack) == {"type", "messageID", "id"}
    assert isinstance(ack["id"], str) and ack["id"]
    expected = {
        "type": "message",
        "roomID": "lobby",
        "payload": payload,
        "connectionID": "c-42",
        "messageID": ack["id"],
    }
    assert echo == expected
    assert await b.recv() == expected
    assert await a.nothing() and await b.nothing()


async def test_server_message_ids_are_unique(clients):
    a = await clients("c")
    await a.subscribe("r")
    ids = set()
    for n in range(20):
        ack, echo = await a.publish("r", n)
        assert echo["messageID"] == ack["id"]
        ids.add(ack["id"])
    assert len(ids) == 20


@pytest.mark.parametrize("payload", [None, 0, "", [], {}, "text", 3.25, False])
async def test_any_json_payload_is_relayed_as_is(clients, payload):
    a = await clients("c")
    await a.subscribe("r")
    _, echo = await a.publish("r", payload)
    assert echo["payload"] == payload and type(echo["payload"]) is type(payload)
    assert "message" not in echo


async def test_sender_receives_its_own_echo_alone_in_a_room(clients):
    a = await clients("solo")
    await a.subscribe("mine")
    ack, echo = await a.publish("mine", "me")
    assert echo["connectionID"] == "solo" and echo["messageID"] == ack["id"]
    assert await a.nothing()


async def test_disconnect_acks_then_closes_1000(clients):
    a = await clients("c1")
    await a.subscribe("r")
    assert await a.request("disconnect", messageID=99) == {"type": "ack", "messageID": 99}
    assert await a.recv_raw() == {"type": "websocket.close", "code": 1000}
    assert await a.nothing()
    # The socket left its rooms at once: the hub has no socket left and stopped.
    assert not hub().running
    await assert_layer_left(room_group("r"))


async def test_disconnect_keeps_memberships_and_goes_offline(clients):
    a = await clients("c1")
    await a.subscribe("r")
    await a.ok("disconnect")
    assert await a.recv_raw() == {"type": "websocket.close", "code": 1000}
    assert await db(Presence.objects.count)() == 0
    assert await db(
        lambda: list(Subscription.objects.values_list("room__room_id", flat=True))
    )() == ["r"]


# exactly one reply per frame, in order -----------------------------------------------------------


async def test_many_frames_at_once_get_one_reply_each_in_arrival_order(clients):
    a = await clients("c1")
    other = await clients("c2")
    await other.subscribe("a")

    expected: list[tuple[Any, str]] = []  # (messageID, "ack" or error code), in sending order
    published: list[Any] = []  # payloads that must be relayed to room "a", in order

    async def frame(expect: str, type_: str, **fields: Any) -> None:
        message_id = await a.send(type_, **fields)
        expected.append((message_id, expect))

    for round_ in range(4):
        await frame("ack", "subscribe", roomID="a")
        await frame("ack", "message", roomID="a", payload=[round_, 1])
        published.append([round_, 1])
        await a.send_raw("{not json")
        expected.append((None, ErrorCode.INVALID_JSON))
        await frame("ack", "subscribe", roomID=f"b{round_}")
        await frame(ErrorCode.UNKNOWN_TYPE, "publish", roomID="a")
        await frame("ack", "message", roomID="a", payload=[round_, 2])
        published.append([round_, 2])
        await frame(ErrorCode.INVALID_ENVELOPE, "message", roomID="a")
        await frame("ack", "unsubscribe", roomID="a")
        await frame(ErrorCode.NOT_SUBSCRIBED, "message", roomID="a", payload="lost")
        await frame(ErrorCode.NOT_SUBSCRIBED, "unsubscribe", roomID="zzz")
        await frame(ErrorCode.ALREADY_CONNECTED, "connect", connectionID="c1")
        await frame("ack", "unsubscribe", roomID=f"b{round_}")
    await frame("ack", "subscribe", roomID="a")

    frames = await a.recv_many(len(expected) + len(published))
    replies = [f for f in frames if f["type"] != "message"]
    echoes = [f for f in frames if f["type"] == "message"]
    got = [(r["messageID"], "ack" if r["type"] == "ack" else r["code"]) for r in replies]
    assert got == [(mid, str(what)) for mid, what in expected]
    assert [e["payload"] for e in echoes] == published
    assert await a.nothing()
    # Another member gets the room's messages in the order they were published.
    relayed = await other.recv_many(len(published))
    assert [f["payload"] for f in relayed] == published
    assert [f["messageID"] for f in relayed] == [e["messageID"] for e in echoes]


async def test_messages_of_one_sender_arrive_in_publish_order(clients):
    a = await clients("c1")
    b = await clients("c2")
    await a.subscribe("r")
    await b.subscribe("r")
    for n in range(50):
        await a.send("message", roomID="r", payload=n)
    frames = await a.recv_many(100)
    assert [f["payload"] for f in frames if f["type"] == "message"] == list(range(50))
    assert [f["messageID"] for f in frames if f["type"] == "ack"] == list(range(3, 53))
    assert [f["payload"] for f in await b.recv_many(50)] == list(range(50))


# the original 1.0.x client -----------------------------------------------------------------------


async def test_legacy_client_frames(clients):
    start = 2**52 + 17  # the original client starts at a random integer below 2**53
    old = await clients()
    new = await clients("c-new")
    await new.subscribe("lobby")

    # connect: integer messageID, hashed connectionID, and a roomID that is ignored.
    await old.send_raw(
        json.dumps(
            {"messageID": start, "type": "connect", "connectionID": "-1234567", "roomID": "lobby"}
        )
    )
    assert await old.recv() == {
        "type": "ack",
        "messageID": start,
        "protocol": 1,
        "connectionID": "-1234567",
        "rooms": [],
    }
    assert not await db(Subscription.objects.filter(connection__connection_id="-1234567").exists)()
    # the roomID on connect did not join the room: new's message does not reach old
    await new.publish("lobby", "before")
    assert await old.nothing()

    await old.send_raw(json.dumps({"messageID": start + 1, "type": "subscribe", "roomID": "lobby"}))
    assert await old.recv() == {"type": "ack", "messageID": start + 1}

    # send(text, roomID): the payload under "message"; relayed under both keys.
    await old.send_raw(
        json.dumps(
            {"messageID": start + 2, "type": "message", "message": "hello", "roomID": "lobby"}
        )
    )
    frames = await old.recv_many(2)
    ack = next(f for f in frames if f["type"] == "ack")
    echo = next(f for f in frames if f["type"] == "message")
    assert ack == {"type": "ack", "messageID": start + 2, "id": ack["id"]}
    expected = {
        "type": "message",
        "roomID": "lobby",
        "payload": "hello",
        "message": "hello",
        "connectionID": "-1234567",
        "messageID": ack["id"],
    }
    assert echo == expected
    assert await new.recv() == expected

    # A new sender's message carries only "payload" (LEGACY_MESSAGE_KEY is off by default).
    new_ack, _ = await new.publish("lobby", {"k": 1})
    assert await old.recv() == {
        "type": "message",
        "roomID": "lobby",
        "payload": {"k": 1},
        "connectionID": "c-new",
        "messageID": new_ack["id"],
    }

    # Both keys: payload wins, and the frame is not a legacy one.
    await old.send_raw(
        json.dumps(
            {
                "messageID": start + 3,
                "type": "message",
                "payload": "p",
                "message": "m",
                "roomID": "lobby",
            }
        )
    )
    frames = await old.recv_many(2)
    echo = next(f for f in frames if f["type"] == "message")
    assert echo["payload"] == "p" and "message" not in echo
    assert (await new.recv())["payload"] == "p"

    await old.send_raw(
        json.dumps({"messageID": start + 4, "type": "unsubscribe", "roomID": "lobby"})
    )
    assert await old.recv() == {"type": "ack", "messageID": start + 4}
    await old.send_raw(json.dumps({"messageID": start + 5, "type": "disconnect"}))
    assert await old.recv() == {"type": "ack", "messageID": start + 5}
    assert await old.recv_raw() == {"type": "websocket.close", "code": 1000}


async def test_legacy_message_key_null_payload(clients):
    a = await clients("-1")
    await a.subscribe("r")
    await a.send("message", roomID="r", message=None)
    frames = await a.recv_many(2)
    echo = next(f for f in frames if f["type"] == "message")
    assert "payload" in echo and echo["payload"] is None
    assert "message" in echo and echo["message"] is None


async def test_legacy_message_key_setting_puts_every_payload_under_both_keys(clients):
    a = await clients("c-new")
    old = await clients("-99")
    await a.subscribe("mixed")
    await old.subscribe("mixed")
    with override_settings(THINWS_CHANNELS={**PROTOCOL_TEST_PROFILE, "LEGACY_MESSAGE_KEY": True}):
        ack, echo = await a.publish("mixed", {"k": 2})
        expected = {
            "type": "message",
            "roomID": "mixed",
            "payload": {"k": 2},
            "message": {"k": 2},
            "connectionID": "c-new",
            "messageID": ack["id"],
        }
        assert echo == expected
        assert await old.recv() == expected
        server_id = await api.asend_to_room("mixed", "from django")
        assert (await old.recv())["message"] == "from django"
        assert (await a.recv())["messageID"] == server_id
    # The setting is read at every publish: off again, only "payload".
    _, echo = await a.publish("mixed", 3)
    assert "message" not in echo
    assert "message" not in await old.recv()


# membership rules --------------------------------------------------------------------------------


async def test_publish_by_a_non_member_is_not_subscribed(clients):
    member = await clients("m")
    await member.subscribe("club")
    outsider = await clients("o")
    error = await outsider.request("message", roomID="club", payload="spam", messageID="x1")
    error_frame_ok(error, "not_subscribed", "x1")
    assert "'o'" in error["message"] and "'club'" in error["message"]
    assert await member.nothing()  # nothing was published


async def test_unsubscribe_from_a_room_one_is_not_in(clients):
    a = await clients("c1")
    error = await a.request("unsubscribe", roomID="never", messageID=5)
    error_frame_ok(error, "not_subscribed", 5)
    assert "'c1'" in error["message"] and "'never'" in error["message"]
    # after leaving, leaving again is refused too
    await a.subscribe("r")
    await a.unsubscribe("r")
    error_frame_ok(await a.request("unsubscribe", roomID="r", messageID=9), "not_subscribed", 9)


async def test_subscribe_is_idempotent(clients):
    a = await clients("c1")
    b = await clients("c2")
    await b.subscribe("r")
    assert await a.request("subscribe", roomID="r", messageID=1) == {"type": "ack", "messageID": 1}
    assert await a.request("subscribe", roomID="r", messageID=2) == {"type": "ack", "messageID": 2}
    assert await db(Subscription.objects.filter(connection__connection_id="c1").count)() == 1
    await b.publish("r", "once")
    assert (await a.recv())["payload"] == "once"
    assert await a.nothing()  # one copy, not one per subscribe
    # one unsubscribe is enough to leave
    await a.unsubscribe("r")
    await b.publish("r", "gone")
    assert await a.nothing()


async def test_nothing_of_the_room_after_the_unsubscribe_ack(clients):
    a = await clients("c1")
    b = await clients("c2")
    await a.subscribe("r")
    await a.subscribe("s")
    await b.subscribe("r")
    await b.subscribe("s")
    await a.unsubscribe("r")
    for n in range(5):
        await b.publish("r", n)
    await b.publish("s", "still here")
    frame = await a.recv()
    assert frame["roomID"] == "s" and frame["payload"] == "still here"
    assert await a.nothing()
    # and it may no longer publish there
    error_frame_ok(
        await a.request("message", roomID="r", payload=1, messageID=50), "not_subscribed", 50
    )


# rooms belong to the connectionID ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["disconnect frame", "drop"])
async def test_rooms_are_restored_on_reconnect_in_join_order(clients, how):
    a = await clients("c1")
    for room in ["b", "a", "c", "z", "d"]:
        await a.subscribe(room)
    await a.unsubscribe("z")
    if how == "drop":
        await a.close()
    else:
        await a.ok("disconnect")
        assert await a.recv_raw() == {"type": "websocket.close", "code": 1000}
        await a.close()

    again = await clients()
    ack = await again.connect("c1")
    assert ack["rooms"] == ["b", "a", "c", "d"]
    # it is in the rooms without subscribing
    sender = await clients("c2")
    await sender.subscribe("a")
    sender_ack, _ = await sender.publish("a", "welcome back")
    assert await again.recv() == {
        "type": "message",
        "roomID": "a",
        "payload": "welcome back",
        "connectionID": "c2",
        "messageID": sender_ack["id"],
    }
    # and it may publish to them at once
    ack, echo = await again.publish("d", 1)
    assert echo["messageID"] == ack["id"]


async def test_a_second_socket_of_a_connection_id_gets_its_rooms(clients):
    a = await clients("c1")
    await a.subscribe("r1")
    await a.subscribe("r2")
    b = await clients()
    assert (await b.connect("c1"))["rooms"] == ["r1", "r2"]
    x = await clients("x")
    await x.subscribe("r2")
    await x.publish("r2", "both")
    assert (await a.recv())["payload"] == "both"
    assert (await b.recv())["payload"] == "both"


async def test_two_sockets_of_one_connection_id(clients):
    a = await clients("shared")
    b = await clients("shared")
    x = await clients("x")
    await x.subscribe("r")

    await a.subscribe("r")
    assert await b.recv() == {"type": "subscribed", "roomID": "r"}
    assert await a.nothing()  # the subscribing socket is not told: it has its ack

    x_ack, _ = await x.publish("r", "to both")
    expected = {
        "type": "message",
        "roomID": "r",
        "payload": "to both",
        "connectionID": "x",
        "messageID": x_ack["id"],
    }
    assert await a.recv() == expected
    assert await b.recv() == expected

    # b is in the room now: it may publish, and everyone (a included) gets it
    b_ack, b_echo = await b.publish("r", "from b")
    assert b_echo["connectionID"] == "shared"
    assert (await a.recv())["messageID"] == b_ack["id"]
    assert (await x.recv())["messageID"] == b_ack["id"]

    # a subscribe of a room b is already in tells b nothing
    await a.subscribe("r")
    assert await b.nothing()

    await a.unsubscribe("r")
    assert await b.recv() == {"type": "unsubscribed", "roomID": "r"}
    await x.publish("r", "nobody of shared")
    assert await a.nothing() and await b.nothing()
    error_frame_ok(
        await b.request("message", roomID="r", payload=1, messageID=77), "not_subscribed", 77
    )
    assert await db(Subscription.objects.filter(connection__connection_id="shared").count)() == 0


async def test_unsubscribe_from_the_other_socket_of_the_connection_id(clients):
    a = await clients("shared")
    await a.subscribe("r")
    b = await clients("shared")
    assert b.connect_ack["rooms"] == ["r"]
    await b.unsubscribe("r")
    assert await a.recv() == {"type": "unsubscribed", "roomID": "r"}
    # a was not told to leave by its own frame, and its unsubscribe is now refused
    error_frame_ok(await a.request("unsubscribe", roomID="r", messageID=3), "not_subscribed", 3)


# bad input ---------------------------------------------------------------------------------------

LONG = "m" * 65

BEFORE_CONNECT = [
    ("{", "invalid_json", None),
    ("", "invalid_json", None),
    ("not json", "invalid_json", None),
    ('{"type":"connect","connectionID":"c"', "invalid_json", None),
    ("[1, 2]", "invalid_envelope", None),
    ('"connect"', "invalid_envelope", None),
    ("null", "invalid_envelope", None),
    ('{"messageID":1}', "invalid_envelope", 1),
    ('{"type":5,"messageID":2}', "invalid_envelope", 2),
    ('{"type":null,"messageID":"s"}', "invalid_envelope", "s"),
    ('{"type":"Connect","messageID":3,"connectionID":"c"}', "unknown_type", 3),
    ('{"type":"nope","messageID":4}', "unknown_type", 4),
    ('{"type":"nope","messageID":true}', "unknown_type", None),
    ('{"type":"connect","messageID":true,"connectionID":"c"}', "invalid_envelope", None),
    ('{"type":"connect","messageID":7.0,"connectionID":"c"}', "invalid_envelope", None),
    ('{"type":"connect","messageID":"","connectionID":"c"}', "invalid_envelope", None),
    (
        '{"type":"connect","messageID":9007199254740992,"connectionID":"c"}',
        "invalid_envelope",
        None,
    ),
    ('{"type":"connect","messageID":[1],"connectionID":"c"}', "invalid_envelope", None),
    ('{"type":"connect","messageID":"' + LONG + '","connectionID":"c"}', "invalid_envelope", None),
    ('{"type":"connect","messageID":5}', "invalid_envelope", 5),
    ('{"type":"connect","messageID":6,"connectionID":7}', "invalid_envelope", 6),
    ('{"type":"connect","messageID":6,"connectionID":""}', "invalid_envelope", 6),
    ('{"type":"connect","messageID":6,"connectionID":"' + "c" * 129 + '"}', "invalid_envelope", 6),
    ('{"type":"connect","messageID":6,"connectionID":"a\\nb"}', "invalid_envelope", 6),
    ('{"type":"connect","messageID":8,"connectionID":"c","token":5}', "invalid_envelope", 8),
    # "connected" is checked after messageID and before the fields
    ('{"type":"subscribe","messageID":true,"roomID":"r"}', "invalid_envelope", None),
    ('{"type":"subscribe","messageID":9,"roomID":"r"}', "not_connected", 9),
    ('{"type":"subscribe","messageID":10}', "not_connected", 10),
    ('{"type":"unsubscribe","messageID":11,"roomID":"r"}', "not_connected", 11),
    ('{"type":"message","messageID":12,"roomID":"r","payload":1}', "not_connected", 12),
    ('{"type":"disconnect","messageID":13}', "not_connected", 13),
]

AFTER_CONNECT = [
    ("{", "invalid_json", None),
    ("[]", "invalid_envelope", None),
    ('{"type":"Subscribe","messageID":20,"roomID":"r"}', "unknown_type", 20),
    ('{"type":"connect","messageID":21,"connectionID":"c2"}', "already_connected", 21),
    ('{"type":"connect","messageID":22,"connectionID":"c1"}', "already_connected", 22),
    ('{"type":"connect","messageID":23}', "already_connected", 23),
    ('{"type":"subscribe","messageID":24}', "invalid_envelope", 24),
    ('{"type":"subscribe","messageID":25,"roomID":""}', "invalid_envelope", 25),
    ('{"type":"subscribe","messageID":26,"roomID":"' + "r" * 201 + '"}', "invalid_envelope", 26),
    ('{"type":"subscribe","messageID":27,"roomID":"a\\u0000b"}', "invalid_envelope", 27),
    ('{"type":"subscribe","messageID":28,"roomID":"a\\u0085b"}', "invalid_envelope", 28),
    ('{"type":"subscribe","messageID":29,"roomID":["r"]}', "invalid_envelope", 29),
    ('{"type":"message","messageID":30,"roomID":"r"}', "invalid_envelope", 30),
    ('{"type":"message","messageID":31,"payload":1}', "invalid_envelope", 31),
    ('{"type":"message","messageID":1.5,"roomID":"r","payload":1}', "invalid_envelope", None),
    ('{"type":"message","messageID":32,"roomID":"elsewhere","payload":1}', "not_subscribed", 32),
    ('{"type":"unsubscribe","messageID":33,"roomID":"elsewhere"}', "not_subscribed", 33),
]


# One frame each, on the in-memory layer only: which error a frame gets is decided before any
# layer is involved. test_bad_input_in_a_row_* send them all on every layer.


@memory_only
@pytest.mark.parametrize(("text", "code", "message_id"), BEFORE_CONNECT)
async def test_bad_input_before_connect(clients, text, code, message_id):
    a = await clients()
    await a.comm.send_input({"type": "websocket.receive", "text": text})
    error_frame_ok(await a.recv(), code, message_id)
    # exactly one reply, and the socket is still usable
    ack = await a.connect("c1")
    assert ack["connectionID"] == "c1"
    assert await a.nothing()


@memory_only
@pytest.mark.parametrize(("text", "code", "message_id"), AFTER_CONNECT)
async def test_bad_input_after_connect(clients, text, code, message_id):
    a = await clients("c1")
    await a.subscribe("r")
    await a.send_raw(text)
    error_frame_ok(await a.recv(), code, message_id)
    # exactly one reply, and the socket is still usable, still connected as c1, still in "r"
    ack, echo = await a.publish("r", "still here")
    assert echo["connectionID"] == "c1" and echo["messageID"] == ack["id"]
    assert await a.nothing()


async def test_bad_input_in_a_row_before_connect(clients):
    a = await clients()
    for text, _, _ in BEFORE_CONNECT:
        await a.comm.send_input({"type": "websocket.receive", "text": text})  # "" included
    for text, code, message_id in BEFORE_CONNECT:
        frame = await a.recv()
        assert frame["code"] == code, (text, frame)
        error_frame_ok(frame, code, message_id)
    assert (await a.connect("c1"))["connectionID"] == "c1"
    await a.subscribe("r")
    ack, echo = await a.publish("r", "connected at last")
    assert echo["connectionID"] == "c1" and echo["messageID"] == ack["id"]
    assert await a.nothing()


async def test_bad_input_in_a_row_after_connect(clients):
    a = await clients("c1")
    b = await clients("c2")
    await a.subscribe("r")
    await b.subscribe("r")
    for text, _, _ in AFTER_CONNECT:
        await a.send_raw(text)
    for text, code, message_id in AFTER_CONNECT:
        frame = await a.recv()
        assert frame["code"] == code, (text, frame)
        error_frame_ok(frame, code, message_id)
    ack, echo = await a.publish("r", "still here")
    assert echo["connectionID"] == "c1" and echo["messageID"] == ack["id"]
    assert (await b.recv())["messageID"] == ack["id"]
    assert await a.nothing() and await b.nothing()


async def test_error_messages_name_the_bad_value(clients):
    a = await clients("c1")
    error = await a.request("subscribe", roomID="x" * 201, messageID=1)
    assert "'roomID'" in error["message"] and "201" in error["message"]
    error = await a.request("frobnicate", messageID=2)
    assert "'frobnicate'" in error["message"]
    error = await a.request("connect", connectionID="c2", messageID=3)
    assert "'c1'" in error["message"]


@pytest.mark.parametrize("connected", [False, True])
async def test_binary_frame_is_refused_and_closes_4003(clients, connected):
    a = await clients("c1") if connected else await clients()
    if connected:
        await a.subscribe("r")
    await a.send_bytes(b"\x00\x01binary")
    error = await a.recv()
    error_frame_ok(error, "unsupported_data", None)
    assert "binary" in error["message"] and "8 bytes" in error["message"]
    assert await a.recv_raw() == {"type": "websocket.close", "code": 4003}
    await a.close()
    assert await db(Presence.objects.count)() == 0


async def test_frames_behind_the_disconnect_frame_get_no_reply(clients, caplog):
    """A client may pipeline frames behind ``disconnect``: the socket is closing, so they are not
    answered (as after a fatal close), nothing fails, and nothing they ask for is done."""
    a = await clients("c1")
    await a.subscribe("r")
    await a.send("disconnect", messageID=1)
    await a.send("message", roomID="r", payload=1, messageID=2)
    await a.send("subscribe", roomID="s", messageID=3)
    await a.send("unsubscribe", roomID="r", messageID=4)
    await a.send("connect", connectionID="c1", messageID=5)
    await a.send("disconnect", messageID=6)
    assert await a.recv() == {"type": "ack", "messageID": 1}
    assert await a.recv_raw() == {"type": "websocket.close", "code": 1000}
    assert await a.nothing()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    # the memberships were not touched
    assert await db(
        lambda: list(Subscription.objects.values_list("room__room_id", flat=True))
    )() == ["r"]


# database rows -----------------------------------------------------------------------------------


def _rows() -> dict[str, Any]:
    return {
        "connections": list(
            Connection.objects.order_by("id").values("connection_id", "key", "user_id")
        ),
        "rooms": list(Room.objects.order_by("id").values("room_id", "key")),
        "subscriptions": list(
            Subscription.objects.order_by("id").values_list(
                "connection__connection_id", "room__room_id"
            )
        ),
        "presences": list(
            Presence.objects.order_by("id").values(
                "socket_id", "connection__connection_id", "instance_id", "user_id", "client"
            )
        ),
        "instances": list(ServerInstance.objects.values_list("id", flat=True)),
    }


rows = db(_rows)


async def test_database_rows(clients):
    a = await clients(client=("10.1.2.3", 4567))
    await a.connect("c1")
    state = await rows()
    assert state["connections"] == [
        {"connection_id": "c1", "key": storage_key("c1"), "user_id": None}
    ]
    assert state["rooms"] == [] and state["subscriptions"] == []
    assert len(state["instances"]) == 1
    assert state["presences"] == [
        {
            "socket_id": state["presences"][0]["socket_id"],
            "connection__connection_id": "c1",
            "instance_id": state["instances"][0],
            "user_id": None,
            "client": "10.1.2.3",  # the address only: what the per-address limit counts
        }
    ]
    assert len(state["presences"][0]["socket_id"]) == 32
    assert state["instances"][0] == hub().instance_id

    await a.subscribe("lobby")
    await a.subscribe("news")
    state = await rows()
    assert state["rooms"] == [
        {"room_id": "lobby", "key": storage_key("lobby")},
        {"room_id": "news", "key": storage_key("news")},
    ]
    assert state["subscriptions"] == [("c1", "lobby"), ("c1", "news")]

    b = await clients("c1")
    state = await rows()
    assert len(state["connections"]) == 1
    assert [p["connection__connection_id"] for p in state["presences"]] == ["c1", "c1"]
    assert len({p["socket_id"] for p in state["presences"]}) == 2

    await a.unsubscribe("lobby")
    state = await rows()
    assert state["subscriptions"] == [("c1", "news")]
    assert len(state["rooms"]) == 2  # rooms stay

    # a socket that drops goes offline; the connection and its rooms stay
    await a.close()
    state = await rows()
    assert len(state["presences"]) == 1
    assert state["subscriptions"] == [("c1", "news")]
    await b.close()
    state = await rows()
    assert state["presences"] == []
    assert state["connections"][0]["connection_id"] == "c1"
    assert state["instances"] == []  # the hub stopped and unregistered the instance


async def test_room_ids_are_stored_exactly(clients):
    a = await clients("c1")
    for room in ["Straße", "STRASSE", "e\u0301", "é", "😀 room"]:
        await a.subscribe(room)
    state = await rows()
    assert [r["room_id"] for r in state["rooms"]] == [
        "Straße",
        "STRASSE",
        "e\u0301",
        "é",
        "😀 room",
    ]
    b = await clients("c1")
    assert b.connect_ack["rooms"] == ["Straße", "STRASSE", "e\u0301", "é", "😀 room"]


async def test_authenticated_user_is_recorded(clients):
    user = await db(lambda: get_user_model().objects.create_user("alice"))()
    a = await clients(user=user)
    await a.connect("alice-tab")
    state = await rows()
    assert state["connections"][0]["user_id"] == user.pk
    assert state["presences"][0]["user_id"] == user.pk
    # an anonymous socket may not claim the connectionID of a user (tests/test_security.py has
    # the other cases)
    anonymous = await clients()
    error_frame_ok(
        await anonymous.request("connect", connectionID="alice-tab", messageID=1), "forbidden", 1
    )
    assert await anonymous.recv_raw() == {"type": "websocket.close", "code": 4001}
    state = await rows()
    assert state["connections"][0]["user_id"] == user.pk
    assert [p["user_id"] for p in state["presences"]] == [user.pk]


async def test_an_unconnected_socket_leaves_no_rows(clients):
    a = await clients()
    error_frame_ok(await a.request("subscribe", roomID="r", messageID=1), "not_connected", 1)
    await a.close()
    state = await rows()
    assert state["connections"] == [] and state["presences"] == [] and state["instances"] == []


# server-side sending -----------------------------------------------------------------------------


async def test_asend_to_room_reaches_the_members(clients):
    a = await clients("c1")
    b = await clients("c2")
    outsider = await clients("c3")
    await a.subscribe("news")
    await b.subscribe("news")
    message_id = await api.asend_to_room("news", {"headline": "hi"})
    assert isinstance(message_id, str) and message_id
    expected = {
        "type": "message",
        "roomID": "news",
        "payload": {"headline": "hi"},
        "connectionID": None,
        "messageID": message_id,
    }
    assert await a.recv() == expected
    assert await b.recv() == expected
    assert await outsider.nothing()


async def test_send_to_room_from_sync_code(clients):
    a = await clients("c1")
    await a.subscribe("news")
    message_id = await sync_to_async(api.send_to_room)("news", [1, 2, 3])
    frame = await a.recv()
    assert frame == {
        "type": "message",
        "roomID": "news",
        "payload": [1, 2, 3],
        "connectionID": None,
        "messageID": message_id,
    }


async def test_send_to_a_room_without_members_is_fine(clients):
    a = await clients("c1")
    await a.subscribe("other")
    assert await api.asend_to_room("empty", "x")
    assert await a.nothing()


@pytest.mark.parametrize("room_id", ["", "a\x00b", "r" * 201])
async def test_send_to_room_validates_the_room_id(room_id):
    with pytest.raises(ProtocolError) as info:
        await api.asend_to_room(room_id, "x")
    assert info.value.code is ErrorCode.INVALID_ENVELOPE


# routing -----------------------------------------------------------------------------------------


async def test_the_consumer_class_can_be_served_directly(clients):
    a = clients.adopt(await Client(ThinWSConsumer.as_asgi()).open())
    assert (await a.connect("direct"))["connectionID"] == "direct"
    await a.subscribe("r")
    ack, echo = await a.publish("r", 1)
    assert echo["messageID"] == ack["id"]


async def test_a_cancelled_consumer_leaves_its_rooms_and_goes_offline(clients):
    # daphne cancels the application task at shutdown or after application_close_timeout.
    a = await clients("c1")
    await a.subscribe("r")
    assert await db(Presence.objects.count)() == 1
    a.comm.future.cancel()
    await wait_until(lambda: not hub().running)
    await assert_layer_left(room_group("r"))
    assert await db(Presence.objects.count)() == 0
    a.closed = True
