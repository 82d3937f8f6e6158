"""Rooms across daphne processes: two instances of demo_project sharing Redis and one database.

Every test runs on both channels-redis layers (the ``cluster`` fixture is parametrized over
"pubsub" and "core"); instance A is ``cluster.urls[0]``, instance B ``cluster.urls[1]``.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.wsclient import ThinWSClient

pytestmark = pytest.mark.integration

QUIET = 1.0  # seconds during which "nothing must arrive"


def uid(prefix: str) -> str:
    """A fresh id, so that tests sharing a cluster never see each other's rooms."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_relayed(frame: dict, room: str, payload: object, sender: str | None) -> None:
    assert frame.get("type") == "message", frame
    assert frame.get("roomID") == room, frame
    assert frame.get("payload") == payload, frame
    assert frame.get("connectionID") == sender, frame
    assert isinstance(frame.get("messageID"), str) and frame["messageID"], frame


def assert_connect_ack(ack: dict, connection_id: str, rooms: list[str]) -> None:
    assert ack.get("type") == "ack", ack
    assert ack.get("protocol") == 1, ack
    assert ack.get("connectionID") == connection_id, ack
    assert ack.get("rooms") == rooms, ack


async def test_publish_through_b_reaches_subscriber_on_a(cluster, ws):
    room = uid("room")
    sub_id, pub_id = uid("sub"), uid("pub")
    sub = await ws(cluster.urls[0], sub_id)
    pub = await ws(cluster.urls[1], pub_id)
    assert_connect_ack(sub.connect_ack, sub_id, [])
    assert_connect_ack(pub.connect_ack, pub_id, [])

    # Publishing to a room one is not in is refused by default.
    refused = await pub.request({"type": "message", "roomID": room, "payload": "early"})
    assert refused.get("type") == "error", refused
    assert refused.get("code") == "not_subscribed", refused
    assert isinstance(refused.get("message"), str), refused

    assert (await sub.subscribe(room)).get("type") == "ack"
    assert (await pub.subscribe(room)).get("type") == "ack"

    payload = {"text": "héllo", "n": [1, 2.5, None, True]}
    ack = await pub.publish(room, payload)
    assert isinstance(ack.get("id"), str) and ack["id"], ack

    got_sub = await sub.next_message(room=room)
    got_pub = await pub.next_message(room=room)
    for got in (got_sub, got_pub):
        assert_relayed(got, room, payload, pub_id)
        assert got["messageID"] == ack["id"], (got, ack)

    # The refused publish was never relayed, and nothing else comes.
    await sub.expect_nothing(QUIET)
    await pub.expect_nothing(0.2)


@pytest.mark.parametrize("drop", ["close", "abort"])
async def test_rooms_follow_the_connection_id_to_another_instance(cluster, ws, drop):
    room = uid("room")
    cid, pub_id = uid("roamer"), uid("pub")

    first = await ws(cluster.urls[0], cid)
    assert_connect_ack(first.connect_ack, cid, [])
    await first.subscribe(room)
    # Drop without a 'disconnect' frame: a clean close, or a dead TCP connection.
    if drop == "close":
        await first.close()
    else:
        await first.abort()

    second = await ws(cluster.urls[1], cid)
    assert_connect_ack(second.connect_ack, cid, [room])

    pub = await ws(cluster.urls[0], pub_id)
    await pub.subscribe(room)
    ack = await pub.publish(room, {"after": "reconnect"})

    got = await second.next_message(room=room)
    assert_relayed(got, room, {"after": "reconnect"}, pub_id)
    assert got["messageID"] == ack["id"]
    # The cleanup of the dropped socket on A (which may run late) must not have removed the
    # membership: a third connect still rejoins the room.
    third = await ws(cluster.urls[0], cid)
    assert_connect_ack(third.connect_ack, cid, [room])


async def test_sockets_of_one_connection_id_share_rooms_across_instances(cluster, ws):
    room = uid("room")
    cid, pub_id = uid("twin"), uid("pub")
    on_a = await ws(cluster.urls[0], cid)
    on_b = await ws(cluster.urls[1], cid)
    pub = await ws(cluster.urls[0], pub_id)
    await pub.subscribe(room)

    # subscribe on A: B is told, then receives the room's messages.
    await on_a.subscribe(room)
    told = await on_b.next_frame(("subscribed", "unsubscribed", "message"))
    assert told.get("type") == "subscribed" and told.get("roomID") == room, told
    await on_a.expect_nothing(0.2, types=("subscribed", "unsubscribed"))

    ack1 = await pub.publish(room, {"n": 1})
    for client in (on_a, on_b, pub):
        got = await client.next_message(room=room)
        assert_relayed(got, room, {"n": 1}, pub_id)
        assert got["messageID"] == ack1["id"]

    # unsubscribe on B: A is told, and neither socket receives the room any more.
    await on_b.unsubscribe(room)
    told = await on_a.next_frame(("subscribed", "unsubscribed", "message"))
    assert told.get("type") == "unsubscribed" and told.get("roomID") == room, told

    ack2 = await pub.publish(room, {"n": 2})
    echo = await pub.next_message(room=room)  # the message did go through the layer
    assert echo["messageID"] == ack2["id"]
    await asyncio.gather(on_a.expect_nothing(QUIET), on_b.expect_nothing(QUIET))

    # Unsubscribing again from either socket: the connectionID is no longer in the room.
    again = await on_a.request({"type": "unsubscribe", "roomID": room})
    assert again.get("type") == "error" and again.get("code") == "not_subscribed", again
    # ...and a new socket of that connectionID rejoins nothing.
    fresh = await ws(cluster.urls[1], cid)
    assert_connect_ack(fresh.connect_ack, cid, [])


async def test_a_thousand_messages_neither_lost_nor_duplicated(cluster, ws):
    count, window = 1000, 32
    room = uid("room")
    pub_id = uid("pub")
    pub = await ws(cluster.urls[0], pub_id)
    sub_a = await ws(cluster.urls[0], uid("sub-a"))
    sub_b = await ws(cluster.urls[1], uid("sub-b"))
    for client in (pub, sub_a, sub_b):
        await client.subscribe(room)

    # Publish 1..count, at most `window` frames awaiting their ack at any time.
    ack_ids: dict[int, str] = {}
    in_flight: list[tuple[int, int]] = []  # (seq, messageID)

    async def settle(keep: int) -> None:
        while len(in_flight) > keep:
            seq, mid = in_flight.pop(0)
            reply = await pub.reply(mid, timeout=20)
            assert reply.get("type") == "ack", (seq, reply)
            assert isinstance(reply.get("id"), str) and reply["id"], reply
            ack_ids[seq] = reply["id"]

    for seq in range(1, count + 1):
        mid = pub.new_id()
        await pub.send(
            {"type": "message", "messageID": mid, "roomID": room, "payload": {"seq": seq}}
        )
        in_flight.append((seq, mid))
        await settle(window - 1)
    await settle(0)

    assert len(ack_ids) == count
    assert len(set(ack_ids.values())) == count, "the server ids in the acks are not unique"

    async def collect(client: ThinWSClient) -> list[dict]:
        return await client.messages(count, timeout=20, room=room)

    for client, frames in zip(
        (sub_a, sub_b, pub),
        await asyncio.gather(collect(sub_a), collect(sub_b), collect(pub)),
        strict=True,
    ):
        seqs = [f["payload"]["seq"] for f in frames]
        assert seqs == list(range(1, count + 1)), (
            f"{client.connection_id}: out of order, lost or duplicated: "
            f"first differences {[(i + 1, s) for i, s in enumerate(seqs) if s != i + 1][:10]}"
        )
        ids = [f["messageID"] for f in frames]
        assert len(set(ids)) == count, f"{client.connection_id}: relayed messageIDs not unique"
        assert all(f["connectionID"] == pub_id for f in frames)
        assert {f["payload"]["seq"]: f["messageID"] for f in frames} == ack_ids
    for client in (sub_a, sub_b, pub):
        await client.expect_nothing(0.5)


async def test_disconnect_is_acked_then_closed_with_1000(cluster, ws):
    room = uid("room")
    cid = uid("leaver")
    client = await ws(cluster.urls[0], cid)
    await client.subscribe(room)

    mid = client.new_id()
    await client.send({"type": "disconnect", "messageID": mid})
    reply = await client.reply(mid)
    assert reply.get("type") == "ack" and reply.get("messageID") == mid, reply
    assert await client.wait_closed(10) == 1000
    assert client.close_code == 1000

    # The memberships are kept: the next connect, on the other instance, rejoins the room.
    back = await ws(cluster.urls[1], cid)
    assert_connect_ack(back.connect_ack, cid, [room])


async def test_send_to_room_from_another_process_reaches_every_instance(cluster, ws):
    """``manage.py thinws_send`` runs api.send_to_room() in a process of its own, as a view or a
    task would; subscribers on both instances get the message, with connectionID null."""
    import subprocess
    import sys

    from tests.servers import ROOT, demo_env

    room = uid("room")
    subs = [await ws(url, uid("sub")) for url in cluster.urls]
    for sub in subs:
        assert (await sub.subscribe(room)).get("type") == "ack"
    env = demo_env(
        REDIS_URL=cluster.redis_url,
        THINWS_LAYER=cluster.layer,
        DATABASE_PATH=str(cluster.database_path),
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "manage.py", "thinws_send", room, '{"text": "from a task"}'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    message_id = done.stdout.strip()
    for sub in subs:
        got = await sub.next_message(room=room)
        assert_relayed(got, room, {"text": "from a task"}, None)
        assert got["messageID"] == message_id


async def test_thinws_send_refuses_bad_input_clearly(cluster):
    import subprocess
    import sys

    from tests.servers import ROOT, demo_env

    env = demo_env(REDIS_URL=cluster.redis_url, THINWS_LAYER=cluster.layer)
    for args, expected in [
        (["lobby", "{not json"], "payload '{not json' is not valid JSON"),
        (["a\x07b", "1"], "control character"),
    ]:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "manage.py", "thinws_send", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
