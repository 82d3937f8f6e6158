"""Every security rule, through the real consumer in-process (docs/security.md cites these tests).

WebsocketCommunicator, the test database and the in-memory channel layer: no mocks.
tests/settings.py runs the protocol tests under a lenient profile (anonymous sockets open, no
rate or per-address limit); here every test starts from the SECURE DEFAULTS
(``THINWS_CHANNELS = {}``) and overrides only what it is about. The consumer reads its limits
once, when the socket opens, so overrides are entered before the sockets are opened.

Sections: connectionID binding, anonymous policies, tokens, subscribe/publish policies, hooks,
limits, revocation, slow consumers, system checks, Origin validation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.dispatch import Signal
from django.test import Client as HttpClient
from django.test import override_settings

from tests.consumer_kit import PATH, Client, Clients, application, db, hub, wait_until
from thinws_channels import api, limits, signals
from thinws_channels.checks import check_settings
from thinws_channels.conf import INTEGER_LIMITS, NUMBER_LIMITS
from thinws_channels.consumers import ThinWSConsumer
from thinws_channels.exceptions import Forbidden
from thinws_channels.limits import Limits
from thinws_channels.models import Connection, Presence, Room, Subscription
from thinws_channels.outbox import Outbox
from thinws_channels.security import OriginValidator
from thinws_channels.tokens import issue_token, read_token

pytestmark = pytest.mark.usefixtures("transactional_db")

CLOSE_FORBIDDEN = {"type": "websocket.close", "code": 4001}
CLOSE_POLICY = {"type": "websocket.close", "code": 4008}
CLOSE_TOO_LARGE = {"type": "websocket.close", "code": 4009}


@pytest.fixture(autouse=True)
def secure_defaults() -> Iterator[None]:
    """The app's own defaults, not the protocol tests' lenient profile."""
    with override_settings(THINWS_CHANNELS={}):
        yield


def secure(**overrides: Any) -> override_settings:
    """The defaults plus ``overrides``: enter it before opening the sockets it is about."""
    return override_settings(THINWS_CHANNELS=overrides)


@pytest.fixture
async def alice() -> Any:
    return await db(lambda: get_user_model().objects.create_user("alice", password="pw-alice"))()


@pytest.fixture
async def bob() -> Any:
    return await db(lambda: get_user_model().objects.create_user("bob", password="pw-bob"))()


# Helpers ---------------------------------------------------------------------------------------


async def opened(
    clients: Clients,
    app: Any = None,
    *,
    user: Any = None,
    session: Any = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    address: str = "127.0.0.1",
) -> Client:
    """An open socket (not connected yet) with the scope a project's middleware would give it."""
    client = Client(app, user=user, client=(address, 50000))
    if session is not None:
        client.comm.scope["session"] = session
    if headers is not None:
        client.comm.scope["headers"] = headers
    return clients.adopt(await client.open())


async def refused_connect(
    client: Client,
    connection_id: str,
    *,
    code: str = "forbidden",
    close: dict[str, Any] = CLOSE_FORBIDDEN,
    **fields: Any,
) -> str:
    """Send ``connect``, expect the error ``code`` then the close; return the error's message."""
    message_id = await client.send("connect", connectionID=connection_id, **fields)
    error = await client.recv()
    assert error["type"] == "error", error
    assert error["code"] == code, error
    assert error["messageID"] == message_id, error
    assert await client.recv_raw() == close
    return str(error["message"])


async def error_reply(client: Client, type_: str, code: str, **fields: Any) -> str:
    """Send a frame, expect the (non-fatal) error ``code`` as its reply; return the message."""
    reply = await client.request(type_, **fields)
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    return str(reply["message"])


async def owner_of(connection_id: str) -> Any:
    """The user id a connectionID is bound to (None: unbound); KeyError when it does not exist."""

    def read() -> Any:
        row = Connection.objects.filter(connection_id=connection_id).values("user_id").first()
        if row is None:
            raise KeyError(connection_id)
        return row["user_id"]

    return await db(read)()


async def stored_rooms(connection_id: str) -> set[str]:
    return set(
        await db(
            lambda: list(
                Subscription.objects.filter(connection__connection_id=connection_id).values_list(
                    "room__room_id", flat=True
                )
            )
        )()
    )


async def live_sockets(connection_id: str) -> int:
    return await db(
        lambda: Presence.objects.filter(connection__connection_id=connection_id).count()
    )()


async def database_state() -> tuple[Any, ...]:
    """Everything a connect could change: connections (with owner and last seen), sockets,
    memberships, rooms."""

    def read() -> tuple[Any, ...]:
        return (
            list(
                Connection.objects.order_by("id").values_list(
                    "connection_id", "user_id", "last_seen_at"
                )
            ),
            list(Presence.objects.order_by("id").values_list("socket_id", "connection_id")),
            list(Subscription.objects.order_by("id").values_list("connection_id", "room_id")),
            list(Room.objects.order_by("id").values_list("room_id", flat=True)),
        )

    return await db(read)()


class Heard:
    """Records the keyword arguments of a signal's sends; disconnects itself at teardown."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._wired: list[tuple[Signal, Callable[..., Any]]] = []

    def listen(self, signal: Signal) -> None:
        async def receiver(signal: Signal, **kwargs: Any) -> None:
            self.calls.append(kwargs)

        signal.connect(receiver, weak=False)
        self._wired.append((signal, receiver))

    def close(self) -> None:
        for signal, receiver in self._wired:
            signal.disconnect(receiver)


@pytest.fixture
def heard() -> Iterator[Heard]:
    made = Heard()
    try:
        yield made
    finally:
        made.close()


def flip_one_character(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


# connectionID binding ----------------------------------------------------------------------------


async def test_connection_id_of_a_user_cannot_be_claimed_by_another_user(clients, alice, bob):
    owner = await clients("alice-laptop", user=alice)
    await owner.subscribe("alice-private")
    thief = await opened(clients, user=bob)
    message = await refused_connect(thief, "alice-laptop")
    assert "'alice-laptop'" in message and "another user" in message
    # The refused socket learnt nothing and answers nothing more; the owner goes on.
    assert await thief.nothing()
    await thief.send("subscribe", roomID="alice-private")
    assert await thief.nothing()
    await owner.subscribe("more")
    assert await owner_of("alice-laptop") == alice.pk


async def test_connection_id_of_a_user_cannot_be_claimed_anonymously_even_with_open_policy(
    clients, alice
):
    with secure(ANONYMOUS="open"):
        await clients("alice-laptop", user=alice)
        anonymous = await opened(clients)
        message = await refused_connect(anonymous, "alice-laptop")
        assert "'alice-laptop'" in message and "belongs to a user" in message


async def test_connection_id_of_a_user_cannot_be_claimed_with_an_anonymous_token(clients, alice):
    await clients("alice-laptop", user=alice)
    anonymous = await opened(clients)
    message = await refused_connect(anonymous, "alice-laptop", token=issue_token("alice-laptop"))
    assert "belongs to a user" in message


async def test_user_reconnecting_to_their_own_connection_id_gets_their_rooms_back(clients, alice):
    first = await clients("alice-laptop", user=alice)
    await first.subscribe("r")
    second = await clients("alice-laptop", user=alice)  # a second tab, at the same time
    assert second.connect_ack["rooms"] == ["r"]
    await first.close()
    await second.close()
    again = await clients("alice-laptop", user=alice)
    assert again.connect_ack["rooms"] == ["r"]
    assert await owner_of("alice-laptop") == alice.pk


async def test_connection_id_first_used_anonymously_is_claimed_by_a_user_only_with_a_token(
    clients, alice
):
    anonymous = await opened(clients)
    await anonymous.connect("device-1", token=issue_token("device-1"))
    assert await owner_of("device-1") is None

    without_token = await opened(clients, user=alice)
    message = await refused_connect(without_token, "device-1")
    assert "'device-1'" in message and "first used without a login" in message
    assert await owner_of("device-1") is None

    with_token = await opened(clients, user=alice)
    await with_token.connect("device-1", token=issue_token("device-1", user=alice))
    assert await owner_of("device-1") == alice.pk

    # The anonymous socket that held it loses it (on every instance), with 4001; the user's
    # socket goes on.
    await expect_revoked(anonymous, "now belongs to a user")
    await with_token.subscribe("after-binding")

    # Bound now: an anonymous token for it no longer claims it.
    late = await opened(clients)
    message = await refused_connect(late, "device-1", token=issue_token("device-1"))
    assert "belongs to a user" in message


async def test_refused_connect_changes_nothing_in_the_database(clients, alice, bob):
    owner = await clients("alice-laptop", user=alice)
    await owner.subscribe("r")
    await owner.close()
    await clients("device-1", user=bob)
    before = await database_state()

    thief = await opened(clients, user=bob)
    await refused_connect(thief, "alice-laptop")
    anonymous = await opened(clients)
    await refused_connect(anonymous, "alice-laptop", token=issue_token("alice-laptop"))
    no_token = await opened(clients)
    await refused_connect(no_token, "new-id")

    assert await database_state() == before
    assert await live_sockets("alice-laptop") == 0


# ANONYMOUS policies ------------------------------------------------------------------------------


async def test_anonymous_socket_without_token_is_refused_by_default(clients):
    anonymous = await opened(clients)
    message = await refused_connect(anonymous, "device-1")
    assert "token" in message
    with pytest.raises(KeyError):
        await owner_of("device-1")


async def test_anonymous_user_object_in_scope_counts_as_anonymous(clients):
    anonymous = await opened(clients, user=AnonymousUser())
    await refused_connect(anonymous, "device-1")


async def test_anonymous_policy_refuse_turns_away_anonymous_sockets(clients, alice):
    with secure(ANONYMOUS="refuse"):
        anonymous = await opened(clients)
        message = await refused_connect(anonymous, "device-1")
        assert "logged-in users only" in message
        user = await opened(clients, user=alice)
        await user.connect("alice-laptop")


async def test_anonymous_policy_refuse_turns_away_tokens_that_name_no_user(clients, alice):
    with secure(ANONYMOUS="refuse"):
        anonymous = await opened(clients)
        message = await refused_connect(anonymous, "device-1", token=issue_token("device-1"))
        assert "the token names no user" in message
        named = await opened(clients)
        ack = await named.connect("alice-phone", token=issue_token("alice-phone", user=alice))
        assert ack["connectionID"] == "alice-phone"


async def test_anonymous_policy_open_lets_anonymous_sockets_claim_unbound_ids(clients):
    with secure(ANONYMOUS="open"):
        anonymous = await opened(clients)
        ack = await anonymous.connect("device-1")
        assert ack["connectionID"] == "device-1"
        assert await owner_of("device-1") is None


# Tokens ------------------------------------------------------------------------------------------


async def test_valid_token_lets_an_anonymous_socket_connect(clients):
    token = issue_token("device-1")
    assert read_token(token, "device-1").connection_id == "device-1"
    anonymous = await opened(clients)
    ack = await anonymous.connect("device-1", token=token)
    assert ack["connectionID"] == "device-1"
    await anonymous.subscribe("news")


@pytest.mark.parametrize("where", ["payload", "signature"])
async def test_tampered_token_is_refused(clients, where):
    token = issue_token("device-1")
    index = 3 if where == "payload" else len(token) - 5
    tampered = flip_one_character(token, index)
    assert tampered != token
    anonymous = await opened(clients)
    message = await refused_connect(anonymous, "device-1", token=tampered)
    assert "token is not valid" in message and "signature" in message


async def test_token_signed_with_another_secret_key_is_refused(clients):
    with override_settings(SECRET_KEY="another-project-entirely"):
        foreign = issue_token("device-1")
    anonymous = await opened(clients)
    message = await refused_connect(anonymous, "device-1", token=foreign)
    assert "another SECRET_KEY" in message


async def test_expired_token_is_refused(clients):
    token = issue_token("device-1", expires_in=0.05)
    await asyncio.sleep(0.2)
    anonymous = await opened(clients)
    message = await refused_connect(anonymous, "device-1", token=token)
    assert "expired" in message


async def test_token_for_another_connection_id_is_refused(clients):
    token = issue_token("device-1")
    anonymous = await opened(clients)
    message = await refused_connect(anonymous, "device-2", token=token)
    assert "another connectionID" in message and "'device-2'" in message


async def test_garbage_token_is_refused(clients):
    anonymous = await opened(clients)
    message = await refused_connect(anonymous, "device-1", token="not-a-token")
    assert "token is not valid" in message


async def test_token_field_that_is_not_a_string_is_an_invalid_envelope_and_not_fatal(clients):
    anonymous = await opened(clients)
    message = await error_reply(
        anonymous, "connect", "invalid_envelope", connectionID="device-1", token=12345
    )
    assert "'token' must be a string" in message and "12345" in message
    await anonymous.connect("device-1", token=issue_token("device-1"))


async def test_token_naming_a_user_makes_the_socket_act_as_that_user(clients, alice, heard):
    heard.listen(signals.connected)
    heard.listen(signals.message_received)
    socket = await opened(clients)  # no login: the token alone says who it is
    await socket.connect("alice-phone", token=issue_token("alice-phone", user=alice))
    await socket.subscribe("r")
    await socket.publish("r", "hi")
    await wait_until(lambda: len(heard.calls) == 2)
    connected, received = heard.calls
    assert connected["user"] == alice and connected["consumer"].user == alice
    assert received["user"] == alice
    assert await owner_of("alice-phone") == alice.pk
    assert (
        await db(lambda: Presence.objects.get(connection__connection_id="alice-phone").user_id)()
        == alice.pk
    )


async def test_password_change_invalidates_the_users_tokens(clients, alice):
    token = issue_token("alice-phone", user=alice)
    before = await opened(clients)
    await before.connect("alice-phone", token=token)
    await before.close()

    def change_password() -> None:
        alice.set_password("new-password")
        alice.save()

    await db(change_password)()
    after = await opened(clients)
    message = await refused_connect(after, "alice-phone", token=token)
    assert "password changed" in message
    fresh = await opened(clients)
    await fresh.connect("alice-phone", token=issue_token("alice-phone", user=alice))


@pytest.mark.parametrize("fate", ["deactivated", "deleted"])
async def test_token_of_an_inactive_or_deleted_user_is_refused(clients, alice, fate):
    token = issue_token("alice-phone", user=alice)

    def apply() -> None:
        if fate == "deleted":
            get_user_model().objects.filter(pk=alice.pk).delete()
        else:
            get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    await db(apply)()
    socket = await opened(clients)
    message = await refused_connect(socket, "alice-phone", token=token)
    assert "does not exist or is not active" in message


async def test_token_room_patterns_restrict_subscribe(clients):
    socket = await opened(clients)
    await socket.connect("device-1", token=issue_token("device-1", rooms=["chat-*", "news"]))
    await socket.subscribe("chat-1")
    await socket.subscribe("news")
    message = await error_reply(socket, "subscribe", "forbidden", roomID="admin")
    assert "'admin'" in message and "token" in message
    # Patterns are case-sensitive and match the whole room id.
    await error_reply(socket, "subscribe", "forbidden", roomID="CHAT-1")
    await error_reply(socket, "subscribe", "forbidden", roomID="news-extra")
    assert await stored_rooms("device-1") == {"chat-1", "news"}
    assert await db(lambda: Room.objects.filter(room_id="admin").exists())() is False


async def test_token_room_patterns_filter_the_rooms_rejoined_on_connect(clients):
    wide = await opened(clients)
    await wide.connect("device-1", token=issue_token("device-1"))
    await wide.subscribe("chat-1")
    await wide.subscribe("admin")
    await wide.close()

    narrow = await opened(clients)
    ack = await narrow.connect("device-1", token=issue_token("device-1", rooms=["chat-*"]))
    assert ack["rooms"] == ["chat-1"]
    # Not a member on this socket: it may not publish there, and hears nothing from it.
    await error_reply(narrow, "message", "not_subscribed", roomID="admin", payload=1)
    await api.asend_to_room("admin", "secret")
    assert await narrow.nothing()
    # The refused room stays stored for the connectionID.
    assert await stored_rooms("device-1") == {"chat-1", "admin"}


async def test_token_room_patterns_filter_rooms_joined_by_a_sibling_socket(clients):
    narrow = await opened(clients)
    await narrow.connect("device-1", token=issue_token("device-1", rooms=["chat-*"]))
    wide = await opened(clients)
    await wide.connect("device-1", token=issue_token("device-1"))
    await wide.subscribe("chat-2")
    assert await narrow.recv() == {"type": "subscribed", "roomID": "chat-2"}
    await wide.subscribe("admin")
    await wide.settle()
    assert await narrow.nothing()
    await api.asend_to_room("admin", "secret")
    assert (await wide.recv())["payload"] == "secret"
    assert await narrow.nothing()


def test_issue_token_refuses_bad_arguments():
    with pytest.raises(TypeError):
        issue_token("device-1", rooms="chat-*")
    with pytest.raises(ValueError, match="non-empty strings"):
        issue_token("device-1", rooms=["chat-*", ""])
    with pytest.raises(ValueError, match="above 0"):
        issue_token("device-1", expires_in=0)
    with pytest.raises(ValueError, match="not a saved, authenticated user"):
        issue_token("device-1", user=AnonymousUser())


# Subscribe and publish policies ------------------------------------------------------------------


async def test_subscribe_policy_users_refuses_anonymous_sockets(clients, alice):
    with secure(SUBSCRIBE_POLICY="users"):
        anonymous = await opened(clients)
        await anonymous.connect("device-1", token=issue_token("device-1"))
        message = await error_reply(anonymous, "subscribe", "forbidden", roomID="r")
        assert "'r'" in message and "logged-in users only" in message
        assert await stored_rooms("device-1") == set()
        assert await db(lambda: Room.objects.filter(room_id="r").exists())() is False

        logged_in = await opened(clients, user=alice)
        await logged_in.connect("alice-laptop")
        await logged_in.subscribe("r")
        token_user = await opened(clients)
        await token_user.connect("alice-phone", token=issue_token("alice-phone", user=alice))
        await token_user.subscribe("r")


async def test_subscribe_policy_users_does_not_rejoin_the_stored_rooms_of_anonymous_sockets(
    clients,
):
    before = await opened(clients)
    await before.connect("device-1", token=issue_token("device-1"))
    await before.subscribe("r")
    await before.close()
    with secure(SUBSCRIBE_POLICY="users"):
        after = await opened(clients)
        ack = await after.connect("device-1", token=issue_token("device-1"))
        assert ack["rooms"] == []


async def test_publish_policy_members_refuses_non_members(clients, alice, bob, heard):
    heard.listen(signals.message_received)
    member = await clients("alice-laptop", user=alice)
    await member.subscribe("r")
    outsider = await clients("bob-laptop", user=bob)
    message = await error_reply(outsider, "message", "not_subscribed", roomID="r", payload="x")
    assert "'r'" in message
    assert await member.nothing()
    assert heard.calls == []


async def test_publish_policy_users_refuses_anonymous_members(clients, alice, heard):
    with secure(PUBLISH_POLICY="users"):
        heard.listen(signals.message_received)
        anonymous = await opened(clients)
        await anonymous.connect("device-1", token=issue_token("device-1"))
        await anonymous.subscribe("r")
        user = await clients("alice-laptop", user=alice)
        await user.subscribe("r")
        message = await error_reply(anonymous, "message", "forbidden", roomID="r", payload="x")
        assert "'r'" in message and "logged-in users" in message
        assert await user.nothing()
        assert heard.calls == []
        await user.publish("r", "from alice")
        assert (await anonymous.recv())["payload"] == "from alice"


async def test_publish_policy_nobody_refuses_every_client_but_the_server_publishes(
    clients, alice, bob, heard
):
    with secure(PUBLISH_POLICY="nobody"):
        heard.listen(signals.message_received)
        a = await clients("alice-laptop", user=alice)
        b = await clients("bob-laptop", user=bob)
        await a.subscribe("r")
        await b.subscribe("r")
        message = await error_reply(a, "message", "forbidden", roomID="r", payload="x")
        assert "'r'" in message
        assert await b.nothing()
        assert heard.calls == []
        await api.asend_to_room("r", "from the server")
        for member in (a, b):
            frame = await member.recv()
            assert frame["payload"] == "from the server" and frame["connectionID"] is None


# Hooks -------------------------------------------------------------------------------------------


class GuardedConsumer(ThinWSConsumer):
    """A project's subclass with every hook overridden."""

    async def can_subscribe(self, room_id: str) -> bool:
        if room_id == "vip":
            raise Forbidden("vip room: members only")
        if room_id == "boom":
            raise RuntimeError("a bug in the hook")
        return not room_id.startswith("secret")

    async def can_publish(self, room_id: str, payload: Any) -> bool:
        if payload == "custom":
            raise Forbidden("no shouting in here")
        if payload == "boom":
            raise RuntimeError("a bug in the hook")
        return payload != "no"

    async def transform_payload(self, room_id: str, payload: Any) -> Any:
        if payload == "spam":
            raise Forbidden("that looks like spam")
        if isinstance(payload, dict):
            return {**payload, "by": self.user.get_username() if self.user else None}
        return payload


GUARDED = GuardedConsumer.as_asgi()


async def guarded_pair(clients: Clients, alice: Any, bob: Any) -> tuple[Client, Client]:
    a = await opened(clients, GUARDED, user=alice)
    await a.connect("alice-laptop")
    b = await opened(clients, GUARDED, user=bob)
    await b.connect("bob-laptop")
    await a.subscribe("r")
    await b.subscribe("r")
    return a, b


async def test_can_subscribe_returning_false_refuses_with_a_generic_message(clients, alice):
    a = await opened(clients, GUARDED, user=alice)
    await a.connect("alice-laptop")
    message = await error_reply(a, "subscribe", "forbidden", roomID="secret-1")
    assert message == "connection 'alice-laptop' may not subscribe to room 'secret-1'"
    assert await stored_rooms("alice-laptop") == set()
    await api.asend_to_room("secret-1", "hidden")
    assert await a.nothing()


async def test_can_subscribe_raising_forbidden_refuses_with_its_message(clients, alice):
    a = await opened(clients, GUARDED, user=alice)
    await a.connect("alice-laptop")
    assert await error_reply(a, "subscribe", "forbidden", roomID="vip") == "vip room: members only"
    assert await stored_rooms("alice-laptop") == set()


async def test_can_subscribe_decides_which_stored_rooms_are_rejoined(clients, alice):
    plain = await clients("alice-laptop", user=alice)
    await plain.subscribe("secret-1")
    await plain.subscribe("open")
    await plain.close()
    guarded = await opened(clients, GUARDED, user=alice)
    ack = await guarded.connect("alice-laptop")
    assert ack["rooms"] == ["open"]
    assert await stored_rooms("alice-laptop") == {"secret-1", "open"}


async def test_can_publish_returning_false_refuses_with_a_generic_message(
    clients, alice, bob, heard
):
    heard.listen(signals.message_received)
    a, b = await guarded_pair(clients, alice, bob)
    message = await error_reply(a, "message", "forbidden", roomID="r", payload="no")
    assert message == "connection 'alice-laptop' may not publish to room 'r'"
    assert await b.nothing()
    assert heard.calls == []


async def test_can_publish_raising_forbidden_refuses_with_its_message(clients, alice, bob):
    a, b = await guarded_pair(clients, alice, bob)
    message = await error_reply(a, "message", "forbidden", roomID="r", payload="custom")
    assert message == "no shouting in here"
    assert await b.nothing()


async def test_transform_payload_changes_what_members_receive(clients, alice, bob, heard):
    heard.listen(signals.message_received)
    a, b = await guarded_pair(clients, alice, bob)
    _, echo = await a.publish("r", {"text": "hi"})
    assert echo["payload"] == {"text": "hi", "by": "alice"}
    assert (await b.recv())["payload"] == {"text": "hi", "by": "alice"}
    await wait_until(lambda: len(heard.calls) == 1)
    assert heard.calls[0]["payload"] == {"text": "hi", "by": "alice"}


async def test_transform_payload_raising_forbidden_refuses_the_message(clients, alice, bob):
    a, b = await guarded_pair(clients, alice, bob)
    message = await error_reply(a, "message", "forbidden", roomID="r", payload="spam")
    assert message == "that looks like spam"
    assert await b.nothing()


async def test_hook_raising_an_unexpected_exception_is_an_internal_error_and_the_socket_goes_on(
    clients, alice, bob, caplog
):
    caplog.set_level(logging.ERROR, logger="thinws_channels")
    a, b = await guarded_pair(clients, alice, bob)
    message = await error_reply(a, "subscribe", "internal", roomID="boom")
    assert "a bug in the hook" not in message  # no internals leak to the client
    await error_reply(a, "message", "internal", roomID="r", payload="boom")
    assert await b.nothing()
    assert "boom" not in await stored_rooms("alice-laptop")
    await a.subscribe("after")
    await a.publish("r", "still works")
    assert (await b.recv())["payload"] == "still works"
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records), (
        caplog.records
    )


async def test_hook_raising_on_a_stored_room_skips_that_room_and_logs_it(clients, alice, caplog):
    """A broken hook must not lock a connectionID out: the room is not rejoined (it stays
    stored), the error is logged, and the connect succeeds with the other rooms."""
    plain = await clients("alice-laptop", user=alice)
    await plain.subscribe("boom")
    await plain.subscribe("fine")
    await plain.close()
    guarded = await opened(clients, GUARDED, user=alice)
    with caplog.at_level(logging.ERROR, logger="thinws_channels"):
        ack = await guarded.connect("alice-laptop")
    assert ack["rooms"] == ["fine"]
    assert any("boom" in r.getMessage() and r.exc_info for r in caplog.records), caplog.text
    # still stored: a socket without the broken hook rejoins it
    again = await clients("alice-laptop", user=alice)
    assert again.connect_ack["rooms"] == ["boom", "fine"]


# Limits ------------------------------------------------------------------------------------------


def test_limits_default_to_the_secure_values():
    assert Limits.from_settings() == Limits(
        max_frame_bytes=65536,
        max_connection_id_length=128,
        max_room_id_length=200,
        max_rooms_per_connection=100,
        max_sockets_per_connection=20,
        max_connections_per_address=100,
        client_address_header=None,
        rate_limit=30.0,
        rate_burst=60,
        rate_limit_close_after=30,
        max_payload_depth=32,
        max_send_buffer=1_048_576,
        connect_timeout=30.0,
    )


def message_frame(message_id: int, payload: str) -> str:
    """A ``message`` frame as compact JSON text, non-ASCII characters left as they are."""
    frame = {"type": "message", "messageID": message_id, "roomID": "r", "payload": payload}
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def frame_of_size(message_id: int, size: int) -> str:
    """A ``message`` frame of exactly ``size`` UTF-8 bytes."""
    text = message_frame(message_id, "x" * (size - utf8_size(message_frame(message_id, ""))))
    assert utf8_size(text) == size
    return text


async def test_frame_over_max_frame_bytes_is_too_large_and_closes_4009(clients, alice):
    with secure(MAX_FRAME_BYTES=1000):
        a = await clients("alice-laptop", user=alice)
        await a.subscribe("r")
        await a.send_raw(frame_of_size(7, 1001))
        error = await a.recv()
        assert error["code"] == "too_large" and error["messageID"] is None
        assert "1001 bytes" in error["message"] and "1000" in error["message"]
        assert await a.recv_raw() == CLOSE_TOO_LARGE
        await a.send("subscribe", roomID="after")
        assert await a.nothing()


async def test_frame_of_exactly_max_frame_bytes_is_accepted(clients, alice):
    with secure(MAX_FRAME_BYTES=1000):
        a = await clients("alice-laptop", user=alice)
        await a.subscribe("r")
        await a.send_raw(frame_of_size(7, 1000))
        frames = await a.recv_many(2)
        assert {f["type"] for f in frames} == {"ack", "message"}


async def test_max_frame_bytes_counts_utf8_bytes_not_characters(clients, alice):
    with secure(MAX_FRAME_BYTES=1000):
        a = await clients("alice-laptop", user=alice)
        await a.subscribe("r")
        euros = 1
        while utf8_size(message_frame(7, "€" * euros)) <= 1000:
            euros += 1
        within = message_frame(7, "€" * (euros - 1))
        over = message_frame(8, "€" * euros)
        assert len(over) <= 1000 < utf8_size(over)  # under the limit in characters only
        await a.send_raw(within)
        assert {f["type"] for f in await a.recv_many(2)} == {"ack", "message"}
        await a.send_raw(over)
        error = await a.recv()
        assert error["code"] == "too_large"
        assert f"{utf8_size(over)} bytes" in error["message"]
        assert await a.recv_raw() == CLOSE_TOO_LARGE


def nested(depth: int) -> Any:
    """A JSON value of ``depth`` nested arrays."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_payload_nested_deeper_than_max_payload_depth_is_too_large_and_not_fatal(
    clients, alice
):
    # The default, 32: the frame object is level 1, so a payload may nest 31 deep.
    a = await clients("alice-laptop", user=alice)
    await a.subscribe("r")
    await a.publish("r", nested(31))
    message = await error_reply(a, "message", "too_large", roomID="r", payload=nested(32))
    assert "32" in message
    await a.subscribe("after")
    await a.publish("r", "still works")


async def test_lowered_max_payload_depth_applies(clients, alice):
    with secure(MAX_PAYLOAD_DEPTH=3):
        a = await clients("alice-laptop", user=alice)
        await a.subscribe("r")
        await a.publish("r", {"a": {}})
        await error_reply(a, "message", "too_large", roomID="r", payload={"a": {"b": []}})


async def test_connection_id_longer_than_max_connection_id_length_is_an_invalid_envelope(
    clients, alice
):
    with secure(MAX_CONNECTION_ID_LENGTH=8):
        a = await opened(clients, user=alice)
        message = await error_reply(a, "connect", "invalid_envelope", connectionID="c" * 9)
        assert repr("c" * 9) in message and "1..8" in message
        await a.connect("c" * 8)


async def test_room_id_longer_than_max_room_id_length_is_an_invalid_envelope(clients, alice):
    with secure(MAX_ROOM_ID_LENGTH=5):
        a = await clients("alice-laptop", user=alice)
        message = await error_reply(a, "subscribe", "invalid_envelope", roomID="abcdef")
        assert "'abcdef'" in message and "1..5" in message
        await a.subscribe("abcde")
        await error_reply(a, "message", "invalid_envelope", roomID="abcdef", payload=1)
        assert await stored_rooms("alice-laptop") == {"abcde"}


async def test_subscribe_past_max_rooms_per_connection_is_limit_exceeded_and_not_fatal(
    clients, alice
):
    with secure(MAX_ROOMS_PER_CONNECTION=2):
        a = await clients("alice-laptop", user=alice)
        await a.subscribe("r1")
        await a.subscribe("r2")
        message = await error_reply(a, "subscribe", "limit_exceeded", roomID="r3")
        assert "'alice-laptop'" in message and "2" in message
        await a.subscribe("r1")  # already a member: still acked
        assert await stored_rooms("alice-laptop") == {"r1", "r2"}
        # The refused room was not joined on this socket either.
        await api.asend_to_room("r3", "not for you")
        assert await a.nothing()
        await a.unsubscribe("r2")
        await a.subscribe("r3")


async def test_connect_past_max_sockets_per_connection_is_limit_exceeded_and_closes_4008(
    clients, alice
):
    with secure(MAX_SOCKETS_PER_CONNECTION=2):
        first = await clients("alice-laptop", user=alice)
        await clients("alice-laptop", user=alice)
        third = await opened(clients, user=alice)
        message = await refused_connect(
            third, "alice-laptop", code="limit_exceeded", close=CLOSE_POLICY
        )
        assert "'alice-laptop'" in message and "2" in message
        assert await live_sockets("alice-laptop") == 2
        await first.close()
        await wait_until(lambda: live_sockets_is(1))
        fourth = await opened(clients, user=alice)
        await fourth.connect("alice-laptop")


async def live_sockets_is(count: int) -> bool:
    return await live_sockets("alice-laptop") == count


async def expect_address_refusal(client: Client, address: str) -> None:
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == "limit_exceeded", error
    assert error["messageID"] is None
    assert repr(address) in error["message"]
    assert await client.recv_raw() == CLOSE_POLICY


async def test_sockets_past_max_connections_per_address_are_refused_right_after_accept(
    clients, alice
):
    address = "10.20.0.1"
    with secure(MAX_CONNECTIONS_PER_ADDRESS=2):
        a = await opened(clients, user=alice, address=address)
        await opened(clients, user=alice, address=address)
        third = await opened(clients, user=alice, address=address)
        await expect_address_refusal(third, address)
        await third.send("connect", connectionID="alice-laptop")
        assert await third.nothing()
        # Other addresses are not affected, and the first sockets work.
        elsewhere = await opened(clients, user=alice, address="10.20.0.2")
        await elsewhere.connect("alice-phone")
        await a.connect("alice-laptop")


async def test_connections_per_address_are_counted_down_when_sockets_close(clients, alice):
    address = "10.20.1.1"
    with secure(MAX_CONNECTIONS_PER_ADDRESS=2):
        a = await opened(clients, user=alice, address=address)
        b = await opened(clients, user=alice, address=address)
        refused = await opened(clients, user=alice, address=address)
        await expect_address_refusal(refused, address)
        assert limits.open_sockets[address] == 2  # a refused socket stops counting at once
        await refused.close()
        await a.close()
        assert limits.open_sockets[address] == 1
        c = await opened(clients, user=alice, address=address)
        await c.connect("alice-laptop")
        await b.close()
        await c.close()
        assert address not in limits.open_sockets


async def test_client_address_header_uses_the_rightmost_forwarded_entry(clients, alice):
    with secure(CLIENT_ADDRESS_HEADER="X-Forwarded-For", MAX_CONNECTIONS_PER_ADDRESS=1):
        # The proxy (peer 127.0.0.1) appends the real client address; entries to its left come
        # from the client and are ignored.
        first = await opened(
            clients,
            user=alice,
            headers=[(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7")],
        )
        await first.connect("alice-laptop")
        presence_client = await db(
            lambda: Presence.objects.get(connection__connection_id="alice-laptop").client
        )()
        assert presence_client == "203.0.113.7"
        # Same real client, forged left part: still the same address, over the limit.
        second = await opened(
            clients,
            user=alice,
            headers=[(b"x-forwarded-for", b"1.1.1.1, 203.0.113.7")],
        )
        await expect_address_refusal(second, "203.0.113.7")
        # Another real client behind the same proxy, with a forged left part equal to the first.
        third = await opened(
            clients,
            user=alice,
            headers=[(b"x-forwarded-for", b"203.0.113.7, 198.51.100.9")],
        )
        await third.connect("alice-phone")


async def test_without_client_address_header_the_peer_address_counts(clients, alice):
    with secure(MAX_CONNECTIONS_PER_ADDRESS=1):
        await opened(
            clients,
            user=alice,
            address="10.30.0.1",
            headers=[(b"x-forwarded-for", b"198.51.100.1")],
        )
        second = await opened(
            clients,
            user=alice,
            address="10.30.0.1",
            headers=[(b"x-forwarded-for", b"198.51.100.2")],
        )
        await expect_address_refusal(second, "10.30.0.1")


async def test_frames_past_the_rate_burst_are_rate_limited_and_not_acted_on(clients, alice):
    # A bucket of 3 that refills once every 1000 s: the 4th frame is refused whatever the speed.
    with secure(RATE_LIMIT=0.001, RATE_BURST=3):
        a = await opened(clients, user=alice)
        await a.connect("alice-laptop")
        await a.subscribe("r1")
        await a.subscribe("r2")
        message_id = await a.send("subscribe", roomID="r3", messageID="m-4")
        reply = await a.recv()
        assert reply["type"] == "error" and reply["code"] == "rate_limited", reply
        assert reply["messageID"] == message_id
        assert await stored_rooms("alice-laptop") == {"r1", "r2"}
        await api.asend_to_room("r3", "not joined")
        assert await a.nothing()  # not closed either: RATE_LIMIT_CLOSE_AFTER is 30


async def test_rate_limited_frames_in_a_row_close_the_socket_4008(clients, alice):
    with secure(RATE_LIMIT=0.001, RATE_BURST=1, RATE_LIMIT_CLOSE_AFTER=3):
        a = await opened(clients, user=alice)
        await a.connect("alice-laptop")
        for _ in range(2):
            await error_reply(a, "subscribe", "rate_limited", roomID="r")
        message_id = await a.send("subscribe", roomID="r")
        reply = await a.recv()
        assert reply["code"] == "rate_limited" and reply["messageID"] == message_id
        assert await a.recv_raw() == CLOSE_POLICY
        await a.send("subscribe", roomID="r")
        assert await a.nothing()


async def test_rate_limit_is_checked_right_after_the_frame_size(clients, alice):
    # docs/security.md: the size check comes first, then the rate check, before any other check
    # (the frame is parsed in between, so that rate_limited can echo its messageID).
    with secure(RATE_LIMIT=0.001, RATE_BURST=1, MAX_FRAME_BYTES=1000):
        a = await opened(clients, user=alice)
        await a.connect("alice-laptop")  # the bucket is empty from here on
        await a.send_raw("{not json")
        reply = await a.recv()
        assert reply["code"] == "rate_limited" and reply["messageID"] is None, reply
        await a.send_raw(json.dumps({"type": "no-such-type", "messageID": "m-2"}))
        reply = await a.recv()
        assert reply["code"] == "rate_limited" and reply["messageID"] == "m-2", reply
        await a.send_raw(frame_of_size(9, 2000))
        reply = await a.recv()
        assert reply["code"] == "too_large", reply
        assert await a.recv_raw() == CLOSE_TOO_LARGE


async def test_socket_that_does_not_connect_within_connect_timeout_is_closed_4008(clients):
    with secure(CONNECT_TIMEOUT=0.3):
        idle = await opened(clients)
        # Frames that are not a successful connect do not stop the clock.
        await error_reply(idle, "subscribe", "not_connected", roomID="r")
        error = await idle.recv()
        assert error["code"] == "not_connected" and error["messageID"] is None
        assert "0.3 s" in error["message"]
        assert await idle.recv_raw() == CLOSE_POLICY


async def test_connect_timeout_does_not_fire_once_connected(clients, alice):
    with secure(CONNECT_TIMEOUT=0.3):
        a = await opened(clients, user=alice)
        await a.connect("alice-laptop")
        assert await a.nothing(within=0.9)
        await a.subscribe("r")


async def test_connect_timeout_is_cancelled_when_the_socket_closes_first(clients):
    with secure(CONNECT_TIMEOUT=0.3):
        idle = await opened(clients)
        await idle.close()
        await asyncio.sleep(0.6)
        # Nothing is sent on the closed socket when the timeout would have expired.
        assert idle.comm.output_queue.empty(), idle.comm.output_queue.get_nowait()


# Revocation --------------------------------------------------------------------------------------


async def expect_revoked(client: Client, reason: str) -> None:
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == "forbidden", error
    assert error["messageID"] is None
    assert reason in error["message"], error
    assert await client.recv_raw() == CLOSE_FORBIDDEN


async def new_session() -> SessionStore:
    def create() -> SessionStore:
        session = SessionStore()
        session.create()
        return session

    return await db(create)()


async def test_arevoke_user_closes_every_socket_of_the_user_with_forbidden_4001(
    clients, alice, bob
):
    laptop = await clients("alice-laptop", user=alice)
    await laptop.subscribe("r")
    phone = await opened(clients)
    await phone.connect("alice-phone", token=issue_token("alice-phone", user=alice))
    other = await clients("bob-laptop", user=bob)
    await other.subscribe("r")

    await api.arevoke_user(alice)
    for socket in (laptop, phone):
        await expect_revoked(socket, "revoked")
    await wait_until(lambda: no_live_sockets_of(alice))
    # Bob is untouched, and alice's sockets left the room.
    assert await other.nothing()
    await other.subscribe("more")
    await other.publish("r", "anyone?")
    assert await laptop.nothing()


async def no_live_sockets_of(user: Any) -> bool:
    return not await db(lambda: Presence.objects.filter(user_id=user.pk).exists())()


async def test_revoke_user_from_sync_code_closes_the_users_sockets(clients, alice, bob):
    laptop = await clients("alice-laptop", user=alice)
    other = await clients("bob-laptop", user=bob)
    # As a view or a task would, with a primary key.
    await sync_to_async(api.revoke_user)(alice.pk, reason="your account was deactivated")
    await expect_revoked(laptop, "your account was deactivated")
    assert await other.nothing()


class SlowHookConsumer(ThinWSConsumer):
    """Its can_subscribe hook waits for ``gate`` on rooms named "slow-*" (on ``subscribe``, and
    for each stored room on ``connect``): a window in which other things happen."""

    entered: asyncio.Event
    gate: asyncio.Event

    async def can_subscribe(self, room_id: str) -> bool:
        if room_id.startswith("slow-"):
            type(self).entered.set()
            await type(self).gate.wait()
        return True


def slow_hook_app() -> Any:
    SlowHookConsumer.entered, SlowHookConsumer.gate = asyncio.Event(), asyncio.Event()
    return SlowHookConsumer.as_asgi()


async def test_revocation_during_connect_leaves_the_socket_in_no_room(clients, alice, heard):
    plain = await clients("alice-laptop", user=alice)
    await plain.subscribe("slow-r")
    await plain.close()
    heard.listen(signals.connected)
    socket = await opened(clients, slow_hook_app(), user=alice)
    await socket.send("connect", connectionID="alice-laptop")
    await asyncio.wait_for(SlowHookConsumer.entered.wait(), 3)

    # The password changes while the socket is rejoining its rooms.
    await api.arevoke_user(alice)
    await expect_revoked(socket, "revoked")
    SlowHookConsumer.gate.set()

    # The connect that was in progress must not complete on the revoked socket: no ack after
    # the close, no room joined, no ``connected`` signal.
    assert await socket.nothing()
    assert not hub().rooms.get("slow-r")
    assert heard.calls == []


async def test_revocation_during_subscribe_sends_nothing_after_the_close(clients, alice, caplog):
    caplog.set_level(logging.CRITICAL, logger="thinws_channels")
    socket = await opened(clients, slow_hook_app(), user=alice)
    await socket.connect("alice-laptop")
    await socket.send("subscribe", roomID="slow-r")
    await asyncio.wait_for(SlowHookConsumer.entered.wait(), 3)
    await api.arevoke_user(alice)
    await expect_revoked(socket, "revoked")
    SlowHookConsumer.gate.set()
    assert await socket.nothing()
    assert not hub().rooms.get("slow-r")


async def test_arevoke_user_with_session_key_closes_only_that_sessions_sockets(clients, alice):
    first, second = await new_session(), await new_session()
    a = await opened(clients, user=alice, session=first)
    await a.connect("alice-laptop")
    b = await opened(clients, user=alice, session=second)
    await b.connect("alice-desktop")

    await api.arevoke_user(alice, session_key=first.session_key)
    await expect_revoked(a, "revoked")
    assert await b.nothing()
    await b.subscribe("r")


async def test_logout_closes_the_sockets_of_that_session_only(clients, alice):
    # The admin's logout view (Django's LogoutView) serves staff users.
    await db(lambda: get_user_model().objects.filter(pk=alice.pk).update(is_staff=True))()
    browser = HttpClient()
    await sync_to_async(browser.force_login)(alice)
    logged_in = await sync_to_async(lambda: browser.session.session_key)()
    a = await opened(clients, user=alice, session=SessionStore(session_key=logged_in))
    await a.connect("alice-laptop")
    b = await opened(clients, user=alice, session=await new_session())
    await b.connect("alice-desktop")

    await sync_to_async(browser.post)("/admin/logout/")  # Django's own logout view
    assert not await db(lambda: SessionStore().exists(logged_in))()
    await expect_revoked(a, "logged out")
    assert await b.nothing()
    await b.subscribe("r")


async def test_password_change_closes_every_socket_of_the_user(clients, alice, bob):
    laptop = await clients("alice-laptop", user=alice)
    phone = await opened(clients)
    await phone.connect("alice-phone", token=issue_token("alice-phone", user=alice))
    other = await clients("bob-laptop", user=bob)

    def change_password() -> None:
        alice.set_password("new-password")
        alice.save()

    await db(change_password)()
    for socket in (laptop, phone):
        await expect_revoked(socket, "password changed")
    assert await other.nothing()
    await other.subscribe("r")


async def test_saving_a_user_without_changing_the_password_keeps_their_sockets(clients, alice):
    laptop = await clients("alice-laptop", user=alice)

    def rename() -> None:
        alice.first_name = "Alice"
        alice.save()

    await db(rename)()
    assert await laptop.nothing()
    await laptop.subscribe("r")


# Slow consumers ----------------------------------------------------------------------------------


async def test_outbox_cuts_off_a_socket_whose_backlog_passes_max_buffer():
    release = asyncio.Event()
    sent: list[dict[str, Any]] = []
    overflows: list[int] = []

    async def blocking_send(message: dict[str, Any]) -> None:
        await release.wait()
        sent.append(message)

    outbox = Outbox(blocking_send, max_buffer=100, on_overflow=lambda: overflows.append(1))
    frames = [{"type": "websocket.send", "text": f"{n:03d}" + "x" * 37} for n in range(10)]
    outbox.push(frames[0])  # in flight: the send waits
    outbox.push(frames[1])  # 40 bytes queued
    outbox.push(frames[2])  # 80 bytes
    assert overflows == [] and outbox.pending == 3
    outbox.push(frames[3])  # 120 bytes: over
    assert overflows == [1]
    assert outbox.pending == 1  # the backlog was dropped; only the send in flight is left
    for frame in frames[4:]:
        outbox.push(frame)
    assert overflows == [1]  # once
    close = {"type": "websocket.close", "code": 4008}
    outbox.push_final(close)
    assert outbox.pending == 2
    release.set()
    await asyncio.wait_for(outbox.flush(), 3)
    assert sent == [frames[0], close]


def gated(app: Any, gate: asyncio.Event) -> Any:
    """``app`` behind a server whose ``send`` waits while ``gate`` is clear (a socket whose
    client stopped reading)."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_when_open(message: dict[str, Any]) -> None:
            await gate.wait()
            await send(message)

        await app(scope, receive, send_when_open)

    return wrapper


async def test_slow_socket_is_cut_off_with_4008_and_leaves_its_rooms(clients, alice, bob, caplog):
    caplog.set_level(logging.WARNING, logger="thinws_channels")
    with secure(MAX_SEND_BUFFER=2000):
        gate = asyncio.Event()
        gate.set()
        slow = await opened(clients, gated(application, gate), user=alice)
        await slow.connect("alice-laptop")
        await slow.subscribe("r")
        fast = await clients("bob-laptop", user=bob)
        await fast.subscribe("r")

        gate.clear()  # alice's client stops reading
        for n in range(8):
            await fast.publish("r", f"{n}" + "x" * 500)
        await wait_until(lambda: live_sockets_is(0))
        gate.set()
        first = await slow.recv_raw()
        assert json.loads(first["text"])["payload"] == "0" + "x" * 500
        assert await slow.recv_raw() == CLOSE_POLICY
        assert await slow.nothing()
        # Bob goes on, alone in the room now.
        await fast.publish("r", "still here")
        assert any("reads too slowly" in r.getMessage() for r in caplog.records)


# System checks -----------------------------------------------------------------------------------


def check_ids(**setting: Any) -> list[str]:
    with override_settings(THINWS_CHANNELS=setting):
        return [str(message.id) for message in check_settings()]


@pytest.mark.parametrize(
    ("key", "value"),
    [("ANONYMOUS", "maybe"), ("SUBSCRIBE_POLICY", "all"), ("PUBLISH_POLICY", "everyone")],
)
def test_check_e006_refuses_an_unknown_policy(key, value):
    assert check_ids(**{key: value}) == ["thinws_channels.E006"]


@pytest.mark.parametrize("value", [0, -1, 1.5, "100", True, False])
@pytest.mark.parametrize("key", INTEGER_LIMITS)
def test_check_e007_refuses_a_bad_integer_limit(key, value):
    assert check_ids(**{key: value}) == ["thinws_channels.E007"]


@pytest.mark.parametrize("value", [0, -0.5, "30", True])
@pytest.mark.parametrize("key", [*NUMBER_LIMITS, "TOKEN_MAX_AGE"])
def test_check_e008_refuses_a_bad_number(key, value):
    assert check_ids(**{key: value}) == ["thinws_channels.E008"]


def test_check_e008_refuses_no_token_max_age():
    assert check_ids(TOKEN_MAX_AGE=None) == ["thinws_channels.E008"]


@pytest.mark.parametrize("value", ["", "   ", 42, b"X-Forwarded-For"])
def test_check_e009_refuses_a_bad_client_address_header(value):
    assert check_ids(CLIENT_ADDRESS_HEADER=value) == ["thinws_channels.E009"]


def test_check_w003_warns_of_the_open_anonymous_policy_without_debug():
    assert check_ids(ANONYMOUS="open") == ["thinws_channels.W003"]
    with override_settings(DEBUG=True):
        assert check_ids(ANONYMOUS="open") == []


def test_checks_accept_none_for_every_limit():
    off = {key: None for key in (*INTEGER_LIMITS, *NUMBER_LIMITS, "CLIENT_ADDRESS_HEADER")}
    assert check_ids(**off) == []


def test_checks_accept_the_secure_defaults_and_good_values():
    assert check_ids() == []
    assert (
        check_ids(
            ANONYMOUS="refuse",
            SUBSCRIBE_POLICY="users",
            PUBLISH_POLICY="nobody",
            MAX_FRAME_BYTES=1,
            RATE_LIMIT=0.5,
            CONNECT_TIMEOUT=5,
            TOKEN_MAX_AGE=60,
            CLIENT_ADDRESS_HEADER="X-Real-IP",
        )
        == []
    )


# Origin validation -------------------------------------------------------------------------------


async def handshake(app: Any, origin: bytes | None) -> bool:
    """Whether ``app`` accepts a WebSocket handshake with this Origin header (None: none)."""
    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin))
    comm = WebsocketCommunicator(app, PATH, headers=headers)
    accepted, _ = await comm.connect(timeout=3)
    await comm.disconnect(timeout=3)
    return bool(accepted)


async def test_origin_validator_refuses_a_foreign_origin():
    assert await handshake(OriginValidator(application), b"https://evil.example") is False
    assert await handshake(OriginValidator(application), b"http://testserver.evil.example") is False


async def test_origin_validator_accepts_an_allowed_host():
    assert await handshake(OriginValidator(application), b"http://testserver") is True
    assert await handshake(OriginValidator(application), b"https://localhost:8443") is True


async def test_origin_validator_reads_allowed_hosts_at_each_handshake():
    validator = OriginValidator(application)
    with override_settings(ALLOWED_HOSTS=["chat.example"]):
        assert await handshake(validator, b"https://chat.example") is True
        assert await handshake(validator, b"http://testserver") is False


async def test_origin_validator_with_explicit_origins_ignores_allowed_hosts():
    validator = OriginValidator(application, ["https://chat.example"])
    assert await handshake(validator, b"https://chat.example") is True
    assert await handshake(validator, b"http://chat.example") is False
    assert await handshake(validator, b"http://testserver") is False


async def test_origin_validator_lets_a_handshake_without_origin_through():
    assert await handshake(OriginValidator(application), None) is True


async def test_origin_validator_with_allow_missing_false_refuses_a_handshake_without_origin():
    validator = OriginValidator(application, allow_missing=False)
    assert await handshake(validator, None) is False
    assert await handshake(validator, b"http://testserver") is True


@pytest.mark.parametrize("origin", [b"null", b"", b"not a url"])
async def test_origin_validator_refuses_a_null_or_malformed_origin(origin):
    assert await handshake(OriginValidator(application), origin) is False
