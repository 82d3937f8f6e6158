"""thinws_channels.client against real daphne instances of demo_project (tests/servers.py).

The ``cluster`` fixture runs on both channels-redis layers; tests that kill or restart an instance
get a cluster of their own from ``cluster_factory``. Every wait is bounded (WAIT seconds).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from tests.servers import ROOT
from thinws_channels.client import ThinWSClient, ThinWSError, ThinWSTimeout
from thinws_channels.tokens import issue_token

pytestmark = pytest.mark.integration

WAIT = 20.0  # the bound of every wait; a healthy run takes a fraction of it


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., ThinWSClient]]:
    """``make(url, connection_id, **options)`` -> a ThinWSClient (not connected), closed at
    teardown."""
    made: list[ThinWSClient] = []

    def factory(url: str | list[str], connection_id: str, **options: object) -> ThinWSClient:
        options.setdefault("backoff_max", 0.5)
        options.setdefault("backoff_initial", 0.05)
        client = ThinWSClient(url, connection_id, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    try:
        yield factory
    finally:
        for client in made:
            await client.close()


async def next_message(client: ThinWSClient, room: str) -> dict:
    async with asyncio.timeout(WAIT):
        async for message in client.messages():
            if message.get("roomID") == room:
                return message
    raise AssertionError("the message stream ended")


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll the client's state (it has no event for every change) for at most WAIT seconds."""
    try:
        async with asyncio.timeout(WAIT):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"no {what} within {WAIT} s") from None


async def test_publish_on_b_reaches_subscriber_on_a(cluster, make):
    room = uid("room")
    sub = make(cluster.urls[0], uid("sub"))
    pub = make(cluster.urls[1], uid("pub"))
    assert (await sub.connect())["rooms"] == []
    await pub.connect()
    await sub.subscribe(room)
    await pub.subscribe(room)
    assert sub.rooms == [room] and pub.rooms == [room]

    payload = {"text": "héllo", "n": [1, 2.5, None, True]}
    message_id = await pub.publish(room, payload)
    for client in (sub, pub):  # the sender gets its own echo, with the same server id
        got = await next_message(client, room)
        assert got["payload"] == payload
        assert got["connectionID"] == pub.connection_id
        assert got["messageID"] == message_id

    await sub.unsubscribe(room)
    assert sub.rooms == []


async def test_errors_raise_with_the_server_code(cluster, make):
    client = make(cluster.urls[0], uid("err"))
    await client.connect()
    room = uid("room")
    with pytest.raises(ThinWSError) as refused:
        await client.publish(room, "not a member")
    assert refused.value.code == "not_subscribed"
    with pytest.raises(ThinWSError) as refused:
        await client.unsubscribe(room)
    assert refused.value.code == "not_subscribed"
    with pytest.raises(ThinWSError) as invalid:
        await client.subscribe("")
    assert invalid.value.code == "invalid_envelope"
    # The errors answered their own calls: the socket goes on.
    await client.subscribe(room)
    assert isinstance(await client.publish(room, None), str)


def test_timeout_is_an_asyncio_timeout():
    assert issubclass(ThinWSTimeout, asyncio.TimeoutError)
    assert issubclass(ThinWSTimeout, ThinWSError)
    with pytest.raises(ValueError, match="queue_limit"):
        ThinWSClient("ws://127.0.0.1:1/", "x", queue_limit=51)


async def test_notices_of_other_sockets_update_rooms(cluster, make):
    room, cid = uid("room"), uid("twin")
    on_a, on_b = make(cluster.urls[0], cid), make(cluster.urls[1], cid)
    await on_a.connect()
    await on_b.connect()
    await on_a.subscribe(room)
    await until(lambda: on_b.rooms == [room], "the subscribed notice")
    await on_a.unsubscribe(room)
    await until(lambda: on_b.rooms == [], "the unsubscribed notice")


async def test_disconnect_stops_and_the_rooms_stay_stored(cluster, make):
    room, cid = uid("room"), uid("leaver")
    client = make(cluster.urls[0], cid)
    await client.connect()
    await client.subscribe(room)
    await client.disconnect()
    assert client.state == "closed"
    async with asyncio.timeout(WAIT):
        assert [m async for m in client.messages()] == []  # the stream has ended
    with pytest.raises(ThinWSError):
        await client.subscribe(room)

    again = make(cluster.urls[1], cid)
    assert (await again.connect())["rooms"] == [room]
    assert again.rooms == [room]


async def test_reconnects_to_the_next_url_with_its_rooms(cluster_factory, make):
    cluster = cluster_factory(size=2)
    room = uid("room")
    client = make(cluster.urls, uid("roamer"))
    await client.connect()
    assert client.url == cluster.urls[0]
    await client.subscribe(room)

    cluster.kill(0)
    await until(lambda: client.connected and client.url == cluster.urls[1], "the reconnect")
    assert client.rooms == [room]

    pub = make(cluster.urls[1], uid("pub"))
    await pub.connect()
    await pub.subscribe(room)
    message_id = await pub.publish(room, {"after": "reconnect"})
    got = await next_message(client, room)
    assert got["messageID"] == message_id


async def test_calls_made_offline_are_queued_in_order(cluster_factory, make):
    cluster = cluster_factory(size=1)
    room = uid("room")
    client = make(cluster.urls[0], uid("queued"), queue_limit=3)
    await client.connect()
    await client.subscribe(room)

    cluster.kill(0)
    await until(lambda: client.state == "reconnecting", "the client noticing the drop")
    calls = [asyncio.create_task(client.publish(room, n)) for n in (1, 2, 3)]
    await asyncio.sleep(0)  # the three calls are queued, in order
    with pytest.raises(ThinWSError) as full:
        await client.publish(room, 4)
    assert full.value.code == "queue_full"

    cluster[0].start()
    async with asyncio.timeout(WAIT):
        ids = await asyncio.gather(*calls)
    assert client.rooms == [room]  # from the connect ack
    got = [await next_message(client, room) for _ in ids]
    assert [m["payload"] for m in got] == [1, 2, 3]
    assert [m["messageID"] for m in got] == ids


async def test_token_provider_gives_a_token_on_each_connect(cluster_factory, make):
    cluster = cluster_factory(size=1, extra_env={"THINWS_SETTINGS": "{}"})
    cid = uid("tokened")

    anonymous = make(cluster.urls[0], cid)
    with pytest.raises(ThinWSError) as refused:
        await anonymous.connect()
    assert refused.value.code == "forbidden"

    fixed = make(cluster.urls[0], cid, token=issue_token(cid))
    await fixed.connect()
    await fixed.close()

    issued: list[str] = []

    async def provider() -> str:
        issued.append(issue_token(cid, expires_in=60))
        return issued[-1]

    room = uid("room")
    client = make(cluster.urls[0], cid, token_provider=provider)
    await client.connect()
    await client.subscribe(room)
    cluster.restart(0)
    await until(lambda: len(issued) >= 2 and client.connected, "the reconnect")
    assert client.rooms == [room]
    assert isinstance(await client.publish(room, "with a fresh token"), str)


async def test_command_line_prints_messages(cluster, make):
    room = uid("room")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = "thinws_channels.client"
    listener = await asyncio.create_subprocess_exec(
        sys.executable, "-m", cli, cluster.urls[0], uid("cli"), "--subscribe", room, "--listen",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(WAIT):
            lines = []
            while not lines or lines[-1] != "listening":
                line = await listener.stderr.readline()  # type: ignore[union-attr]
                assert line, f"the CLI ended: {lines}"
                lines.append(line.decode().strip())
        sender = await asyncio.create_subprocess_exec(
            sys.executable, "-m", cli, cluster.urls[1], uid("cli-send"),
            "--subscribe", room, "--send", room, '{"text": "from the CLI"}',
            cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(WAIT):
            _, err = await sender.communicate()
            assert sender.returncode == 0, err.decode()
            printed = json.loads(await listener.stdout.readline())  # type: ignore[union-attr]
        assert printed["roomID"] == room
        assert printed["payload"] == {"text": "from the CLI"}
        assert f"sent to {room!r}: {printed['messageID']}" in err.decode()
    finally:
        if listener.returncode is None:
            listener.terminate()
        await listener.wait()
