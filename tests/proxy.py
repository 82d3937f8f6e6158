"""Reverse proxies for the tests: nginx (and HAProxy) on loopback in front of daphne processes.

The proxies and their configs live in ``demo_project/deployment.py``, shared with
``demo_project/cluster.py``; the configs are rendered from the templates that
docs/deployment.md shows, so the tests run the documented config.

    cluster = Cluster(tmp_dir, redis_url=redis.url)       # tests/servers.py
    cluster.start()
    with NginxProxy(tmp_dir / "nginx", [i.port for i in cluster.instances]) as proxy:
        proxy.url       # http://127.0.0.1:PORT/   (the demo page)
        proxy.ws_url    # ws://127.0.0.1:PORT/ws/thinws/
        proxy.origin    # http://127.0.0.1:PORT    (the Origin a page of it sends)
        cluster.kill(0) # new handshakes through the proxy land on instance 1
        proxy.drain(port); proxy.undrain(port)  # no new sockets to that daphne, and back
        proxy.reload(ports)                     # other daphne processes
        proxy.log_tail()

``HAProxyProxy`` has the same interface (no static files; its ``reload`` restarts it).

``require_nginx()`` / ``require_haproxy()`` return the binary, or skip the test when it is missing,
except in CI (env CI=true), where a missing binary fails the test with a clear message.
"""

from __future__ import annotations

from demo_project.deployment import (
    HAProxyProxy,
    NginxProxy,
    ProxyError,
    find_haproxy,
    find_nginx,
)
from tests.requires import missing

__all__ = [
    "HAProxyProxy",
    "NginxProxy",
    "ProxyError",
    "find_haproxy",
    "find_nginx",
    "require_haproxy",
    "require_nginx",
]


def _require(find) -> str:  # type: ignore[no-untyped-def]
    try:
        return str(find())
    except ProxyError as exc:
        missing(str(exc))


def require_nginx() -> str:
    """The nginx binary; skips the test without one (fails in CI)."""
    return _require(find_nginx)


def require_haproxy() -> str:
    """The haproxy binary; skips the test without one (fails in CI)."""
    return _require(find_haproxy)
