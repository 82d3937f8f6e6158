"""Shared fixtures of the test suite.

Integration fixtures (real processes on 127.0.0.1, see tests/servers.py):

    redis_server      session: one private redis-server; its URL is ``redis_server.url``
    redis_factory     function: ``redis_factory()`` -> a new private RedisServer (fault tests
                      may kill/restart it without disturbing the shared one)
    cluster           module, parametrized over the channel layers "pubsub" and "core":
                      2 daphne instances of demo_project sharing redis_server and one SQLite file
    cluster_factory   function: ``cluster_factory(layer="pubsub", size=2, redis=None,
                      extra_env=None)`` -> a started Cluster of its own, stopped at teardown
    ws                function, async: ``await ws(url)`` -> an open ThinWSClient;
                      ``await ws(url, "conn-id")`` also sends ``connect`` (ack in ``.connect_ack``);
                      every client is closed at teardown

When a test fails, the tails of the logs of every live daphne process are added to its report.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.servers import LAYERS, Cluster, RedisServer
from tests.wsclient import ThinWSClient

_live_clusters: list[Cluster] = []
_redis_db = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long test, left out of the quick CI legs")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed and _live_clusters:
        for cluster in _live_clusters:
            report.sections.append(
                (f"daphne logs ({cluster.layer} cluster, {call.when})", cluster.log_tails(40))
            )
    return report


# -- redis -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The shared redis-server; ``redis_server.url`` is redis://127.0.0.1:PORT/0."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], RedisServer]]:
    """Private redis-servers for fault tests (kill / restart / pause them freely)."""
    servers: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis-private"))
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.resume()
            server.stop()


# -- daphne clusters -------------------------------------------------------------------------


def _start_cluster(tmp_path_factory: pytest.TempPathFactory, **kwargs) -> Cluster:
    cluster = Cluster(tmp_path_factory.mktemp(f"cluster-{kwargs.get('layer', 'pubsub')}"), **kwargs)
    cluster.start()
    _live_clusters.append(cluster)
    return cluster


def _stop_cluster(cluster: Cluster) -> None:
    try:
        cluster.stop()
    finally:
        if cluster in _live_clusters:
            _live_clusters.remove(cluster)


@pytest.fixture(scope="module", params=LAYERS)
def cluster(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """Two daphne instances (``cluster.urls[0]`` = A, ``[1]`` = B) on one channels-redis layer."""
    layer: str = request.param
    # A database of its own per cluster: the "core" layer keeps group state in it.
    redis_url = redis_server.url_for(next(_redis_db) % 16)
    cluster = _start_cluster(tmp_path_factory, redis_url=redis_url, layer=layer, size=2)
    try:
        yield cluster
    finally:
        _stop_cluster(cluster)


@pytest.fixture
def cluster_factory(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Cluster]]:
    """Clusters of a test's own (fault tests): ``cluster_factory(layer=..., redis=...)``."""
    made: list[Cluster] = []

    def make(
        layer: str = "pubsub",
        size: int = 2,
        redis: RedisServer | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Cluster:
        url = (redis or redis_server).url_for(next(_redis_db) % 16)
        cluster = _start_cluster(
            tmp_path_factory, redis_url=url, layer=layer, size=size, extra_env=extra_env
        )
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            _stop_cluster(cluster)


# -- clients ---------------------------------------------------------------------------------


@pytest.fixture
async def ws() -> AsyncIterator[Callable[..., object]]:
    """Factory of ThinWS clients, all closed at teardown."""
    clients: list[ThinWSClient] = []

    async def open_client(url: str, connection_id: str | None = None, **kwargs) -> ThinWSClient:
        client = await ThinWSClient.open(url, **kwargs)
        clients.append(client)
        client.connect_ack = None  # type: ignore[attr-defined]
        if connection_id is not None:
            client.connect_ack = await client.connect(connection_id)  # type: ignore[attr-defined]
        return client

    try:
        yield open_client
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def clients(transactional_db):
    """Sockets to the consumer on the in-memory layer (tests/consumer_kit.py); at the end every
    socket is closed, the hub has stopped and no group is left. test_consumer.py overrides this
    with a version parametrized over the three channel layers."""
    from tests.consumer_kit import Clients, hub, layer

    await layer().flush()
    made = Clients()
    try:
        yield made
    finally:
        await made.close_all()
    assert not hub().running
    assert layer().groups == {}
