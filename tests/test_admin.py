"""The admin of thinws_channels: changelists, change pages, search and the "online" filter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from thinws_channels.models import Connection, Presence, Room, ServerInstance, Subscription
from thinws_channels.protocol import storage_key

MODELS = ["connection", "room", "subscription", "presence", "serverinstance"]


@dataclass
class Rows:
    alice: Any
    bob: Any
    web1: ServerInstance
    web2: ServerInstance
    c_alice: Connection
    c_bob: Connection
    c_anon: Connection
    lobby: Room
    news: Room
    sub_alice_lobby: Subscription
    sub_alice_news: Subscription
    sub_bob_lobby: Subscription
    presences: list[Presence]


def connection(connection_id: str, user: Any = None) -> Connection:
    return Connection.objects.create(
        connection_id=connection_id, key=storage_key(connection_id), user=user
    )


def room(room_id: str) -> Room:
    return Room.objects.create(room_id=room_id, key=storage_key(room_id))


def instance(name: str, pid: int) -> ServerInstance:
    return ServerInstance.objects.create(
        name=name, hostname="host-" + name, pid=pid, heartbeat_at=timezone.now()
    )


def presence(socket_id: str, conn: Connection, inst: ServerInstance, client: str) -> Presence:
    return Presence.objects.create(
        socket_id=socket_id, connection=conn, instance=inst, user=conn.user, client=client
    )


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """admin_client's superuser gets a password: hash it cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def rows(db) -> Rows:
    users = get_user_model().objects
    alice = users.create_user("alice")
    bob = users.create_user("bob")
    web1, web2 = instance("web-1", 101), instance("web-2", 202)
    c_alice, c_bob, c_anon = (
        connection("c-alice", alice),
        connection("c-bob", bob),
        connection("c-anon"),
    )
    lobby, news = room("lobby"), room("news")
    subs = [
        Subscription.objects.create(connection=c, room=r)
        for c, r in [(c_alice, lobby), (c_alice, news), (c_bob, lobby)]
    ]
    presences = [
        presence("s" * 32, c_alice, web1, "10.0.0.1:1111"),
        presence("t" * 32, c_alice, web2, "10.0.0.2:2222"),
        presence("u" * 32, c_anon, web1, "10.0.0.3:3333"),
    ]
    return Rows(alice, bob, web1, web2, c_alice, c_bob, c_anon, lobby, news, *subs, presences)


def changelist(model: str) -> str:
    return reverse(f"admin:thinws_channels_{model}_changelist")


def change(model: str, pk: int) -> str:
    return reverse(f"admin:thinws_channels_{model}_change", args=[pk])


def listed(client: Any, model: str, **params: str) -> list[Any]:
    response = client.get(changelist(model), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


# rendering ---------------------------------------------------------------------------------------


def test_app_index_lists_every_model(admin_client, rows):
    response = admin_client.get(reverse("admin:app_list", args=["thinws_channels"]))
    assert response.status_code == 200
    for model in MODELS:
        assert changelist(model) in response.content.decode()


@pytest.mark.parametrize("model", MODELS)
def test_changelists_render(admin_client, rows, model):
    response = admin_client.get(changelist(model))
    assert response.status_code == 200
    assert (
        response.context["cl"].result_count
        == {
            "connection": 3,
            "room": 2,
            "subscription": 3,
            "presence": 3,
            "serverinstance": 2,
        }[model]
    )


def test_connection_changelist_columns(admin_client, rows):
    response = admin_client.get(changelist("connection"))
    html = response.content.decode()
    assert "c-alice" in html and "c-bob" in html and "c-anon" in html
    by_id = {c.connection_id: c for c in response.context["cl"].result_list}
    assert (by_id["c-alice"].room_count, by_id["c-alice"].socket_count) == (2, 2)
    assert (by_id["c-bob"].room_count, by_id["c-bob"].socket_count) == (1, 0)
    assert (by_id["c-anon"].room_count, by_id["c-anon"].socket_count) == (0, 1)


def test_room_changelist_columns(admin_client, rows):
    by_id = {r.room_id: r for r in listed(admin_client, "room")}
    # lobby: alice (online, on two sockets) and bob (offline); news: alice
    assert (by_id["lobby"].member_count, by_id["lobby"].online_count) == (2, 1)
    assert (by_id["news"].member_count, by_id["news"].online_count) == (1, 1)


def test_server_instance_changelist_counts_sockets(admin_client, rows):
    by_name = {i.name: i for i in listed(admin_client, "serverinstance")}
    assert by_name["web-1"].socket_count == 2 and by_name["web-2"].socket_count == 1


@pytest.mark.parametrize(
    ("model", "order_by"),
    [
        ("connection", "3"),
        ("connection", "-4"),
        ("room", "2"),
        ("room", "-3"),
        ("serverinstance", "4"),
    ],
)
def test_changelists_sort_by_the_computed_columns(admin_client, rows, model, order_by):
    assert len(listed(admin_client, model, o=order_by)) >= 2


def test_connections_sorted_by_room_count(admin_client, rows):
    result = listed(admin_client, "connection", o="-3")
    assert [c.connection_id for c in result] == ["c-alice", "c-bob", "c-anon"]


@pytest.mark.parametrize("model", MODELS)
def test_change_pages_render(admin_client, rows, model):
    obj = {
        "connection": rows.c_alice,
        "room": rows.lobby,
        "subscription": rows.sub_alice_news,
        "presence": rows.presences[0],
        "serverinstance": rows.web1,
    }[model]
    response = admin_client.get(change(model, obj.pk))
    assert response.status_code == 200
    assert response.context["original"] == obj
    assert str(obj) in response.content.decode()


def test_connection_change_page_shows_its_rooms_and_sockets(admin_client, rows):
    response = admin_client.get(change("connection", rows.c_alice.pk))
    html = response.content.decode()
    assert storage_key("c-alice") in html  # the key, read-only
    formsets = {f.formset.model: f for f in response.context["inline_admin_formsets"]}
    assert sorted(f.instance.room.room_id for f in formsets[Subscription].formset.forms) == [
        "lobby",
        "news",
    ]
    assert sorted(f.instance.client for f in formsets[Presence].formset.forms) == [
        "10.0.0.1:1111",
        "10.0.0.2:2222",
    ]


def test_room_change_page_shows_its_members(admin_client, rows):
    response = admin_client.get(change("room", rows.lobby.pk))
    [formset] = response.context["inline_admin_formsets"]
    assert sorted(f.instance.connection.connection_id for f in formset.formset.forms) == [
        "c-alice",
        "c-bob",
    ]


@pytest.mark.parametrize(
    ("model", "status"),
    [
        ("connection", 200),
        ("room", 200),
        ("subscription", 200),
        ("presence", 403),
        ("serverinstance", 403),
    ],
)
def test_add_pages(admin_client, rows, model, status):
    response = admin_client.get(reverse(f"admin:thinws_channels_{model}_add"))
    assert response.status_code == status


def test_changelists_need_staff(client, rows):
    response = client.get(changelist("connection"))
    assert response.status_code == 302 and "/login/" in response["Location"]


# search ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "query", "expected"),
    [
        ("connection", "c-bob", ["c-bob"]),
        ("connection", "alice", ["c-alice"]),  # by user name
        ("connection", "news", ["c-alice"]),  # by room
        ("connection", "lobby", ["c-alice", "c-bob"]),
        ("connection", "c-", ["c-alice", "c-anon", "c-bob"]),
        ("connection", "nobody", []),
        ("room", "news", ["news"]),
        ("room", "c-bob", ["lobby"]),  # by member
        ("room", "c-alice", ["lobby", "news"]),
        ("subscription", "news", ["c-alice in news"]),
        ("subscription", "c-bob", ["c-bob in lobby"]),
        ("presence", "c-anon", ["c-anon on web-1"]),
        ("presence", "alice", ["c-alice on web-1", "c-alice on web-2"]),
        ("presence", "10.0.0.2", ["c-alice on web-2"]),
        ("serverinstance", "web-2", ["web-2"]),
        ("serverinstance", "host-web-1", ["web-1"]),
    ],
)
def test_search(admin_client, rows, model, query, expected):
    result = listed(admin_client, model, q=query)
    # no duplicates from the joins, however many rooms or sockets match
    assert sorted(str(obj) for obj in result) == expected


# the "online" filter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", ["c-alice", "c-anon"]), ("no", ["c-bob"]), (None, ["c-alice", "c-anon", "c-bob"])],
)
def test_online_filter(admin_client, rows, value, expected):
    params = {"online": value} if value else {}
    result = listed(admin_client, "connection", **params)
    assert sorted(c.connection_id for c in result) == expected


def test_online_filter_is_offered(admin_client, rows):
    response = admin_client.get(changelist("connection"))
    html = response.content.decode()
    assert "?online=yes" in html and "?online=no" in html


def test_online_filter_with_search(admin_client, rows):
    assert [
        c.connection_id for c in listed(admin_client, "connection", online="yes", q="lobby")
    ] == ["c-alice"]
    assert [
        c.connection_id for c in listed(admin_client, "connection", online="no", q="lobby")
    ] == ["c-bob"]


def test_online_filter_follows_the_presence_rows(admin_client, rows):
    Presence.objects.filter(connection=rows.c_alice).delete()
    assert sorted(c.connection_id for c in listed(admin_client, "connection", online="yes")) == [
        "c-anon"
    ]


# adding in the admin -----------------------------------------------------------------------------


def test_a_room_added_in_the_admin_is_the_room_of_its_id(admin_client, rows):
    response = admin_client.post(
        reverse("admin:thinws_channels_room_add"),
        {"room_id": "added", "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0"},
    )
    assert response.status_code == 302
    assert Room.objects.get(room_id="added").key == storage_key("added")
