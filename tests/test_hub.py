"""The hub (one channel-layer receiver per process) and the outbox (per-socket send queue).

Hub tests drive real consumers on the in-memory layer and look at the layer's ``groups`` dict;
Outbox tests use plain asyncio.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from tests.consumer_kit import Client, application, db, hub, layer, wait_until
from tests.settings import PROTOCOL_TEST_PROFILE
from thinws_channels import api, events
from thinws_channels.consumers import ThinWSConsumer
from thinws_channels.models import ServerInstance
from thinws_channels.outbox import Outbox
from thinws_channels.protocol import connection_group, room_group


def group_of(room_id: str) -> str:
    """The contract's group name, computed here independently of protocol.py."""
    return "thinws.room." + hashlib.sha256(room_id.encode("utf-8")).hexdigest()[:40]


def members_of(group: str) -> list[str]:
    return list(layer().groups.get(group, {}))


def consumer_of(room_id: str, connection_id: str) -> ThinWSConsumer:
    [consumer] = [s for s in hub().members(room_id) if s.connection_id == connection_id]
    return consumer  # type: ignore[return-value]


# group membership --------------------------------------------------------------------------------


async def test_group_name_is_the_contracts():
    for room in ["lobby", "é", "😀" * 200, "a b/c"]:
        assert room_group(room) == group_of(room)
        assert len(room_group(room)) == len("thinws.room.") + 40 < 100


async def test_one_group_membership_per_process_per_room(clients):
    sockets = [await clients(f"c{n}") for n in range(4)]
    sockets.append(await clients("c0"))  # a second socket of c0
    for client in sockets[:4]:
        await client.subscribe("lobby")
    await sockets[0].subscribe("lobby")  # again: idempotent
    # the second c0 socket was told once (the repeat changed nothing)
    assert await sockets[4].recv() == {"type": "subscribed", "roomID": "lobby"}
    channel = hub().channel_name
    assert channel
    assert members_of(group_of("lobby")) == [channel]
    assert len(hub().members("lobby")) == 5  # every local socket, the second c0 socket included
    # The consumers have no channel of their own: only the hub's channel is in any group.
    assert {c for members in layer().groups.values() for c in members} == {channel}
    assert members_of(connection_group("c0")) == [channel]
    # The published message reaches each socket exactly once.
    ack, _ = await sockets[1].publish("lobby", "hi")
    for client in [sockets[0], *sockets[2:]]:
        assert (await client.recv())["messageID"] == ack["id"]
        assert await client.nothing()


async def test_each_room_has_its_own_group(clients):
    a = await clients("a")
    for room in ["r1", "r2", "r3"]:
        await a.subscribe(room)
    channel = hub().channel_name
    for room in ["r1", "r2", "r3"]:
        assert members_of(group_of(room)) == [channel]
    assert sorted(g for g in layer().groups if g.startswith("thinws.room.")) == sorted(
        group_of(r) for r in ["r1", "r2", "r3"]
    )


async def test_group_is_left_when_the_last_local_member_leaves(clients):
    a = await clients("a")
    b = await clients("b")
    c = await clients("c")
    d = await clients("d")
    for client in (a, b, c, d):
        await client.subscribe("r")
    await d.subscribe("keep")
    group = group_of("r")

    await a.unsubscribe("r")  # by unsubscribe
    assert members_of(group) == [hub().channel_name]
    await b.ok("disconnect")  # by disconnect
    assert (await b.recv_raw())["code"] == 1000
    assert members_of(group) == [hub().channel_name]
    await c.close()  # by dropping
    assert members_of(group) == [hub().channel_name]
    assert {s.connection_id for s in hub().members("r")} == {"d"}
    await d.unsubscribe("r")
    assert group not in layer().groups
    assert "r" not in hub().rooms
    assert members_of(group_of("keep")) == [hub().channel_name]  # other rooms untouched

    # rejoining joins the group again
    await a.subscribe("r")
    assert members_of(group) == [hub().channel_name]


async def test_connection_group_is_left_with_the_last_socket_of_the_connection_id(clients):
    a1 = await clients("shared")
    a2 = await clients("shared")
    other = await clients("other")
    group = connection_group("shared")
    assert members_of(group) == [hub().channel_name]
    await a1.close()
    assert members_of(group) == [hub().channel_name]
    await a2.close()
    assert group not in layer().groups
    assert hub().running  # "other" is still here
    await other.close()


async def test_hub_starts_with_the_first_connect_and_stops_with_the_last_socket(clients):
    unconnected = await clients()
    assert not hub().running  # opening a socket is not enough: connect starts the hub
    a = await clients("a")
    assert hub().running
    first_channel, first_instance = hub().channel_name, hub().instance_id
    assert await db(lambda: list(ServerInstance.objects.values_list("pk", flat=True)))() == [
        first_instance
    ]
    b = await clients("b")
    await a.subscribe("r")
    await b.subscribe("r")
    assert hub().channel_name == first_channel  # one hub for the loop

    await a.close()
    assert hub().running
    await b.close()
    assert not hub().running
    assert hub().channel_name == "" and hub().instance_id is None
    assert layer().groups == {}
    assert hub()._tasks == []
    assert await db(ServerInstance.objects.count)() == 0

    # and starts again, with a new channel and a new instance row
    c = await clients("c")
    assert c.connect_ack["rooms"] == []
    assert hub().running and hub().channel_name != first_channel
    assert hub().instance_id != first_instance
    assert await db(ServerInstance.objects.count)() == 1
    await c.close()
    await unconnected.close()
    assert not hub().running


async def test_the_hub_stops_even_when_a_task_of_its_missed_the_cancel(clients):
    """On Python 3.11, ``asyncio.wait_for`` drops a cancel that comes as its inner future
    finishes, and redis-py 8 writes every command through it: the core layer's ``receive`` then
    went on blocking in BZPOPMIN, and the stop awaited it for good (the last socket's
    ``disconnect`` was never acked, the hub's lifecycle lock never released)."""
    a = await clients("a")
    missed = asyncio.Event()

    async def misses_one_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            missed.set()  # swallowed, as asyncio.wait_for did
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(misses_one_cancel())
    await asyncio.sleep(0)
    hub()._tasks.append(task)
    started = asyncio.get_running_loop().time()
    assert await a.request("disconnect", messageID=1) == {"type": "ack", "messageID": 1}
    assert asyncio.get_running_loop().time() - started < 1.0
    assert missed.is_set() and task.cancelled()
    assert not hub().running and hub()._tasks == []


async def test_events_of_an_unknown_version_or_type_are_ignored(clients, caplog):
    a = await clients("a")
    await a.subscribe("r")
    caplog.set_level(logging.DEBUG, logger="thinws_channels.hub")
    _, event = events.room_message("r", "from the future", sender="x")
    event["v"] = events.VERSION + 1
    await layer().group_send(group_of("r"), event)
    await layer().group_send(group_of("r"), {"type": "thinws.something.new", "v": 99})
    assert await a.nothing()
    await wait_until(lambda: any("version" in r.getMessage() for r in caplog.records))
    # the hub goes on
    server_id = await api.asend_to_room("r", "current")
    assert (await a.recv())["messageID"] == server_id


async def test_room_messages_for_rooms_without_local_members_are_dropped(clients):
    a = await clients("a")
    await a.subscribe("r")
    # the hub is not in the group of "elsewhere": sent straight to its channel, it is ignored
    _, event = events.room_message("elsewhere", 1, sender="x")
    await layer().send(hub().channel_name, event)
    assert await a.nothing()


# a slow socket does not hold up the others -------------------------------------------------------


class Gate:
    """An ASGI wrapper whose ``send`` waits while the gate is closed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.opened = asyncio.Event()
        self.opened.set()
        self.sends_started = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def gated_send(message: dict[str, Any]) -> None:
            self.sends_started += 1
            await self.opened.wait()
            await send(message)

        await self.app(scope, receive, gated_send)


async def test_a_blocked_socket_does_not_hold_up_the_others(clients):
    gate = Gate(application)
    slow = clients.adopt(await Client(gate).open())
    await slow.connect("slow")
    await slow.subscribe("r")
    fast = [await clients(f"fast{n}") for n in range(3)]
    for client in fast:
        await client.subscribe("r")
    slow_consumer = consumer_of("r", "slow")

    gate.opened.clear()  # slow's server stops taking frames
    sender = fast[0]
    for n in range(20):
        await sender.send("message", roomID="r", payload=n)
    frames = await sender.recv_many(40)
    assert [f["payload"] for f in frames if f["type"] == "message"] == list(range(20))
    for client in fast[1:]:
        assert [f["payload"] for f in await client.recv_many(20)] == list(range(20))
    server_id = await api.asend_to_room("r", "server")
    for client in fast:
        assert (await client.recv())["messageID"] == server_id
    assert await slow.nothing()
    # one send is stuck in the server, the rest wait in order in the socket's outbox
    assert slow_consumer._outbox.pending == 21

    gate.opened.set()
    got = await slow.recv_many(21)
    assert [f["payload"] for f in got] == [*range(20), "server"]
    assert got[-1]["messageID"] == server_id
    assert await slow.nothing()
    await wait_until(lambda: slow_consumer._outbox.pending == 0)
    # and it works as before
    ack, echo = await slow.publish("r", "back")
    assert echo["messageID"] == ack["id"]


async def test_a_blocked_socket_gets_its_replies_in_order_after_its_backlog(clients):
    gate = Gate(application)
    slow = clients.adopt(await Client(gate).open())
    await slow.connect("slow")
    await slow.subscribe("r")
    other = await clients("other")
    await other.subscribe("r")

    gate.opened.clear()
    await other.publish("r", "first")
    await wait_until(lambda: consumer_of("r", "slow")._outbox.pending == 1)
    ids = [await slow.send("subscribe", roomID=f"s{n}") for n in range(3)]
    ids.append(await slow.send("nope"))
    await wait_until(lambda: consumer_of("r", "slow")._outbox.pending == 5)
    assert await slow.nothing()
    gate.opened.set()
    assert (await slow.recv())["payload"] == "first"
    replies = await slow.recv_many(4)
    assert [r["messageID"] for r in replies] == ids
    assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error"]


async def test_a_socket_dropping_while_blocked_is_cleaned_up(clients):
    gate = Gate(application)
    slow = clients.adopt(await Client(gate).open())
    await slow.connect("slow")
    await slow.subscribe("r")
    other = await clients("other")
    await other.subscribe("r")
    gate.opened.clear()
    for n in range(5):
        await other.publish("r", n)
    await wait_until(lambda: consumer_of("r", "slow")._outbox.pending == 5)
    await slow.close()  # the consumer finishes although its server never took the frames
    assert {s.connection_id for s in hub().members("r")} == {"other"}
    await other.publish("r", "after")


# Outbox, unit ------------------------------------------------------------------------------------


class Recorder:
    """A fake ASGI send: records frames; ``block`` holds the frames whose n is in it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.release = asyncio.Event()
        self.block: set[Any] = set()

    async def send(self, message: dict[str, Any]) -> None:
        if message["n"] in self.block:
            await self.release.wait()
        self.sent.append(message["n"])


def frame(n: Any) -> dict[str, Any]:
    return {"type": "websocket.send", "n": n}


async def test_outbox_sends_inline_when_the_server_takes_the_frame_at_once():
    rec = Recorder()
    outbox = Outbox(rec.send)
    for n in range(3):
        outbox.push(frame(n))
        assert rec.sent == list(range(n + 1))  # sent during push, no task, no await
        assert outbox.pending == 0
    await outbox.flush()


async def test_outbox_queues_in_order_behind_a_blocked_send():
    rec = Recorder()
    rec.block = {2}
    outbox = Outbox(rec.send)
    for n in range(6):
        outbox.push(frame(n))
    assert rec.sent == [0, 1]
    assert outbox.pending == 4  # 2 is in the server, 3..5 wait
    await asyncio.sleep(0.05)
    assert rec.sent == [0, 1]
    rec.release.set()
    await asyncio.wait_for(outbox.flush(), 2)
    assert rec.sent == [0, 1, 2, 3, 4, 5]
    assert outbox.pending == 0
    outbox.push(frame(6))  # inline again once drained
    assert rec.sent[-1] == 6


async def test_frames_pushed_while_draining_keep_their_order():
    rec = Recorder()
    rec.block = {0}
    outbox = Outbox(rec.send)
    outbox.push(frame(0))
    outbox.push(frame(1))
    await asyncio.sleep(0.01)  # the drain task waits on the blocked send
    rec.release.set()
    await asyncio.sleep(0)
    for n in range(2, 8):
        outbox.push(frame(n))
        await asyncio.sleep(0)
    await asyncio.wait_for(outbox.flush(), 2)
    assert rec.sent == list(range(8))


async def test_one_blocked_outbox_does_not_hold_up_the_others():
    slow, fast1, fast2 = Recorder(), Recorder(), Recorder()
    slow.block = {0, 1, 2}
    outboxes = [Outbox(slow.send), Outbox(fast1.send), Outbox(fast2.send)]
    for n in range(3):
        for outbox in outboxes:  # the slow one first, as a fan-out might
            outbox.push(frame(n))
    assert fast1.sent == [0, 1, 2] and fast2.sent == [0, 1, 2]
    assert slow.sent == []
    slow.release.set()
    await asyncio.wait_for(outboxes[0].flush(), 2)
    assert slow.sent == [0, 1, 2]


async def test_outbox_with_a_send_that_yields_bare():
    sent: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # a bare yield, no future
        await asyncio.sleep(0)
        sent.append(message["n"])

    outbox = Outbox(send)
    for n in range(4):
        outbox.push(frame(n))
    assert sent == []
    await asyncio.wait_for(outbox.flush(), 2)
    assert sent == [0, 1, 2, 3]


async def test_outbox_with_a_send_that_returns_a_future():
    loop = asyncio.get_running_loop()
    sent: list[int] = []
    pending: list[asyncio.Future[None]] = []

    def send(message: dict[str, Any]) -> asyncio.Future[None]:
        future = loop.create_future()
        pending.append(future)
        sent.append(message["n"])
        return future

    outbox = Outbox(send)
    outbox.push(frame(0))
    outbox.push(frame(1))
    assert sent == [0] and outbox.pending == 2
    pending[0].set_result(None)
    await wait_until(lambda: len(pending) == 2)
    assert sent == [0, 1]
    pending[1].set_result(None)
    await asyncio.wait_for(outbox.flush(), 2)
    assert outbox.pending == 0


async def test_outbox_send_failing_at_once_is_logged_and_the_outbox_goes_on(caplog):
    sent: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["n"] == 1:
            raise ConnectionResetError("gone")
        sent.append(message["n"])

    outbox = Outbox(send)
    for n in range(3):
        outbox.push(frame(n))
    assert sent == [0, 2]
    [record] = [r for r in caplog.records if r.name == "thinws_channels.outbox"]
    assert "sending to a socket failed" in record.getMessage()
    assert isinstance(record.exc_info[1], ConnectionResetError)


async def test_outbox_send_failing_after_waiting_is_logged(caplog):
    release = asyncio.Event()
    sent: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["n"] == 0:
            await release.wait()
            raise ConnectionResetError("gone")
        sent.append(message["n"])

    outbox = Outbox(send)
    outbox.push(frame(0))
    outbox.push(frame(1))
    await asyncio.sleep(0.01)  # the drain task waits on the blocked send
    assert sent == []
    release.set()
    await asyncio.wait_for(outbox.flush(), 2)
    assert outbox.pending == 0
    assert any(
        r.name == "thinws_channels.outbox" and isinstance(r.exc_info[1], ConnectionResetError)
        for r in caplog.records
    )
    outbox.push(frame(2))  # usable again
    assert sent[-1] == 2


async def test_outbox_cancel_drops_the_queue_and_cancels_the_blocked_send():
    rec = Recorder()
    rec.block = {0}
    outbox = Outbox(rec.send)
    for n in range(3):
        outbox.push(frame(n))
    assert outbox.pending == 3
    await asyncio.sleep(0.01)  # the drain task is waiting on the blocked send
    outbox.cancel()
    await wait_until(lambda: outbox.pending == 0)
    rec.release.set()
    await asyncio.sleep(0.05)
    assert rec.sent == []  # the blocked send was cancelled and the queue dropped
    assert not rec.release._waiters  # nothing waits on the event any more


async def test_outbox_flush_without_backlog_returns_at_once():
    outbox = Outbox(Recorder().send)
    await asyncio.wait_for(outbox.flush(), 0.1)
    outbox.cancel()  # harmless when nothing is queued


# group expiry ------------------------------------------------------------------------------------


async def test_membership_outlives_the_layers_group_expiry(clients, settings):
    """The layer forgets group members after ``group_expiry``; the hub re-adds itself."""
    settings.THINWS_CHANNELS = {**PROTOCOL_TEST_PROFILE, "GROUP_REFRESH_INTERVAL": 0.2}
    layer().group_expiry = 1
    try:
        a = await clients("c1")
        await a.subscribe("r")
        await asyncio.sleep(2.5)  # more than twice the expiry, several refreshes
        layer()._clean_expired()
        assert members_of(room_group("r")) == [hub().channel_name]
        _, echo = await a.publish("r", "still here")
        assert echo["payload"] == "still here"
    finally:
        layer().group_expiry = 86400


async def test_without_refresh_the_layer_would_forget_the_room(clients, settings):
    """The control for the test above: with a refresh interval past the expiry, the
    membership is gone after the expiry (so the test above proves the refresh)."""
    settings.THINWS_CHANNELS = {**PROTOCOL_TEST_PROFILE, "GROUP_REFRESH_INTERVAL": 3600}
    try:
        a = await clients("c1")
        await a.subscribe("r")
        layer().group_expiry = 1  # after the hub chose its first sleep (an hour)
        await asyncio.sleep(2.5)  # the layer compares with int(time.time()) - group_expiry
        layer()._clean_expired()
        assert members_of(room_group("r")) == []
        await a.close()
    finally:
        layer().group_expiry = 86400
        # The in-memory layer keeps a group's empty dict when its last member expired.
        for group in [g for g, members in layer().groups.items() if not members]:
            del layer().groups[group]
