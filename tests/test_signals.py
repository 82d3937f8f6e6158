"""The lifecycle signals of thinws_channels.signals, sent by the real consumer (in-process)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.dispatch import Signal

from tests.consumer_kit import Client, db, wait_until
from thinws_channels import signals
from thinws_channels.consumers import ThinWSConsumer
from thinws_channels.models import Subscription

pytestmark = pytest.mark.usefixtures("transactional_db")

ALL = {
    "connected": signals.connected,
    "disconnected": signals.disconnected,
    "subscribed": signals.subscribed,
    "unsubscribed": signals.unsubscribed,
    "message_received": signals.message_received,
}

KWARGS = {
    "connected": {"connection_id", "user", "rooms", "consumer"},
    "disconnected": {"connection_id", "user", "graceful", "consumer"},
    "subscribed": {"connection_id", "user", "room_id", "consumer"},
    "unsubscribed": {"connection_id", "user", "room_id", "consumer"},
    "message_received": {"connection_id", "user", "room_id", "payload", "message_id", "consumer"},
}


class MyConsumer(ThinWSConsumer):
    """A project's subclass: its signals have it as sender."""


class Recorder:
    """Receivers of every signal; ``calls`` holds (signal name, kwargs) in the order received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._connected: list[tuple[Signal, Callable[..., Any]]] = []

    def connect(self, signal: Signal, receiver: Callable[..., Any], **kwargs: Any) -> None:
        signal.connect(receiver, weak=False, **kwargs)
        self._connected.append((signal, receiver))

    def listen(self, name: str, *, asynchronous: bool = False, **kwargs: Any) -> None:
        if asynchronous:

            async def receiver(signal: Signal, **named: Any) -> None:
                self.calls.append((name, named))

        else:

            def receiver(signal: Signal, **named: Any) -> None:  # type: ignore[misc]
                self.calls.append((name, named))

        self.connect(ALL[name], receiver, **kwargs)

    def listen_all(self, *, asynchronous: bool = False) -> None:
        for name in ALL:
            self.listen(name, asynchronous=asynchronous)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for signal, kwargs in self.calls if signal == name]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def wait_for(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        await wait_until(lambda: len(self.of(name)) >= count)
        return self.of(name)

    def disconnect_all(self) -> None:
        for signal, receiver in self._connected:
            signal.disconnect(receiver)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    made = Recorder()
    try:
        yield made
    finally:
        made.disconnect_all()


@pytest.fixture
async def alice():
    return await db(lambda: get_user_model().objects.create_user("alice"))()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_every_signal_with_its_documented_kwargs(clients, recorder, alice, asynchronous):
    recorder.listen_all(asynchronous=asynchronous)
    a = await clients(user=alice)
    await a.connect("c1")
    [connected] = await recorder.wait_for("connected")
    assert set(connected) == {"sender"} | KWARGS["connected"]
    assert connected["sender"] is ThinWSConsumer
    assert isinstance(connected["consumer"], ThinWSConsumer)
    assert connected["consumer"].connection_id == "c1"
    assert connected["connection_id"] == "c1"
    assert connected["user"] == alice
    assert connected["rooms"] == []
    consumer = connected["consumer"]

    await a.subscribe("lobby")
    [subscribed] = await recorder.wait_for("subscribed")
    assert subscribed == {
        "sender": ThinWSConsumer,
        "consumer": consumer,
        "connection_id": "c1",
        "user": alice,
        "room_id": "lobby",
    }

    ack, _ = await a.publish("lobby", {"n": 1})
    [received] = await recorder.wait_for("message_received")
    assert received == {
        "sender": ThinWSConsumer,
        "consumer": consumer,
        "connection_id": "c1",
        "user": alice,
        "room_id": "lobby",
        "payload": {"n": 1},
        "message_id": ack["id"],
    }

    await a.unsubscribe("lobby")
    [unsubscribed] = await recorder.wait_for("unsubscribed")
    assert unsubscribed == {
        "sender": ThinWSConsumer,
        "consumer": consumer,
        "connection_id": "c1",
        "user": alice,
        "room_id": "lobby",
    }

    await a.ok("disconnect")
    await a.close()
    [disconnected] = await recorder.wait_for("disconnected")
    assert disconnected == {
        "sender": ThinWSConsumer,
        "consumer": consumer,
        "connection_id": "c1",
        "user": alice,
        "graceful": True,
    }
    assert recorder.names() == [
        "connected",
        "subscribed",
        "message_received",
        "unsubscribed",
        "disconnected",
    ]


async def test_connected_lists_the_rooms_rejoined(clients, recorder):
    first = await clients("c1")
    await first.subscribe("b")
    await first.subscribe("a")
    await first.close()
    recorder.listen("connected")
    await clients("c1")
    [connected] = await recorder.wait_for("connected")
    assert connected["rooms"] == ["b", "a"]


@pytest.mark.parametrize("user", [None, AnonymousUser()], ids=["no-user", "anonymous"])
async def test_anonymous_user_is_none(clients, recorder, user):
    recorder.listen("connected")
    await clients("c1", user=user)
    [connected] = await recorder.wait_for("connected")
    assert connected["user"] is None


async def test_disconnected_graceful_false_when_the_socket_drops(clients, recorder):
    recorder.listen("disconnected")
    a = await clients("c1")
    await a.subscribe("r")
    await a.close()
    [disconnected] = await recorder.wait_for("disconnected")
    assert disconnected["graceful"] is False
    assert disconnected["connection_id"] == "c1"
    assert disconnected["user"] is None


async def test_disconnected_graceful_false_after_a_binary_frame(clients, recorder):
    recorder.listen("disconnected")
    a = await clients("c1")
    await a.send_bytes(b"x")
    assert (await a.recv())["code"] == "unsupported_data"
    assert (await a.recv_raw())["code"] == 4003
    await a.close()
    [disconnected] = await recorder.wait_for("disconnected")
    assert disconnected["graceful"] is False


async def test_no_signals_for_a_socket_that_never_connected(clients, recorder):
    recorder.listen_all()
    a = await clients()
    assert (await a.request("subscribe", roomID="r"))["code"] == "not_connected"
    assert (await a.request("connect"))["code"] == "invalid_envelope"
    await a.close()
    assert recorder.calls == []


async def test_no_signal_for_refused_frames_and_repeats(clients, recorder):
    a = await clients("c1")
    await a.subscribe("r")
    await a.settle()
    recorder.listen_all()
    await a.subscribe("r")  # idempotent: the membership is not new
    assert (await a.request("unsubscribe", roomID="other"))["code"] == "not_subscribed"
    assert (await a.request("message", roomID="other", payload=1))["code"] == "not_subscribed"
    assert (await a.request("connect", connectionID="c2"))["code"] == "already_connected"
    assert (await a.request("message", roomID="r"))["code"] == "invalid_envelope"
    await a.settle()
    assert recorder.calls == []


async def test_subscribed_and_unsubscribed_are_sent_once_per_connection_id(clients, recorder):
    a = await clients("shared")
    b = await clients("shared")
    recorder.listen("subscribed")
    recorder.listen("unsubscribed")
    await a.subscribe("r")
    assert await b.recv() == {"type": "subscribed", "roomID": "r"}
    await b.unsubscribe("r")
    assert await a.recv() == {"type": "unsubscribed", "roomID": "r"}
    await a.settle()
    await b.settle()
    assert recorder.names() == ["subscribed", "unsubscribed"]
    assert (
        recorder.of("subscribed")[0]["consumer"] is not recorder.of("unsubscribed")[0]["consumer"]
    )


async def test_sender_is_the_consumer_subclass(clients, recorder):
    only_mine: list[dict[str, Any]] = []

    async def mine(signal: Signal, **kwargs: Any) -> None:
        only_mine.append(kwargs)

    recorder.connect(signals.connected, mine, sender=MyConsumer)
    recorder.listen("connected")
    plain = await clients("plain")
    await plain.settle()
    custom = clients.adopt(await Client(MyConsumer.as_asgi()).open())
    await custom.connect("custom")
    await recorder.wait_for("connected", 2)
    assert [k["sender"] for k in recorder.of("connected")] == [ThinWSConsumer, MyConsumer]
    assert isinstance(recorder.of("connected")[1]["consumer"], MyConsumer)
    # The recorder's receiver is sync (a thread) and ``mine`` async: they run concurrently, so
    # the recorder may see the signal before ``mine`` ran.
    await wait_until(lambda: bool(only_mine))
    assert [k["connection_id"] for k in only_mine] == ["custom"]
    await plain.close()


async def test_sync_and_async_receivers_both_run(clients, recorder):
    seen: list[tuple[str, Any]] = []

    def sync_receiver(signal: Signal, room_id: str, connection_id: str, **kwargs: Any) -> None:
        # runs in a thread, so it may use the ORM
        count = Subscription.objects.filter(connection__connection_id=connection_id).count()
        seen.append(("sync", room_id, count))

    async def async_receiver(signal: Signal, room_id: str, **kwargs: Any) -> None:
        seen.append(("async", room_id, None))

    recorder.connect(signals.subscribed, sync_receiver)
    recorder.connect(signals.subscribed, async_receiver)
    a = await clients("c1")
    await a.subscribe("r1")
    await a.subscribe("r2")
    await wait_until(lambda: len(seen) == 4)
    assert sorted(seen, key=str) == sorted(
        [("sync", "r1", 1), ("async", "r1", None), ("sync", "r2", 2), ("async", "r2", None)],
        key=str,
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_receiver_that_raises_is_logged_and_the_socket_goes_on(
    clients, recorder, caplog, asynchronous
):
    if asynchronous:

        async def broken(signal: Signal, **kwargs: Any) -> None:
            raise RuntimeError("receiver is broken")

    else:

        def broken(signal: Signal, **kwargs: Any) -> None:  # type: ignore[misc]
            raise RuntimeError("receiver is broken")

    for signal in ALL.values():
        recorder.connect(signal, broken)
    recorder.listen_all()  # a healthy receiver next to the broken one still runs
    caplog.set_level(logging.ERROR, logger="thinws_channels")

    a = await clients("c1")
    b = await clients("c2")
    await b.subscribe("r")
    await a.subscribe("r")
    ack, echo = await a.publish("r", "still works")
    assert echo["messageID"] == ack["id"]
    assert (await b.recv())["payload"] == "still works"
    await a.unsubscribe("r")
    await a.subscribe("r")
    await a.ok("disconnect")
    await a.close()
    await wait_until(lambda: len(recorder.of("disconnected")) == 1)
    assert recorder.of("disconnected")[0]["graceful"] is True
    assert len(recorder.of("message_received")) == 1
    await b.settle()

    failures = [
        r
        for r in caplog.records
        if r.name == "thinws_channels.consumers"
        and "receiver of the thinws_channels signal failed" in r.getMessage()
    ]
    # a: connected, subscribed, message_received, unsubscribed, subscribed, disconnected;
    # b: connected, subscribed.
    assert len(failures) == 8
    assert all(r.levelno == logging.ERROR for r in failures)
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)
    assert all("broken" in r.getMessage() for r in failures)
    # b is still fine
    ack, echo = await b.publish("r", "b too")
    assert echo["payload"] == "b too"
