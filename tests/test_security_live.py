"""Security behaviour that only a real server shows: daphne processes of demo_project on Redis.

The module's cluster (``secure``: two instances, A and B) runs with the secure defaults
(``THINWS_SETTINGS="{}"``): anonymous sockets need a signed token, 30 frames a second per
socket, 64 KiB frames. The slow-consumer test starts one instance of its own with a small
``MAX_SEND_BUFFER``. Users log in and out through the demo's real admin pages, and carry the
session cookie on the WebSocket handshake as a browser would.

Each test is named for the threat it proves; docs/security.md cites them. Every wait is bounded;
nothing is timed, but what was measured is printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.cookies
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core import signing
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import _redis_db, _start_cluster, _stop_cluster
from tests.servers import HOST, ROOT, Cluster, DaphneInstance, RedisServer, demo_env
from tests.test_faults import RawWebSocket, drain_raw, log_lines
from tests.wsclient import ThinWSClient
from thinws_channels.tokens import SALT, issue_token

pytestmark = pytest.mark.integration

A, B = 0, 1
# The defaults the module's cluster runs with (docs/security.md; thinws_channels/conf.py).
MAX_FRAME_BYTES = 65536
DAPHNE_MAX_MESSAGE = 1024 * 1024  # daphne's own limit (--websocket_max_message_size)

FORBIDDEN, RATE_LIMITED, TOO_LARGE = "forbidden", "rate_limited", "too_large"
CLOSE_REFUSED, CLOSE_POLICY, CLOSE_TOO_LARGE, CLOSE_TOO_BIG = 4001, 4008, 4009, 1009
CLOSE_DROPPED = 1006  # what a client reports when the TCP connection ends without a close frame
HTTP_TIMEOUT = 15.0
CLOSE_TIMEOUT = 15.0
PASSWORD = "correct horse battery staple"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def report(text: str) -> None:
    """A measurement or an observation, for the test's output (pytest -s)."""
    print(f"\n[security] {text}", flush=True)


# -- the servers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secure(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two daphne instances of demo_project with the secure defaults, for the whole module."""
    cluster = _start_cluster(
        tmp_path_factory,
        redis_url=redis_server.url_for(next(_redis_db) % 16),
        layer="pubsub",
        size=2,
        extra_env={"THINWS_SETTINGS": "{}"},
    )
    try:
        yield cluster
    finally:
        _stop_cluster(cluster)


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@pytest.fixture(scope="module")
def accounts(secure: Cluster) -> dict[str, Account]:
    """Two staff users (so they can log in through /admin/login/) in the cluster's database."""
    made = {name: Account(uid(name), PASSWORD) for name in ("alice", "bob")}
    code = (
        "from django.contrib.auth import get_user_model\n"
        f"for name, password in {[(a.username, a.password) for a in made.values()]!r}:\n"
        "    get_user_model().objects.create_user(name, password=password, is_staff=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=demo_env(DATABASE_PATH=str(secure.database_path)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return made


# -- a browser: HTTP with a cookie jar -------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Browser:
    """Plain HTTP to the demo's pages with a cookie jar of its own (one browser profile).

    Redirects are not followed: the tests look at them. No Origin header is sent on POST (Django
    checks the CSRF token against the csrftoken cookie, as for any same-site form).
    """

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items() if value)

    def request(
        self, inst: DaphneInstance, method: str, path: str, form: dict[str, str] | None = None
    ) -> Response:
        headers = {"Host": f"{HOST}:{inst.port}"}
        if self.cookie_header:
            headers["Cookie"] = self.cookie_header
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection(HOST, inst.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        for value in resp.headers.get_all("Set-Cookie") or []:
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            jar.load(value)
            for name, morsel in jar.items():
                self.cookies[name] = morsel.value
        return Response(resp.status, resp.headers, data)

    def login(self, inst: DaphneInstance, account: Account) -> None:
        """Log in through the admin's login form (GET it for the CSRF cookie, then POST)."""
        page = self.request(inst, "GET", "/admin/login/")
        assert page.status == 200, page
        assert self.cookies.get("csrftoken"), page.headers
        done = self.request(
            inst,
            "POST",
            "/admin/login/",
            {
                "csrfmiddlewaretoken": self.cookies["csrftoken"],
                "username": account.username,
                "password": account.password,
                "next": "/admin/",
            },
        )
        assert done.status == 302, (done.status, done.body[-2000:])
        assert self.cookies.get("sessionid"), done.headers

    def logout(self, inst: DaphneInstance) -> None:
        """Log out through the admin (a POST with the CSRF token, as its logout button does)."""
        done = self.request(
            inst, "POST", "/admin/logout/", {"csrfmiddlewaretoken": self.cookies["csrftoken"]}
        )
        assert done.status in (200, 302), (done.status, done.body[-2000:])
        assert not self.cookies.get("sessionid"), f"the session cookie was not cleared: {done}"

    def ws_kwargs(self) -> dict[str, Any]:
        """What ThinWSClient.open needs to send this browser's cookies (and its Origin)."""
        return {"additional_headers": {"Cookie": self.cookie_header}}


async def in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking HTTP and process control, off the event loop (the clients keep reading)."""
    return await asyncio.to_thread(func, *args, **kwargs)


# -- socket helpers --------------------------------------------------------------------------


async def with_token(ws: Any, url: str, connection_id: str, **open_kwargs: Any) -> ThinWSClient:
    """A socket connected as ``connection_id`` with a token issued for it (a native client)."""
    client: ThinWSClient = await ws(url, **open_kwargs)
    ack = await client.connect(connection_id, token=issue_token(connection_id))
    assert ack.get("connectionID") == connection_id, ack
    return client


async def assert_refused(
    client: ThinWSClient, frame: dict[str, Any], code: str, close_code: int
) -> dict[str, Any]:
    """``frame`` gets an error ``code`` (with its messageID), then the socket closes."""
    reply = await client.request(frame)
    assert reply.get("type") == "error" and reply.get("code") == code, reply
    assert isinstance(reply.get("message"), str) and reply["message"], reply
    closed = await client.wait_closed(CLOSE_TIMEOUT)
    assert closed == close_code, (closed, client.close_reason, client.frames[-5:])
    return reply


async def assert_revoked(client: ThinWSClient) -> dict[str, Any]:
    """The server closed ``client``: a ``forbidden`` error (messageID null), then 4001."""
    error = await client.next_reply(CLOSE_TIMEOUT)
    assert error.get("type") == "error" and error.get("code") == FORBIDDEN, error
    assert error.get("messageID") is None, error
    closed = await client.wait_closed(CLOSE_TIMEOUT)
    assert closed == CLOSE_REFUSED, (closed, client.close_reason, client.frames[-5:])
    return error


def errors_in(client: ThinWSClient) -> list[Any]:
    return [f for f in client.frames if isinstance(f, dict) and f.get("type") == "error"]


async def open_status(url: str, **kwargs: Any) -> int:
    """The HTTP status of a WebSocket handshake: 101 when it was accepted."""
    try:
        client = await ThinWSClient.open(url, **kwargs)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await client.close()
    return 101


async def round_trip(client: ThinWSClient, room: str, payload: Any) -> dict[str, Any]:
    """Publish ``payload`` and receive it back; both must arrive."""
    ack = await client.publish(room, payload)
    got = await client.next_message(room=room)
    assert got.get("payload") == payload and got.get("messageID") == ack["id"], (got, ack)
    return ack


# -- frame size ------------------------------------------------------------------------------


async def test_frame_over_daphne_limit_never_reaches_app_and_process_keeps_serving(secure, ws):
    """A 2 MiB frame never reaches the app: daphne ends the connection itself, with no error
    frame, and the process keeps serving its other sockets.

    daphne 4.2.3 leaves autobahn's ``failByDrop`` on, so it drops the TCP connection (the client
    sees 1006) instead of sending the close frame 1009 that autobahn would otherwise send.
    """
    room = uid("room")
    neighbour = await with_token(ws, secure.urls[A], uid("neighbour"))
    victim = await with_token(ws, secure.urls[A], uid("victim"))
    await victim.subscribe(room)

    with contextlib.suppress(ConnectionClosed):  # the server may close while it is sent
        await victim.send_raw("x" * (2 * DAPHNE_MAX_MESSAGE))
    closed = await victim.wait_closed(CLOSE_TIMEOUT)
    report(f"2 MiB frame: the client saw close code {closed} {victim.close_reason!r}")
    # Not 4009: the app never saw the frame.
    assert closed in (CLOSE_TOO_BIG, CLOSE_DROPPED), (closed, victim.close_reason)
    assert errors_in(victim) == [], errors_in(victim)

    # The same process keeps serving: the neighbour, and a socket opened afterwards.
    await neighbour.subscribe(room)
    late = await with_token(ws, secure.urls[A], uid("late"))
    await late.subscribe(room)
    ack = await neighbour.publish(room, {"after": "2 MiB"})
    for client in (neighbour, late):
        got = await client.next_message(room=room)
        assert got.get("payload") == {"after": "2 MiB"} and got["messageID"] == ack["id"], got
    assert secure[A].running


def padded_frame(room: str, size: int, *, wide: int = 0) -> str:
    """A ``message`` frame of exactly ``size`` UTF-8 bytes, ``wide`` of its characters 'é'."""
    head = json.dumps({"type": "message", "messageID": "big", "roomID": room, "payload": ""})
    assert head.endswith('""}')
    room_left = size - len(head.encode())
    pad = "é" * wide + "a" * (room_left - 2 * wide)
    text = head[:-3] + json.dumps(pad, ensure_ascii=False) + "}"
    assert len(text.encode()) == size, (len(text.encode()), size)
    return text


async def test_frame_over_app_limit_gets_too_large_then_4009(secure, ws):
    """MAX_FRAME_BYTES counts UTF-8 bytes: a frame of exactly 65536 bytes is served, one byte
    more (fewer characters than the limit, thanks to two-byte 'é's) gets too_large, then 4009."""
    room = uid("room")
    client = await with_token(ws, secure.urls[A], uid("big"))
    await client.subscribe(room)

    at_limit = padded_frame(room, MAX_FRAME_BYTES)
    await client.send_raw(at_limit)
    ack = await client.reply("big")
    assert ack.get("type") == "ack", ack
    got = await client.next_message(room=room)
    assert got["messageID"] == ack["id"] and len(got["payload"]) > MAX_FRAME_BYTES - 100

    over = padded_frame(room, MAX_FRAME_BYTES + 1, wide=2000)
    assert len(over) < MAX_FRAME_BYTES  # over the limit in bytes only
    await client.send_raw(over)
    error = await client.next_reply()
    assert error.get("type") == "error" and error.get("code") == TOO_LARGE, error
    assert str(MAX_FRAME_BYTES) in error.get("message", ""), error
    closed = await client.wait_closed(CLOSE_TIMEOUT)
    assert closed == CLOSE_TOO_LARGE, (closed, client.close_reason)
    # Nothing of the refused frame was relayed.
    await client.expect_nothing(0.3)


# -- a flooding socket -----------------------------------------------------------------------


async def test_flooding_socket_is_rate_limited_then_closed_4008_neighbour_unaffected(secure, ws):
    """One socket floods the process: it gets rate_limited and then the fatal close 4008;
    meanwhile a neighbour on the same process gets every ack and every room message, in order.

    Which frames of the flood are acted on depends on timing: frames past the burst get
    rate_limited, each with its messageID, and 30 refusals in a row close the socket; but when
    more frames wait in daphne's queue than the limit could ever accept (the client writes far
    faster than the consumer runs), the socket is closed at once, with one rate_limited error
    whose messageID is null. Either way: replies in order, nothing after the close."""
    room = uid("room")
    flood_id, neighbour_id = uid("flooder"), uid("neighbour")
    flooder = await with_token(ws, secure.urls[A], flood_id)
    neighbour = await with_token(ws, secure.urls[A], neighbour_id)
    await flooder.subscribe(room)
    await neighbour.subscribe(room)

    flood_size, paced = 400, 25
    flood_ids = [f"flood-{n}" for n in range(1, flood_size + 1)]
    sent = 0
    round_trips: list[float] = []
    neighbour_acks: list[str] = []

    async def flood() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionClosed):  # the server closes it mid-flood
            for n, message_id in enumerate(flood_ids, 1):
                await flooder.send(
                    {"type": "message", "messageID": message_id, "roomID": room, "payload": n}
                )
                sent += 1

    async def neighbour_publishes() -> None:
        for n in range(1, paced + 1):  # well under the rate: 20 frames a second
            started = time.monotonic()
            ack = await neighbour.publish(room, {"neighbour": n})
            round_trips.append(time.monotonic() - started)
            neighbour_acks.append(ack["id"])
            await asyncio.sleep(0.05)

    await asyncio.gather(neighbour_publishes(), flood())
    closed = await flooder.wait_closed(CLOSE_TIMEOUT)

    after_subscribe = [
        f
        for f in flooder.frames
        if isinstance(f, dict)
        and f.get("type") in ("ack", "error")
        and (str(f.get("messageID")).startswith("flood-") or f.get("messageID") is None)
    ]
    replies = [r for r in after_subscribe if r.get("messageID") is not None]
    acked = [r for r in replies if r["type"] == "ack"]
    refused = [r for r in after_subscribe if r["type"] == "error"]
    report(
        f"flood of {sent} frames: {len(acked)} acked, {len(refused)} rate_limited "
        f"(last: {after_subscribe[-1] if after_subscribe else None}), then close {closed}; the "
        f"neighbour's {len(round_trips)} publish round trips meanwhile: min "
        f"{min(round_trips) * 1000:.1f} ms, max {max(round_trips) * 1000:.1f} ms"
    )
    assert closed == CLOSE_POLICY, (closed, flooder.close_reason, flooder.frames[-3:])
    # Frames were answered in order, up to the fatal one, and nothing after it.
    assert [r["messageID"] for r in replies] == flood_ids[: len(replies)], replies[-5:]
    assert len(replies) < flood_size
    assert refused, "the flood was never refused"
    assert all(r.get("code") == RATE_LIMITED for r in refused), refused[:3]
    assert all(isinstance(r.get("message"), str) and r["message"] for r in refused)
    assert after_subscribe[-1]["type"] == "error", after_subscribe[-3:]
    # An ack never follows a refusal with messageID null (that one is the last word).
    assert all(r.get("messageID") is not None for r in after_subscribe[:-1]), after_subscribe

    # The neighbour got every message acked to either socket, each sender's in order, and none
    # of the refused ones.
    messages = await neighbour.messages(len(acked) + paced, timeout=10, room=room)
    from_flooder = [m["messageID"] for m in messages if m.get("connectionID") == flood_id]
    from_neighbour = [m["messageID"] for m in messages if m.get("connectionID") == neighbour_id]
    assert from_flooder == [r["id"] for r in acked]
    assert from_neighbour == neighbour_acks
    await neighbour.expect_nothing(0.5)
    assert not neighbour.closed and errors_in(neighbour) == []


# -- Origin ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "http://127.0.0.1.evil.example", "null"],
    ids=["foreign", "lookalike", "sandboxed-null"],
)
async def test_cross_site_websocket_hijacking_foreign_origin_gets_403(secure, origin):
    """A page of another site (or a sandboxed one) cannot open a socket that carries the user's
    cookies: the handshake is refused with HTTP 403."""
    assert await open_status(secure.urls[A], origin=origin) == 403


@pytest.mark.parametrize("origin", ["auto", None], ids=["own-origin", "no-origin"])
async def test_handshake_of_own_site_or_native_client_needs_token_to_connect(secure, ws, origin):
    """The site's own pages and native clients (no Origin) get through the handshake, but under
    the default policy an anonymous socket without a token is refused (forbidden + 4001); with a
    token from issue_token() it connects."""
    cid = uid("anon")
    bare = await ws(secure.urls[A], origin=origin)
    reply = await assert_refused(
        bare, {"type": "connect", "connectionID": cid}, FORBIDDEN, CLOSE_REFUSED
    )
    assert "token" in reply["message"], reply

    client = await ws(secure.urls[A], origin=origin)
    ack = await client.connect(cid, token=issue_token(cid))
    assert ack.get("connectionID") == cid and ack.get("rooms") == [], ack
    await client.subscribe(cid)
    await round_trip(client, cid, "hello")


# -- tokens ----------------------------------------------------------------------------------


def bad_token(kind: str, connection_id: str) -> str:
    if kind == "tampered":
        # The claims of a valid token rewritten (another connectionID, a later expiry) with the
        # original signature kept.
        genuine = issue_token("someone-else", expires_in=60)
        wanted = signing.dumps(
            {"c": connection_id, "e": time.time() + 86400}, salt=SALT, compress=True
        )
        payload = wanted.split(":", 1)[0]
        return payload + genuine[genuine.index(":") :]
    if kind == "forged":
        return signing.dumps(
            {"c": connection_id, "e": time.time() + 3600},
            key="not-the-server-key",
            salt=SALT,
            compress=True,
        )
    if kind == "other-connection-id":
        return issue_token(uid("someone-else"))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["tampered", "forged", "expired", "other-connection-id"])
async def test_bad_token_is_refused_forbidden_4001(secure, ws, kind):
    """A token altered, signed with another key, expired, or issued for another connectionID
    lets nobody in; the connectionID stays free for its real holder."""
    cid = uid(kind)
    if kind == "expired":
        token = issue_token(cid, expires_in=0.05)
        await asyncio.sleep(0.3)
    else:
        token = bad_token(kind, cid)
    client = await ws(secure.urls[A], origin=None)
    reply = await assert_refused(
        client, {"type": "connect", "connectionID": cid, "token": token}, FORBIDDEN, CLOSE_REFUSED
    )
    report(f"{kind} token: {reply['message']}")
    holder = await with_token(ws, secure.urls[B], cid, origin=None)
    assert not holder.closed


async def test_token_view_issues_a_token_that_connects(secure, ws):
    """/token/ of the demo gives the visitor a connectionID of their own and a token for it; the
    session cookie alone (anonymous) is no credential."""
    browser = Browser()
    first = await in_thread(browser.request, secure[A], "GET", "/token/")
    assert first.status == 200, first
    issued = first.json()
    cid, token = issued["connectionID"], issued["token"]
    assert browser.cookies.get("sessionid"), first.headers
    again = (await in_thread(browser.request, secure[B], "GET", "/token/")).json()
    assert again["connectionID"] == cid, (issued, again)

    cookie_only = await ws(secure.urls[B], **browser.ws_kwargs())
    await assert_refused(
        cookie_only, {"type": "connect", "connectionID": cid}, FORBIDDEN, CLOSE_REFUSED
    )
    client = await ws(secure.urls[B], **browser.ws_kwargs())
    ack = await client.connect(cid, token=token)
    assert ack.get("connectionID") == cid, ack
    await client.subscribe(cid)
    await round_trip(client, cid, {"via": "/token/"})


# -- users -----------------------------------------------------------------------------------


async def test_user_cannot_take_another_users_connection_id_and_logout_closes_sockets(
    secure, ws, accounts
):
    """Alice's connectionID is bound to her: Bob (logged in), and an anonymous token for it, are
    refused with forbidden + 4001 on either instance; Alice's logout (on the other instance)
    closes her live sockets with forbidden + 4001, and only hers."""
    alice, bob = Browser(), Browser()
    await in_thread(alice.login, secure[A], accounts["alice"])
    await in_thread(bob.login, secure[A], accounts["bob"])
    cid_a, cid_b = uid("cid-a"), uid("cid-b")
    room = uid("room")

    a1 = await ws(secure.urls[A], cid_a, **alice.ws_kwargs())
    await a1.subscribe(room)
    a2 = await ws(secure.urls[B], cid_a, **alice.ws_kwargs())  # the same user, elsewhere
    assert a2.connect_ack.get("rooms") == [room], a2.connect_ack

    for url in secure.urls:
        thief = await ws(url, **bob.ws_kwargs())
        reply = await assert_refused(
            thief, {"type": "connect", "connectionID": cid_a}, FORBIDDEN, CLOSE_REFUSED
        )
        report(f"Bob claiming Alice's connectionID: {reply['message']}")
    anonymous = await ws(secure.urls[A], origin=None)
    await assert_refused(
        anonymous,
        {"type": "connect", "connectionID": cid_a, "token": issue_token(cid_a)},
        FORBIDDEN,
        CLOSE_REFUSED,
    )

    b1 = await ws(secure.urls[A], cid_b, **bob.ws_kwargs())  # Bob's own id is fine
    await b1.subscribe(room)
    # Neither refusal disturbed Alice.
    ack = await round_trip(a1, room, "still mine")
    for client in (a2, b1):
        assert (await client.next_message(room=room))["messageID"] == ack["id"]

    old_cookie = alice.ws_kwargs()
    await in_thread(alice.logout, secure[B])
    for client in (a1, a2):
        error = await assert_revoked(client)
    report(f"after Alice's logout on B, her sockets on A and B got {error}")
    # Bob is not affected; Alice's old cookie no longer logs anyone in.
    await round_trip(b1, room, "bob stays")
    stale = await ws(secure.urls[A], **old_cookie)
    await assert_refused(
        stale, {"type": "connect", "connectionID": cid_a}, FORBIDDEN, CLOSE_REFUSED
    )


# -- a slow consumer -------------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_slow_consumer_is_cut_off_past_max_send_buffer_neighbour_gets_all(
    cluster_factory, ws
):
    """A client that stops reading while its room is busy would make daphne buffer without
    bound: once the kernel's socket buffers are full and daphne's own passes MAX_SEND_BUFFER
    (64 KiB here), the server cuts it off (close 4008, or the connection dropped), while a
    neighbour in the same room receives every message in order.

    The kernel takes a lot first (Linux lets the server's send buffer grow to tcp_wmem's
    maximum, 4 MiB by default), so the room is published to until the server logs the cut.
    """
    max_buffer, cap, window, size = 65536, 2000, 32, 8 * 1024  # at most 16 MiB
    settings = {"MAX_SEND_BUFFER": max_buffer, "RATE_LIMIT": None}
    cluster: Cluster = await in_thread(
        cluster_factory, layer="pubsub", size=1, extra_env={"THINWS_SETTINGS": json.dumps(settings)}
    )
    url = cluster.urls[0]
    room = uid("room")
    slow_id = uid("slow")

    def cut_off() -> list[str]:
        return log_lines(cluster[0], "reads too slowly")

    raw = await in_thread(RawWebSocket, url)
    try:
        token = issue_token(slow_id)
        raw.send_json({"type": "connect", "messageID": 1, "connectionID": slow_id, "token": token})
        assert (await in_thread(raw.read_until_reply)).get("type") == "ack"
        raw.send_json({"type": "subscribe", "messageID": 2, "roomID": room})
        assert (await in_thread(raw.read_until_reply)).get("type") == "ack"
        # From now on, the slow client reads nothing.

        neighbour = await with_token(ws, url, uid("neighbour"))
        await neighbour.subscribe(room)
        pub = await with_token(ws, url, uid("pub"))
        await pub.subscribe(room)

        filler = "x" * size
        in_flight: list[tuple[int, int]] = []
        published = 0
        cut_at: int | None = None

        async def settle(keep: int) -> None:
            while len(in_flight) > keep:
                seq, mid = in_flight.pop(0)
                reply = await pub.reply(mid, timeout=20)
                assert reply.get("type") == "ack", (seq, reply)

        async def publish() -> None:
            nonlocal published, cut_at
            for seq in range(1, cap + 1):
                mid = pub.new_id()
                frame = {"type": "message", "messageID": mid, "roomID": room}
                await pub.send({**frame, "payload": {"seq": seq, "filler": filler}})
                published = seq
                in_flight.append((seq, mid))
                await settle(window - 1)
                if seq % window == 0:
                    if cut_at is None and await in_thread(cut_off):
                        cut_at = seq
                    elif cut_at is not None and seq >= cut_at + 4 * window:
                        break  # the room goes on after the cut: the neighbour still gets all
            await settle(0)

        async def collect(client: ThinWSClient) -> list[int]:
            """The seqs ``client`` receives until the publisher is done and has nothing more
            (a missing message: 5 s after the publisher is done)."""
            seqs: list[int] = []
            while not (publisher.done() and len(seqs) >= published):
                try:
                    frame = await client.next_message(5.0 if publisher.done() else 1.0, room=room)
                except TimeoutError:
                    if publisher.done():
                        break
                    continue
                seqs.append(frame["payload"]["seq"])
            return seqs

        publisher = asyncio.ensure_future(publish())
        neighbour_seqs, pub_seqs = await asyncio.gather(collect(neighbour), collect(pub))
        await publisher
        sent = list(range(1, published + 1))
        assert neighbour_seqs == sent, [
            (i + 1, s) for i, s in enumerate(neighbour_seqs) if s != i + 1
        ][:10]
        assert pub_seqs == sent
        assert not neighbour.closed and not pub.closed

        seqs, ended = await in_thread(drain_raw, raw, room, published, 60.0)
        cut = cut_off()
        report(
            f"slow consumer: {published} x {size // 1024} KiB published to its room (the server "
            f"logged the cut by message {cut_at}); the stalled socket, reading again, got "
            f"{len(seqs)} messages (in order: {seqs == list(range(1, len(seqs) + 1))}), then: "
            f"{ended}; server log: {cut[:1]} ({len(cut)} such lines)"
        )
        assert cut and slow_id in cut[0], f"no cut after {published} messages"
        assert len(cut) == 1, f"the socket was cut off {len(cut)} times"
        failures = log_lines(cluster[0], "Traceback", "Error", "failed")
        assert not failures, failures[:10]
        assert seqs == list(range(1, len(seqs) + 1)), seqs[:20]
        assert ended == f"close frame {CLOSE_POLICY}" or ended.startswith("TCP closed"), ended
        assert len(seqs) < published
    finally:
        raw.close()
