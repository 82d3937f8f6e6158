"""Fault tests: real redis-server and daphne processes on 127.0.0.1 that crash, restart and stall.

Each test starts a cluster of its own (``cluster_factory``), so that killing things never disturbs
the shared cluster of ``test_integration.py``; the Redis-restart test also runs on a private
redis-server (``redis_factory``). Blocking process control (start, kill, SIGTERM) runs in a thread,
so the clients' reader tasks keep reading meanwhile. Every wait is bounded.

What is measured (recovery times, close codes, buffered bytes) is printed: run with ``-s``.
"""

# Every wait takes an explicit timeout here: that is the point.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sqlite3
import struct
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers import LAYERS, Cluster, DaphneInstance
from tests.settings import PROTOCOL_TEST_PROFILE
from tests.wsclient import ThinWSClient

pytestmark = pytest.mark.integration

A, B = 0, 1
CLOSE_TIMEOUT = 15.0  # seconds for a socket to see its server go away
RECOVERY_TIMEOUT = 45.0  # seconds for room delivery to come back after Redis restarted
UNAVAILABLE_TIMEOUT = 15.0  # seconds for a frame to be answered while Redis is down


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def report(text: str) -> None:
    """A measurement or an observation, for the test's output (pytest -s)."""
    print(f"\n[faults] {text}", flush=True)


def assert_connect_ack(ack: dict, connection_id: str, rooms: list[str]) -> None:
    assert ack.get("type") == "ack", ack
    assert ack.get("protocol") == 1, ack
    assert ack.get("connectionID") == connection_id, ack
    assert ack.get("rooms") == rooms, ack


async def in_thread(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Blocking process control, off the event loop (the clients keep reading meanwhile)."""
    return await asyncio.to_thread(func, *args, **kwargs)


async def next_with_payload(
    client: ThinWSClient, room: str, payload: Any, timeout: float = 10.0
) -> dict:
    """The room message carrying ``payload``, skipping other messages of the room."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    skipped: list[Any] = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no message {payload!r} in {room!r}; skipped {skipped[-10:]!r}")
        frame = await client.next_message(remaining, room=room)
        if frame.get("payload") == payload:
            return frame
        skipped.append(frame.get("payload"))


def log_text(inst: DaphneInstance) -> str:
    parts = []
    for path in (inst.stdout_path, inst.stderr_path):
        with contextlib.suppress(OSError):
            parts.append(Path(path).read_text(errors="replace"))
    return "\n".join(parts)


def log_lines(inst: DaphneInstance, *needles: str) -> list[str]:
    return [line for line in log_text(inst).splitlines() if any(n in line for n in needles)]


def assert_no_app_crash(cluster: Cluster) -> None:
    """No consumer died with an exception daphne had to catch (that would be an app bug)."""
    for inst in cluster.instances:
        crashed = log_lines(inst, "Exception inside application", "took too long to shut down")
        assert not crashed, f"daphne {inst.name}: {crashed}\n{inst.log_tail(80)}"


def db_rows(cluster: Cluster, sql: str, *params: Any) -> list[tuple]:
    """Read the cluster's SQLite file directly (read-only)."""
    uri = f"file:{cluster.database_path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
        return db.execute(sql, params).fetchall()


def presences_of(cluster: Cluster, connection_id: str) -> list[tuple[str, str]]:
    """(socket id, instance name) of the live sockets the database records for a connectionID."""
    return db_rows(
        cluster,
        "SELECT p.socket_id, i.name FROM thinws_channels_presence p "
        "JOIN thinws_channels_connection c ON c.id = p.connection_id "
        "JOIN thinws_channels_serverinstance i ON i.id = p.instance_id "
        "WHERE c.connection_id = ?",
        connection_id,
    )


def instances_named(cluster: Cluster, name: str) -> list[tuple[int, int]]:
    return db_rows(
        cluster, "SELECT id, pid FROM thinws_channels_serverinstance WHERE name = ?", name
    )


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(tx_queue, rx_queue) in bytes of the IPv4 TCP socket local_port -> remote_port."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (
            int(local.rsplit(":", 1)[1], 16) == local_port
            and int(remote.rsplit(":", 1)[1], 16) == remote_port
        ):
            tx, rx = queues.split(":")
            return int(tx, 16), int(rx, 16)
    return None


# -- a WebSocket client that can stop reading ------------------------------------------------


class RawWebSocket:
    """A WebSocket over a plain TCP socket, handshake by hand, blocking with timeouts.

    Its receive buffer is made tiny, so that once the test stops reading it, the server's writes
    back up at once: first in the kernel, then in daphne's (Twisted's) own buffers.
    """

    def __init__(self, url: str, *, rcvbuf: int = 4096, timeout: float = 10.0):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((self.host, self.port))
        self.local_port = self.sock.getsockname()[1]
        self._buffer = b""
        self.close_code: int | None = None
        self.closed = False
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://{self.host}:{self.port}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise AssertionError(f"handshake refused: {head!r}")

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            raise ConnectionError("the server closed the TCP connection")
        self._buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send_json(self, frame: dict) -> None:
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        header = bytearray([0x81])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        elif len(payload) < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack("!H", len(payload))
        else:
            header.append(0x80 | 127)
            header += struct.pack("!Q", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def read_frame(self) -> dict | None:
        """The next text frame as JSON; None once the server sent a close frame."""
        parts: list[bytes] = []
        while True:
            b0, b1 = self._take(2)
            opcode, length = b0 & 0x0F, b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8))
            if b1 & 0x80:
                mask = self._take(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._take(length)))
            else:
                data = self._take(length)
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                self.closed = True
                return None
            if opcode in (0x9, 0xA):  # ping / pong: never answered, this client is "stuck"
                continue
            parts.append(data)
            if b0 & 0x80:
                return json.loads(b"".join(parts))

    def read_until_reply(self) -> dict:
        while True:
            frame = self.read_frame()
            if frame is None:
                raise ConnectionError(f"closed with {self.close_code} before a reply")
            if frame.get("type") in ("ack", "error"):
                return frame

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Pump:
    """Publishes ``{"seq": n}`` to a room, one after the other, until stopped; records the acks."""

    def __init__(self, client: ThinWSClient, room: str, interval: float = 0.01):
        self.client, self.room, self.interval = client, room, interval
        self.acked: list[int] = []
        self.errors: list[dict] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Pump:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            reply = await self.client.request(
                {"type": "message", "roomID": self.room, "payload": {"seq": seq}}, timeout=10
            )
            if reply.get("type") == "ack":
                self.acked.append(seq)
            else:
                self.errors.append(reply)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 15)


async def received_seqs(
    client: ThinWSClient, room: str, last: int, timeout: float = 15
) -> list[int]:
    """The ``seq`` payloads of the room's messages, up to and including ``last``."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < last:
        frame = await client.next_message(timeout, room=room)
        payload = frame.get("payload")
        if isinstance(payload, dict) and "seq" in payload:
            seqs.append(payload["seq"])
    return seqs


# -- 1. an instance crashes ------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
async def test_sigkill_instance_clients_move_to_the_survivor(layer, cluster_factory, ws):
    cluster: Cluster = await in_thread(cluster_factory, layer=layer)
    room, other_room = uid("room"), uid("room2")
    victim_id, survivor_id, pub_id = uid("victim"), uid("survivor"), uid("pub")

    victim = await ws(cluster.urls[A], victim_id)
    await victim.subscribe(room)
    await victim.subscribe(other_room)
    survivor = await ws(cluster.urls[B], survivor_id)
    await survivor.subscribe(room)
    pub = await ws(cluster.urls[B], pub_id)
    await pub.subscribe(room)
    ack = await pub.publish(room, "before")
    for client in (victim, survivor, pub):
        assert (await next_with_payload(client, room, "before"))["messageID"] == ack["id"]

    # B keeps publishing to the room while A dies.
    pump = Pump(pub, room).start()
    await asyncio.sleep(0.3)
    killed_at = time.monotonic()
    await in_thread(cluster.kill, A)
    code = await victim.wait_closed(CLOSE_TIMEOUT)
    report(
        f"{layer}: SIGKILL of A seen by its client after {time.monotonic() - killed_at:.3f}s, "
        f"close code {code}"
    )
    assert code == 1006, code  # no closing handshake: the process is gone
    await asyncio.sleep(0.5)
    await pump.stop()
    assert not pump.errors, pump.errors
    assert len(pump.acked) >= 10, pump.acked
    last = pump.acked[-1]

    # The clients of the survivor lost nothing, in order.
    for client in (survivor, pub):
        seqs = await received_seqs(client, room, last)
        assert seqs == list(range(1, last + 1)), (client.connection_id, seqs)
    report(f"{layer}: {last} messages published on B while A died, all received on B in order")

    # The victim reconnects to B with its connectionID: its rooms come back, in order.
    moved = await ws(cluster.urls[B], victim_id)
    assert_connect_ack(moved.connect_ack, victim_id, [room, other_room])
    ack = await pub.publish(room, "after-kill")
    got = await moved.next_message(room=room)
    assert got.get("payload") == "after-kill" and got["messageID"] == ack["id"], got
    ack2 = await moved.publish(other_room, "other-room")
    got = await moved.next_message(room=other_room)
    assert got["messageID"] == ack2["id"], got
    assert (await next_with_payload(survivor, room, "after-kill"))["messageID"] == ack["id"]

    # What the database says meanwhile: the dead instance's sockets stay "online" until a
    # heartbeat of another instance finds it dead (3 x HEARTBEAT_INTERVAL).
    stale = [p for p in presences_of(cluster, victim_id) if p[1] == "a"]
    report(f"{layer}: presences of the victim on the killed instance A, right after: {stale}")

    # A comes back on the same port: clients can use it again, in both directions.
    await in_thread(cluster[A].start)
    back = await ws(cluster.urls[A], victim_id)
    assert_connect_ack(back.connect_ack, victim_id, [room, other_room])
    ack = await pub.publish(room, "after-restart")
    for client in (back, moved, survivor, pub):
        got = await next_with_payload(client, room, "after-restart")
        assert got["messageID"] == ack["id"], got
    ack = await back.publish(room, "from-restarted-a")
    for client in (back, moved, survivor, pub):
        got = await next_with_payload(client, room, "from-restarted-a")
        assert got["messageID"] == ack["id"] and got["connectionID"] == victim_id, got
    # A room that is new to both instances since the restart.
    fresh_room = uid("fresh")
    fresh_a = await ws(cluster.urls[A], uid("fresh-a"))
    await fresh_a.subscribe(fresh_room)
    await survivor.subscribe(fresh_room)
    ack = await survivor.publish(fresh_room, "b-to-a")
    assert (await fresh_a.next_message(room=fresh_room))["messageID"] == ack["id"]
    assert_no_app_crash(cluster)


# -- 2. Redis restarts -----------------------------------------------------------------------


async def answer_while_down(client: ThinWSClient, frame: dict, what: str, layer: str) -> dict:
    """Send ``frame`` while Redis is down: one reply must come, bounded in time."""
    started = time.monotonic()
    reply = await client.request(frame, timeout=UNAVAILABLE_TIMEOUT)
    report(f"{layer}: Redis down, {what} -> {reply} after {time.monotonic() - started:.3f}s")
    return reply


async def redis_restart_scenario(
    layer: str,
    redis_factory: Any,
    cluster_factory: Any,
    ws: Any,
    refresh: str | None,
    recovery_timeout: float = RECOVERY_TIMEOUT,
) -> None:
    redis = await in_thread(redis_factory)
    extra_env = {"THINWS_GROUP_REFRESH_INTERVAL": refresh} if refresh else None
    cluster: Cluster = await in_thread(
        cluster_factory, layer=layer, redis=redis, extra_env=extra_env
    )
    label = f"{layer} (GROUP_REFRESH_INTERVAL={refresh or 'default'})"
    room = uid("room")
    sub_id, pub_id = uid("sub"), uid("pub")
    sub = await ws(cluster.urls[B], sub_id)
    await sub.subscribe(room)
    twin = await ws(cluster.urls[A], sub_id)  # the same connectionID, on the other instance
    assert_connect_ack(twin.connect_ack, sub_id, [room])
    pub = await ws(cluster.urls[A], pub_id)
    await pub.subscribe(room)
    ack = await pub.publish(room, "before")
    for client in (sub, twin, pub):
        assert (await next_with_payload(client, room, "before"))["messageID"] == ack["id"]

    # Redis crashes (SIGKILL; no persistence: its data is gone when it comes back).
    await in_thread(redis.kill)
    down_at = time.monotonic()

    # Every frame that needs the layer is answered 'unavailable', at once; the socket stays open.
    reply = await answer_while_down(
        pub, {"type": "message", "roomID": room, "payload": "while-down"}, "message", label
    )
    assert reply.get("type") == "error" and reply.get("code") == "unavailable", reply
    assert isinstance(reply.get("message"), str) and reply["message"], reply
    reply = await answer_while_down(
        pub, {"type": "message", "roomID": room, "payload": "while-down-2"}, "message again", label
    )
    assert reply.get("type") == "error" and reply.get("code") == "unavailable", reply
    # A room new to the process needs the layer (the database is up).
    new_room = uid("new-while-down")
    reply = await answer_while_down(
        pub, {"type": "subscribe", "roomID": new_room}, "subscribe to a new room", label
    )
    assert reply.get("type") == "error" and reply.get("code") == "unavailable", reply
    # A new socket of a new connectionID: its connection group needs the layer.
    refused = await ws(cluster.urls[A])
    refused_id = uid("refused")
    reply = await answer_while_down(
        refused, {"type": "connect", "connectionID": refused_id}, "connect (new id)", label
    )
    assert reply.get("type") == "error" and reply.get("code") == "unavailable", reply
    for client in (sub, twin, pub, refused):
        assert not client.closed, (client.close_code, client.frames[-5:])

    await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - down_at)))  # down for >= 2 s
    await in_thread(redis.start)
    up_at = time.monotonic()
    report(f"{label}: Redis was down for {up_at - down_at:.2f}s")

    # Recovery: publish a probe from A every 0.25 s until B's subscriber receives one.
    probes: dict[int, dict] = {}  # probe -> reply
    delivered_at: float | None = None
    first_ack_at: float | None = None
    first_delivered = 0
    k = 0
    while delivered_at is None:
        elapsed = time.monotonic() - up_at
        assert elapsed < recovery_timeout, (
            f"{label}: no probe reached B within {recovery_timeout}s after Redis came back; "
            f"last replies: {list(probes.values())[-5:]}"
        )
        k += 1
        reply = await pub.request(
            {"type": "message", "roomID": room, "payload": {"probe": k}}, timeout=10
        )
        probes[k] = reply
        if reply.get("type") == "ack" and first_ack_at is None:
            first_ack_at = time.monotonic()
        assert reply.get("type") == "ack" or reply.get("code") == "unavailable", reply
        with contextlib.suppress(TimeoutError):
            frame = await sub.next_message(0.25, room=room)
            payload = frame.get("payload")
            if isinstance(payload, dict) and "probe" in payload:
                delivered_at = time.monotonic()
                first_delivered = payload["probe"]
    assert first_ack_at is not None
    acked = [n for n, r in probes.items() if r.get("type") == "ack"]
    unavailable = [n for n, r in probes.items() if r.get("code") == "unavailable"]
    lost = [n for n in acked if n < first_delivered]
    report(
        f"{label}: RECOVERY: first publish acked {first_ack_at - up_at:.2f}s after Redis was up, "
        f"first delivery A->B {delivered_at - up_at:.2f}s after; probes answered 'unavailable': "
        f"{unavailable}; acked but never delivered to B: {len(lost)} "
        f"({lost[:3]}...{lost[-2:]})"
    )
    # Nothing published while Redis was down was relayed later.
    for client in (sub, twin, pub):
        assert not [f for f in client.pending("message") if "while-down" in str(f)]
    for client in (sub, twin, pub):
        with contextlib.suppress(TimeoutError):
            while True:  # drop the probes still on their way
                await client.next_message(1.0, room=room)

    # Redis is back and delivery works: from now on no frame may be refused.
    late: list[tuple[str, str, dict]] = []

    async def ok(client: ThinWSClient, name: str, frame: dict) -> dict:
        """The reply to ``frame``; an 'unavailable' is recorded (asserted on at the end) and the
        frame sent once more, so that the rest of the test still runs."""
        reply = await client.request(frame, timeout=10)
        if reply.get("code") == "unavailable":
            late.append((name, frame["type"], reply))
            reply = await client.request(frame, timeout=10)
        assert reply.get("type") == "ack", (name, frame, reply)
        return reply

    # First publishes from B (idle since Redis came back) and A, then a steady stream.
    ack = await ok(sub, "B", {"type": "message", "roomID": room, "payload": "b-to-a"})
    for client in (sub, twin, pub):
        assert (await next_with_payload(client, room, "b-to-a"))["messageID"] == ack["id"]
    sent = []
    for n in range(1, 31):
        ack = await ok(pub, "A", {"type": "message", "roomID": room, "payload": {"seq": n}})
        sent.append(ack["id"])
    for client in (sub, twin, pub):
        frames = await client.messages(30, timeout=10, room=room)
        assert [f["payload"] for f in frames] == [{"seq": n} for n in range(1, 31)], frames
        assert [f["messageID"] for f in frames] == sent

    # The connectionID's group works again: a subscribe on B is told to the twin on A.
    room2 = uid("room2")
    await ok(sub, "B", {"type": "subscribe", "roomID": room2})
    told = await twin.next_frame(("subscribed", "unsubscribed"), timeout=10)
    assert told == {"type": "subscribed", "roomID": room2}, told
    # The socket refused while Redis was down can connect now.
    ack = await ok(refused, "A", {"type": "connect", "connectionID": refused_id})
    assert_connect_ack(ack, refused_id, [])
    # A subscribe answered 'unavailable' while Redis was down: was it stored anyway?
    fresh = await ws(cluster.urls[B], pub_id)
    report(
        f"{label}: after its subscribe to {new_room!r} was answered 'unavailable', a new socket "
        f"of that connectionID rejoins {fresh.connect_ack['rooms']}"
    )
    for inst in cluster.instances:
        lines = log_lines(inst, "WARNING", "ERROR", "retrying", "failed")
        report(f"{label}: daphne {inst.name}: {len(lines)} warning lines, e.g. {lines[:4]}")
    assert_no_app_crash(cluster)
    for name, kind, reply in late:
        report(f"{label}: after recovery, a {kind!r} on {name} got {reply}")
    assert not late, (
        f"{label}: frames answered 'unavailable' although Redis was back and delivery worked: "
        f"{late}"
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("layer", "refresh"), [("pubsub", None), ("core", "2")], ids=["pubsub", "core-refresh-2s"]
)
async def test_redis_restart(layer, refresh, redis_factory, cluster_factory, ws):
    await redis_restart_scenario(layer, redis_factory, cluster_factory, ws, refresh)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_redis_restart_core_default_refresh(redis_factory, cluster_factory, ws):
    """The core layer with the default GROUP_REFRESH_INTERVAL: delivery comes back within it."""
    await redis_restart_scenario(
        "core", redis_factory, cluster_factory, ws, None, recovery_timeout=90.0
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layer", LAYERS)
async def test_a_hung_redis_gets_unavailable_not_a_hang(layer, redis_factory, cluster_factory, ws):
    """Redis stops answering (SIGSTOP: connections stay open). The app sets no timeout of its
    own on layer calls; redis-py's default socket timeout (5 s since redis-py 6) bounds them."""
    redis = await in_thread(redis_factory)
    cluster: Cluster = await in_thread(cluster_factory, layer=layer, redis=redis)
    room = uid("room")
    sub = await ws(cluster.urls[B], uid("sub"))
    await sub.subscribe(room)
    pub = await ws(cluster.urls[A], uid("pub"))
    await pub.subscribe(room)
    ack = await pub.publish(room, "before")
    assert (await next_with_payload(sub, room, "before"))["messageID"] == ack["id"]

    redis.pause()
    try:
        reply = await answer_while_down(
            pub,
            {"type": "message", "roomID": room, "payload": "while-hung"},
            "message (Redis hung)",
            layer,
        )
    finally:
        redis.resume()
    assert reply.get("type") == "error" and reply.get("code") == "unavailable", reply

    # Delivery comes back; was the refused message delivered after all, once Redis resumed?
    resumed_at = time.monotonic()
    while True:
        assert time.monotonic() - resumed_at < RECOVERY_TIMEOUT, "no delivery after SIGCONT"
        reply = await pub.request(
            {"type": "message", "roomID": room, "payload": "after"}, timeout=10
        )
        if reply.get("type") == "ack":
            with contextlib.suppress(TimeoutError):
                await next_with_payload(sub, room, "after", timeout=1.0)
                break
        else:
            assert reply.get("code") == "unavailable", reply
            await asyncio.sleep(0.2)
    refused_delivered = [
        f for f in sub.frames if isinstance(f, dict) and f.get("payload") == "while-hung"
    ]
    report(
        f"{layer}: Redis resumed; delivery back after {time.monotonic() - resumed_at:.2f}s; the "
        f"message answered 'unavailable' was delivered anyway: {bool(refused_delivered)}"
    )
    assert_no_app_crash(cluster)


# -- 3. a slow consumer ----------------------------------------------------------------------


def drain_raw(raw: RawWebSocket, room: str, expected: int, timeout: float) -> tuple[list[int], str]:
    """Read what the stalled socket was sent (in a thread); returns the seqs and how it ended."""
    raw.sock.settimeout(2.0)
    deadline = time.monotonic() + timeout
    seqs: list[int] = []
    while time.monotonic() < deadline and len(seqs) < expected:
        try:
            frame = raw.read_frame()
        except TimeoutError:
            return seqs, "nothing more within 2s"
        except (ConnectionError, OSError) as exc:
            return seqs, f"TCP closed ({exc})"
        if frame is None:
            return seqs, f"close frame {raw.close_code}"
        if frame.get("type") == "message" and frame.get("roomID") == room:
            seqs.append(frame["payload"]["seq"])
    return seqs, "all read" if len(seqs) >= expected else "deadline"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("layer", LAYERS)
async def test_a_stalled_socket_does_not_hold_up_the_room(layer, cluster_factory, ws):
    count, window, size = 1000, 32, 8 * 1024  # 8 MB in all: well past the kernel's buffers
    # Without the slow-consumer cut-off (MAX_SEND_BUFFER), to see what daphne itself does; the
    # cut-off is tested in test_security_live.py.
    no_cut_off = {**PROTOCOL_TEST_PROFILE, "MAX_SEND_BUFFER": None}
    cluster: Cluster = await in_thread(
        cluster_factory, layer=layer, extra_env={"THINWS_SETTINGS": json.dumps(no_cut_off)}
    )
    room = uid("room")
    slow_id, fast_id, pub_id = uid("slow"), uid("fast"), uid("pub")

    # The slow client, on A: connect and subscribe, then never read again.
    raw = await in_thread(RawWebSocket, cluster.urls[A])
    try:
        raw.send_json({"type": "connect", "messageID": 1, "connectionID": slow_id})
        assert (await in_thread(raw.read_until_reply)).get("type") == "ack"
        raw.send_json({"type": "subscribe", "messageID": 2, "roomID": room})
        assert (await in_thread(raw.read_until_reply)).get("type") == "ack"

        fast = await ws(cluster.urls[A], fast_id)
        await fast.subscribe(room)
        pub = await ws(cluster.urls[B], pub_id)
        await pub.subscribe(room)
        rss_before = rss_kib(cluster[A].pid)

        started = time.monotonic()
        in_flight: list[tuple[int, int]] = []
        filler = "x" * size

        async def settle(keep: int) -> None:
            while len(in_flight) > keep:
                seq, mid = in_flight.pop(0)
                reply = await pub.reply(mid, timeout=20)
                assert reply.get("type") == "ack", (seq, reply)

        async def publish_all() -> None:
            for seq in range(1, count + 1):
                mid = pub.new_id()
                await pub.send(
                    {
                        "type": "message",
                        "messageID": mid,
                        "roomID": room,
                        "payload": {"seq": seq, "filler": filler},
                    }
                )
                in_flight.append((seq, mid))
                await settle(window - 1)
            await settle(0)

        async def collect(client: ThinWSClient) -> list[int]:
            frames = await client.messages(count, timeout=20, room=room)
            return [f["payload"]["seq"] for f in frames]

        _, fast_seqs, pub_seqs = await asyncio.gather(publish_all(), collect(fast), collect(pub))
        took = time.monotonic() - started
        assert fast_seqs == list(range(1, count + 1)), [
            (i + 1, s) for i, s in enumerate(fast_seqs) if s != i + 1
        ][:10]
        assert pub_seqs == list(range(1, count + 1))

        # The stalled socket really is stalled: bytes wait in its receive queue and in the
        # server's send queue, and the rest sits in daphne's memory.
        client_side = tcp_queues(raw.local_port, cluster[A].port)
        server_side = tcp_queues(cluster[A].port, raw.local_port)
        rss_after = rss_kib(cluster[A].pid)
        frame_bytes = len(json.dumps(pub.frames[-1])) if pub.frames else size
        in_kernel = (client_side[1] if client_side else 0) + (server_side[0] if server_side else 0)
        report(
            f"{layer}: about {count * frame_bytes // 1024} KiB were sent to the stalled socket, "
            f"{in_kernel // 1024} KiB of it sit in the kernel, the rest in daphne's memory"
        )
        report(
            f"{layer}: {count} x {size // 1024} KiB to a room with a stalled socket: the live "
            f"socket on the same instance got all in order in {took:.2f}s; kernel queues of the "
            f"stalled socket (tx, rx): client {client_side}, server {server_side}; daphne A RSS "
            f"{rss_before} -> {rss_after} KiB"
        )
        assert client_side is not None and client_side[1] > 0, client_side
        assert server_side is not None and server_side[0] > 0, server_side
        assert not raw.closed

        # What the stalled socket gets once it reads again: daphne kept everything for it.
        seqs, ended = await in_thread(drain_raw, raw, room, count, 60.0)
        report(
            f"{layer}: the stalled socket, reading again, got {len(seqs)} of {count} messages "
            f"(in order: {seqs == list(range(1, len(seqs) + 1))}); ended: {ended}"
        )
    finally:
        raw.close()
    assert_no_app_crash(cluster)


# -- 4. an instance shuts down gracefully ----------------------------------------------------


# Two daphne 4.2.3 behaviours decide whether the consumers of an instance clean up on SIGTERM
# (they are cancelled by daphne's shutdown trigger ``kill_all_applications``, and clean up in
# ``ThinWSConsumer.__call__``'s ``finally``):
# - daphne records the HTTP request of every WebSocket handshake in ``Server.connections`` without
#   an "application_instance" and reaps it within about a second (``application_checker``). A
#   SIGTERM before that makes ``kill_all_applications`` raise KeyError (logged only to Twisted's
#   log, which daphne discards at the default verbosity): no consumer is even cancelled ("busy").
# - otherwise it cancels every consumer and waits on ``asyncio.gather(*tasks)`` without
#   ``return_exceptions``: the first task to end with CancelledError would end the wait, the
#   reactor would stop, and the other consumers' cleanup would be abandoned mid-way; so the
#   consumer closes its socket with 4012, cleans up and ends normally ("quiet", with an idle
#   socket that never sent ``connect`` among them).
DAPHNE_REAP_DELAY = 2.5


@pytest.mark.parametrize("traffic", ["quiet", "busy"])
@pytest.mark.parametrize("layer", LAYERS)
async def test_sigterm_instance_closes_its_sockets_which_move_elsewhere(
    layer, traffic, cluster_factory, ws
):
    cluster: Cluster = await in_thread(cluster_factory, layer=layer)
    label = f"{layer}/{traffic}"
    room, other_room = uid("room"), uid("room2")
    victim_id, neighbour_id, survivor_id = uid("victim"), uid("neighbour"), uid("survivor")

    victim = await ws(cluster.urls[A], victim_id)
    await victim.subscribe(room)
    await victim.subscribe(other_room)
    neighbour = await ws(cluster.urls[A], neighbour_id)
    await neighbour.subscribe(room)
    idle = await ws(cluster.urls[A])  # a socket that never sent 'connect'
    survivor = await ws(cluster.urls[B], survivor_id)
    await survivor.subscribe(room)
    assert {p[1] for p in presences_of(cluster, victim_id)} == {"a"}
    assert len(instances_named(cluster, "a")) == 1
    if traffic == "quiet":
        await asyncio.sleep(DAPHNE_REAP_DELAY)
    else:
        await ws(cluster.urls[A], uid("newcomer"))

    proc = cluster[A].proc
    assert proc is not None
    started = time.monotonic()
    stop = asyncio.ensure_future(in_thread(cluster.terminate, A))
    codes = {}
    for name, client in (("victim", victim), ("neighbour", neighbour), ("idle", idle)):
        codes[name] = (await client.wait_closed(CLOSE_TIMEOUT), client.close_reason)
    closed_after = time.monotonic() - started
    await asyncio.wait_for(stop, 30)
    exited_after = time.monotonic() - started
    report(
        f"{label}: SIGTERM to A: its sockets closed after {closed_after:.3f}s with (code, reason) "
        f"{ {k: (int(c) if c is not None else None, r) for k, (c, r) in codes.items()} }; "
        f"daphne exited with {proc.returncode} after {exited_after:.2f}s"
    )
    assert proc.returncode == 0, (proc.returncode, cluster[A].log_tail(40))
    if traffic == "quiet":
        # daphne cancelled the consumers: each closed its socket with 4012 GOING_AWAY.
        assert {code for code, _ in codes.values()} == {4012}, codes
    else:
        # daphne's shutdown trigger failed (see above): no consumer ran, the TCP connections
        # just ended (1006), as docs/protocol.md says.
        assert {code for code, _ in codes.values()} == {1006}, codes
    report(f"{label}: the victim's last frames before the close: {victim.frames[-2:]}")
    report(f"{label}: daphne A at shutdown: {log_lines(cluster[A], 'Killed', 'hub stopped')}")

    # What the database says right after: are A's sockets still "online"?
    stale = presences_of(cluster, victim_id) + presences_of(cluster, neighbour_id)
    report(
        f"{label}: after the SIGTERM: presences left on A {stale}, instance rows named 'a' "
        f"{instances_named(cluster, 'a')}"
    )
    stale_instances = instances_named(cluster, "a")

    # They reconnect elsewhere at once and get their rooms back.
    moved = await ws(cluster.urls[B], victim_id)
    assert_connect_ack(moved.connect_ack, victim_id, [room, other_room])
    moved_neighbour = await ws(cluster.urls[B], neighbour_id)
    assert_connect_ack(moved_neighbour.connect_ack, neighbour_id, [room])
    ack = await survivor.publish(room, "after-sigterm")
    for client in (moved, moved_neighbour, survivor):
        assert (await next_with_payload(client, room, "after-sigterm"))["messageID"] == ack["id"]
    ack = await moved.publish(other_room, "other-room")
    assert (await moved.next_message(room=other_room))["messageID"] == ack["id"]

    # A starts again and is usable.
    await in_thread(cluster[A].start)
    back = await ws(cluster.urls[A], victim_id)
    assert_connect_ack(back.connect_ack, victim_id, [room, other_room])
    ack = await survivor.publish(room, "after-restart")
    for client in (back, moved, moved_neighbour, survivor):
        assert (await next_with_payload(client, room, "after-restart"))["messageID"] == ack["id"]
    ack = await back.publish(room, "from-restarted-a")
    for client in (back, moved, moved_neighbour, survivor):
        got = await next_with_payload(client, room, "from-restarted-a")
        assert got["messageID"] == ack["id"], got
    assert_no_app_crash(cluster)

    if traffic == "quiet":
        # daphne had time to cancel the consumers: they should have cleaned up on the way out
        # (ThinWSConsumer.__call__ says so), leaving nothing of A "online" in the database.
        assert (stale, stale_instances) == ([], []), (
            f"{label}: after a graceful SIGTERM, A's sockets {stale} and instance rows "
            f"{stale_instances} are still in the database"
        )
