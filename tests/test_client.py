"""thinws_channels.client against real daphne instances of demo_project (tests/servers.py).

The ``cluster`` fixture runs on both channels-redis layers; tests that kill, pause or restart an
instance, or need other settings, get a cluster of their own from ``cluster_factory``. Every wait
is bounded (WAIT seconds). The command line is tested in test_client_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.servers import free_port
from tests.settings import PROTOCOL_TEST_PROFILE
from thinws_channels.client import (
    ThinWSClient,
    ThinWSClosed,
    ThinWSConnectError,
    ThinWSDisconnected,
    ThinWSError,
    ThinWSTimeout,
)
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


def record(client: ThinWSClient, *events: str) -> dict[str, list[Any]]:
    """Every argument of every listed event of ``client``, in order, by event name."""
    seen: dict[str, list[Any]] = {event: [] for event in events}
    for event in events:
        client.on(event, seen[event].append)
    return seen


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
    # Payloads that are not JSON are refused before sending, naming the value.
    for bad, named in ((float("nan"), "nan"), ({1, 2}, "{1, 2}"), ("a\ud800b", r"a\\ud800b")):
        with pytest.raises(ValueError, match=named):
            await client.publish(room, bad)
    # The errors answered their own calls: the socket goes on.
    await client.subscribe(room)
    assert isinstance(await client.publish(room, None), str)
    assert client.pending == 0 and client.queued == 0


def test_exceptions_and_bad_options():
    assert issubclass(ThinWSTimeout, asyncio.TimeoutError)
    assert issubclass(ThinWSDisconnected, ThinWSClosed)
    assert issubclass(ThinWSConnectError, ConnectionError)
    url = "ws://127.0.0.1:1/ws/thinws/"
    for options, named in (
        ({"url": "http://example.com/"}, "http://example.com/"),
        ({"url": []}, "empty list"),
        ({"connection_id": ""}, "connection_id"),
        ({"queue_limit": 51}, "queue_limit.*51"),
        ({"request_timeout": 0}, "request_timeout.*0"),
        ({"give_up_after": -1}, "give_up_after.*-1"),
        ({"max_attempts": 0}, "max_attempts.*0"),
        ({"backoff_initial": 5, "backoff_max": 1}, "backoff_initial"),
    ):
        args = {"url": url, "connection_id": "x", **options}
        with pytest.raises(ValueError, match=named):
            ThinWSClient(args.pop("url"), args.pop("connection_id"), **args)
    with pytest.raises(ValueError, match="'opened'"):
        ThinWSClient(url, "x").on("opened", print)


async def test_calls_before_connect_are_refused():
    client = ThinWSClient("ws://127.0.0.1:1/ws/thinws/", "early")
    with pytest.raises(ThinWSError) as early:
        await client.subscribe("lobby")
    assert early.value.code == "not_connected"
    assert client.state == "idle"


async def test_instance_state_and_events(cluster, make):
    client = make(cluster.urls[1], uid("events"))
    seen = record(client, "state", "open", "close", "reconnecting")
    failing_listener_ran: list[bool] = []

    def failing(_: object) -> None:
        failing_listener_ran.append(True)
        raise RuntimeError("a broken listener must not break the client")

    async def coroutine_listener(ack: dict) -> None:
        seen.setdefault("async open", []).append(ack)

    client.on("open", failing)
    client.on("open", coroutine_listener)
    remove = client.on("open", lambda ack: seen.setdefault("removed", []).append(ack))
    remove()
    assert client.instance is None and client.state == "idle"

    ack = await client.connect()
    assert client.instance == ack["instance"] == "b"  # THINWS_INSTANCE of the second instance
    assert client.state == "open" and client.connected and client.url == cluster.urls[1]
    assert seen["state"] == ["connecting", "open"]
    assert [event["reconnected"] for event in seen["open"]] == [False]
    assert seen["open"][0]["rooms"] == [] and failing_listener_ran == [True]
    await until(lambda: "async open" in seen, "the coroutine listener")
    assert "removed" not in seen

    await client.close()
    assert seen["state"] == ["connecting", "open", "closed"]
    assert [event["will_reconnect"] for event in seen["close"]] == [False]
    assert seen["reconnecting"] == []
    with pytest.raises(ThinWSClosed):
        await client.subscribe("x")
    assert (await client.connect())["connectionID"] == client.connection_id  # again
    assert [event["reconnected"] for event in seen["open"]] == [False, True]


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
    seen = record(anonymous, "error", "reconnecting")
    with pytest.raises(ThinWSError) as refused:
        await anonymous.connect()
    assert refused.value.code == "forbidden"  # at once: no retry without a token_provider
    assert [error.code for error in seen["error"]] == ["forbidden"]
    assert seen["reconnecting"] == [] and anonymous.state == "closed"

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


async def test_a_token_provider_gets_one_retry_after_4001(cluster_factory, make):
    cluster = cluster_factory(size=1, extra_env={"THINWS_SETTINGS": "{}"})
    cid = uid("retry")
    tokens = [issue_token(uid("someone-else")), issue_token(cid)]  # refused, then good
    calls: list[str] = []

    def provider() -> str:  # a plain function works as well as a coroutine function
        calls.append(tokens[len(calls)] if len(calls) < len(tokens) else "garbage")
        return calls[-1]

    client = make(cluster.urls[0], cid, token_provider=provider)
    seen = record(client, "error")
    await client.connect()
    assert calls == tokens
    assert [error.code for error in seen["error"]] == ["forbidden"]

    always_bad = make(cluster.urls[0], uid("bad"), token_provider=lambda: "garbage")
    seen = record(always_bad, "error", "reconnecting")
    with pytest.raises(ThinWSError) as refused:
        await always_bad.connect()
    assert refused.value.code == "forbidden"
    assert [error.code for error in seen["error"]] == ["forbidden", "forbidden"]
    assert [event["delay"] for event in seen["reconnecting"]] == [0.0]  # the one retry, at once


async def test_graceful_shutdown_moves_the_client_to_the_other_instance(cluster_factory, make):
    cluster = cluster_factory(size=2)
    room = uid("room")
    client = make(cluster.urls, uid("moved"))
    seen = record(client, "close", "reconnecting", "open")
    await client.connect()
    await client.subscribe(room)
    assert client.instance == "a"

    # daphne closes its sockets with 4012 on SIGTERM, or drops them (1006) when a handshake
    # happened within about a second before the signal (docs/protocol.md, "closing"): wait that
    # second out to see 4012 most of the time; the client must reconnect either way.
    await asyncio.sleep(1.5)
    await asyncio.to_thread(cluster.terminate, 0)
    await until(lambda: client.connected and client.instance == "b", "the move to b")
    assert client.rooms == [room] and client.url == cluster.urls[1]
    [close] = seen["close"]
    assert close["code"] in (4012, 1006) and close["will_reconnect"]
    if close["code"] == 4012:
        assert seen["reconnecting"][0]["delay"] == 0.0  # 4012: at once
    assert [event["reconnected"] for event in seen["open"]] == [False, True]

    pub = make(cluster.urls[1], uid("pub"))
    await pub.connect()
    await pub.subscribe(room)
    message_id = await pub.publish(room, "after the move")
    assert (await next_message(client, room))["messageID"] == message_id


async def test_calls_in_flight_when_the_socket_drops(cluster_factory, make):
    """A publish whose ack was lost raises ThinWSDisconnected (it may or may not have been
    published); subscribe and unsubscribe are sent again after the reconnect."""
    cluster = cluster_factory(size=2)
    kept, left, joined = uid("kept"), uid("left"), uid("joined")
    cid = uid("inflight")
    client = make(cluster.urls, cid)
    slow = make(cluster.urls[0], uid("slow"), request_timeout=0.5, reconnect=False)
    await client.connect()
    await slow.connect()
    await client.subscribe(kept)
    await client.subscribe(left)

    os.kill(cluster.pids[0], signal.SIGSTOP)  # instance a hangs: nothing is answered
    try:
        with pytest.raises(ThinWSTimeout):
            await slow.subscribe(kept)
        calls = [
            asyncio.create_task(client.publish(kept, "lost?")),
            asyncio.create_task(client.subscribe(joined)),
            asyncio.create_task(client.unsubscribe(left)),
        ]
        await until(lambda: client.pending == 3, "the three calls on the wire")
    finally:
        cluster.kill(0)  # SIGKILL ends a stopped process too
    async with asyncio.timeout(WAIT):
        published, subscribed, unsubscribed = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(published, ThinWSDisconnected), published
    assert published.code == "disconnected" and published.close_code == 1006
    assert "may or may not have been published" in published.message
    assert subscribed["type"] == unsubscribed["type"] == "ack"
    assert client.instance == "b" and client.rooms == [kept, joined]

    again = make(cluster.urls[1], cid)
    assert (await again.connect())["rooms"] == [kept, joined]


async def test_first_connect_waits_for_the_server(cluster_factory, make):
    cluster = cluster_factory(size=1)
    await asyncio.to_thread(cluster.terminate, 0)
    client = make(cluster.urls[0], uid("early"))
    seen = record(client, "reconnecting", "error", "state")
    connecting = asyncio.create_task(client.connect())
    await until(lambda: len(seen["reconnecting"]) >= 3, "three failed attempts")
    assert client.state == "connecting" and not connecting.done()

    await asyncio.to_thread(cluster[0].start)
    async with asyncio.timeout(WAIT):
        ack = await connecting
    assert ack["instance"] == client.instance == "a"
    assert seen["error"] == []  # a server that is not up is no error frame
    assert seen["state"] == ["connecting", "open"]
    # The first attempt of connect() is attempt 1, so its first retry is attempt 2.
    assert [event["attempt"] for event in seen["reconnecting"][:3]] == [2, 3, 4]


async def test_first_connect_gives_up_with_a_clear_error(make):
    url = f"ws://127.0.0.1:{free_port()}/ws/thinws/"  # nothing listens there
    for options, attempts in (({"max_attempts": 3}, 3), ({"reconnect": False}, 1)):
        client = make(url, uid("nobody"), **options)
        with pytest.raises(ThinWSConnectError) as failed:
            await client.connect()
        error = failed.value
        assert error.code == "connect_failed" and error.attempts == attempts
        assert url in str(error) and "ConnectionRefusedError" in str(error)
        assert isinstance(error.last_error, OSError) and error.__cause__ is error.last_error
        assert client.state == "closed"
        with pytest.raises(ThinWSConnectError):  # the stream of messages says why it ended
            async with asyncio.timeout(WAIT):
                _ = [m async for m in client.messages()]

    bounded = make(url, uid("bounded"), give_up_after=0.3)
    with pytest.raises(ThinWSConnectError, match="could not connect"):
        async with asyncio.timeout(WAIT):
            await bounded.connect()


async def test_error_with_a_null_message_id_surfaces(cluster_factory, make):
    """Too many sockets from one address: the server answers the handshake with a
    limit_exceeded error whose messageID is null and closes with 4008. The client reports it as
    an error event, retries with backoff, and gets through once a socket is freed."""
    settings = {**PROTOCOL_TEST_PROFILE, "MAX_CONNECTIONS_PER_ADDRESS": 1}
    cluster = cluster_factory(size=1, extra_env={"THINWS_SETTINGS": json.dumps(settings)})
    holder = make(cluster.urls[0], uid("holder"))
    await holder.connect()

    bounded = make(cluster.urls[0], uid("bounded"), max_attempts=2)
    seen = record(bounded, "error")
    with pytest.raises(ThinWSConnectError) as failed:
        await bounded.connect()
    last = failed.value.last_error
    assert isinstance(last, ThinWSError) and last.code == "limit_exceeded"
    assert last.message_id is None and last.frame is not None
    assert [(error.code, error.message_id) for error in seen["error"]] == [
        ("limit_exceeded", None),
        ("limit_exceeded", None),
    ]

    patient = make(cluster.urls[0], uid("patient"))
    seen = record(patient, "error")
    connecting = asyncio.create_task(patient.connect())
    await until(lambda: len(seen["error"]) >= 1, "a refused attempt")
    await holder.close()  # frees the address's only socket
    async with asyncio.timeout(WAIT):
        await connecting
    assert patient.connected and {error.code for error in seen["error"]} == {"limit_exceeded"}
