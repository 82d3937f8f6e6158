"""Several instances behind a reverse proxy, as docs/deployment.md describes them.

- The configs docs/deployment.md shows are the templates of demo_project/deploy/ rendered for
  production, and nginx and HAProxy accept them (``nginx -t``, ``haproxy -c``), as they accept the
  loopback renderings the tests run.
- nginx and HAProxy in front of two real daphne processes (tests/servers.Cluster): the page
  loads, the client's address reaches the app through X-Forwarded-For (CLIENT_ADDRESS_HEADER),
  two clients on different instances chat, and a SIGTERM of one instance (a rolling restart)
  closes its sockets with 4012 and they reconnect through the proxy to the other one, rooms
  restored.
- ``demo_project/cluster.py``, as a user runs it: Redis, two daphne processes and nginx; the
  chat goes through nginx, a daphne killed is reported and its client reconnects to the other
  instance with its rooms; SIGTERM leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from demo_project import deployment
from tests import settings as test_settings
from tests.proxy import HAProxyProxy, NginxProxy, require_haproxy, require_nginx
from tests.requires import missing
from tests.servers import ROOT, Cluster, free_port, port_open, stop_process, wait_until
from tests.wsclient import ThinWSClient

pytestmark = pytest.mark.integration

DOCS = ROOT / "docs" / "deployment.md"
CLUSTER_SCRIPT = ROOT / "demo_project" / "cluster.py"
SCRIPT_START_TIMEOUT = 180.0  # migrations, collectstatic, two daphne processes, nginx
CLOSE_TIMEOUT = 30.0
# daphne reaps a WebSocket handshake's HTTP request within about a second; a SIGTERM before that
# ends its sockets with 1006 instead of 4012 (docs/protocol.md, tests/test_faults.py).
DAPHNE_REAP_DELAY = 2.5
# Where test clients connect from: the proxy sees this address, daphne only sees the proxy's.
CLIENT_ADDRESS = "127.0.0.7"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def in_thread(func: Any, *args: Any) -> Any:
    return asyncio.get_running_loop().run_in_executor(None, func, *args)


def http_get(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, str]:
    opener = opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return response.status, response.read().decode()


def fetch_token(base_url: str) -> dict[str, Any]:
    """The demo's /token/ view, with a session of its own: a new connectionID and its token."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(CookieJar())
    )
    status, body = http_get(base_url + "token/", opener)
    assert status == 200, body
    return json.loads(body)


def post_admin_login(base_url: str, origin: str) -> None:
    """Post the admin's login form as a browser would; CSRF must pass (a 403 raises)."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(CookieJar())
    )
    status, form = http_get(base_url + "admin/login/", opener)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert status == 200 and token, form[:500]
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token[1], "username": "nobody", "password": "wrong"}
    ).encode()
    request = urllib.request.Request(
        base_url + "admin/login/", data=data, headers={"Origin": origin}, method="POST"
    )
    with opener.open(request, timeout=30) as response:
        assert response.status == 200
        assert "correct username and password" in response.read().decode()


def presence(database: Path, connection_id: str) -> list[tuple[str, str]]:
    """(client address, instance name) of every live socket of ``connection_id``."""
    with contextlib.closing(sqlite3.connect(database, timeout=20)) as db:
        return db.execute(
            "SELECT p.client, i.name FROM thinws_channels_presence p"
            " JOIN thinws_channels_connection c ON p.connection_id = c.id"
            " JOIN thinws_channels_serverinstance i ON p.instance_id = i.id"
            " WHERE c.connection_id = ?",
            (connection_id,),
        ).fetchall()


async def open_on_other_instance(
    url: str, origin: str, avoid: str, connect: dict[str, Any], attempts: int = 20
) -> tuple[ThinWSClient, dict[str, Any]]:
    """A socket through the proxy whose connect ack names an instance other than ``avoid``.

    The proxy chooses the instance; new sockets are opened (and the others closed) until one
    lands elsewhere.
    """
    seen = []
    for _ in range(attempts):
        client = await ThinWSClient.open(url, origin=origin)
        ack = await client.ok({"type": "connect", **connect})
        if ack.get("instance") != avoid:
            return client, ack
        seen.append(ack.get("instance"))
        await client.close()
    raise AssertionError(f"{attempts} sockets all landed on {avoid!r}: {seen}")


async def next_with_payload(client: ThinWSClient, room: str, payload: Any) -> dict[str, Any]:
    """The next message in ``room`` carrying ``payload`` (earlier ones are skipped)."""
    while True:
        message = await client.next_message(room=room)
        if message.get("payload") == payload:
            return message


# -- the configs -----------------------------------------------------------------------------


def docs_block(heading: str) -> str:
    """The first fenced code block after the line ``heading`` in docs/deployment.md."""
    text = DOCS.read_text()
    start = text.index(heading + "\n")
    match = re.compile(r"^```[a-z]*\n(.*?)^```$", re.S | re.M).search(text, start)
    assert match, f"no code block after {heading!r} in {DOCS}"
    return match.group(1)


def test_docs_show_the_templates_rendered_for_production():
    assert docs_block("### The nginx config") == deployment.nginx_production_example()
    assert docs_block("### The HAProxy config") == deployment.haproxy_production_example()
    # And the loopback renderings come from the same templates.
    for line in ("proxy_next_upstream error timeout;", "proxy_read_timeout 1h;"):
        assert line in deployment.NGINX_TEMPLATE.read_text()
        assert line in docs_block("### The nginx config")


def test_render_names_a_missing_or_unknown_placeholder_and_a_bad_upstream():
    with pytest.raises(ValueError, match=r"missing values \['b'\].*placeholder \['c'\]"):
        deployment.render("{{ a }} {{ b }}", {"a": "1", "c": "3"})
    assert deployment.render("x\n    {{ a }}\n", {"a": "1\n2"}) == "x\n    1\n    2\n"
    with pytest.raises(ValueError, match="'localhost'"):
        deployment.nginx_site(["localhost"], listen=[], server_name="x", static_root="/x")
    with pytest.raises(ValueError, match="one or more"):
        deployment.haproxy_config([], listen=[], global_settings=[], server_name="x")


@pytest.fixture
def self_signed(tmp_path: Path) -> Path:
    """A directory with fullchain.pem, privkey.pem and both in one (HAProxy's crt)."""
    openssl = shutil.which("openssl")
    if not openssl:
        missing("openssl is missing (apt-get install openssl)")
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=chat.example.com",
         "-keyout", certs / "privkey.pem", "-out", certs / "fullchain.pem"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    combined = (certs / "fullchain.pem").read_text() + (certs / "privkey.pem").read_text()
    (certs / "combined.pem").write_text(combined)
    return certs


def test_nginx_accepts_the_loopback_and_the_production_config(tmp_path, self_signed):
    require_nginx()
    static = tmp_path / "static"
    static.mkdir()
    proxy = NginxProxy(tmp_path / "nginx", [free_port(), free_port()], static_root=static)
    proxy.write_config()
    assert "syntax is ok" in proxy.check()
    production = deployment.nginx_production_example(str(self_signed), str(static))
    assert "listen 443 ssl" in production
    assert "syntax is ok" in proxy.check(production)
    with pytest.raises(deployment.ProxyError, match="unknown directive"):
        proxy.check(production.replace("proxy_read_timeout", "proxy_read_timeuot"))


def test_haproxy_accepts_the_loopback_and_the_production_config(tmp_path, self_signed):
    require_haproxy()
    proxy = HAProxyProxy(tmp_path / "haproxy", [free_port(), free_port()])
    proxy.write_config()
    proxy.check()
    production = deployment.haproxy_production_example(str(self_signed / "combined.pem"))
    assert "ssl crt" in production
    proxy.check(production)
    with pytest.raises(deployment.ProxyError, match="timeuot"):
        proxy.check(production.replace("timeout tunnel", "timeuot tunnel"))


def test_missing_proxy_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(deployment.shutil, "which", lambda *a, **k: None)
    with pytest.raises(deployment.ProxyError, match=r"apt-get install nginx"):
        deployment.find_nginx()
    with pytest.raises(deployment.ProxyError, match=r"apt-get install haproxy"):
        deployment.find_haproxy()


# -- a proxy in front of tests/servers.Cluster -----------------------------------------------

PROXIES = {"nginx": (NginxProxy, require_nginx), "haproxy": (HAProxyProxy, require_haproxy)}


@pytest.mark.parametrize("kind", PROXIES)
async def test_proxy_in_front_of_two_instances(kind, cluster_factory, tmp_path):
    proxy_class, require = PROXIES[kind]
    require()
    profile = {**test_settings.PROTOCOL_TEST_PROFILE, "CLIENT_ADDRESS_HEADER": "X-Forwarded-For"}
    cluster: Cluster = await in_thread(
        lambda: cluster_factory(extra_env={"THINWS_SETTINGS": json.dumps(profile)})
    )
    proxy = proxy_class(tmp_path / kind, [inst.port for inst in cluster.instances])
    await in_thread(proxy.start)
    clients: list[ThinWSClient] = []
    try:
        status, page = await in_thread(http_get, proxy.url)
        assert status == 200 and "<html" in page

        # The client's own address reaches the app, not the proxy's; a forged X-Forwarded-For
        # sent by the client does not count (nginx appends, HAProxy replaces it).
        room, a_id, b_id = uid("room"), uid("a"), uid("b")
        a = await ThinWSClient.open(
            proxy.ws_url,
            origin=proxy.origin,
            local_addr=(CLIENT_ADDRESS, 0),
            additional_headers={"X-Forwarded-For": "203.0.113.9"},
        )
        clients.append(a)
        a_ack = await a.connect(a_id)
        assert presence(cluster.database_path, a_id) == [(CLIENT_ADDRESS, a_ack["instance"])]

        # Two clients on different instances chat through the proxy.
        b, b_ack = await open_on_other_instance(
            proxy.ws_url, proxy.origin, a_ack["instance"], {"connectionID": b_id}
        )
        clients.append(b)
        assert {a_ack["instance"], b_ack["instance"]} == {"a", "b"}
        await a.subscribe(room)
        await b.subscribe(room)
        sent = await a.publish(room, {"text": "hello"})
        assert (await b.next_message(room=room))["messageID"] == sent["id"]

        # A rolling restart, as docs/deployment.md describes it: drain b's instance at the
        # proxy, SIGTERM it: its socket closes with 4012, reconnects through the proxy at once,
        # lands on a's instance and finds its room.
        victim = cluster.NAMES.index(b_ack["instance"])
        victim_port = cluster[victim].port
        await in_thread(proxy.drain, victim_port)
        await asyncio.sleep(DAPHNE_REAP_DELAY)  # see DAPHNE_REAP_DELAY
        stop = asyncio.ensure_future(in_thread(cluster.terminate, victim))
        assert await b.wait_closed(CLOSE_TIMEOUT) == 4012
        b2 = await ThinWSClient.open(proxy.ws_url, origin=proxy.origin)
        clients.append(b2)
        moved = await b2.connect(b_id)
        assert moved["instance"] == a_ack["instance"]
        assert moved["rooms"] == [room]
        sent = await a.publish(room, {"text": "still here"})
        message = await next_with_payload(b2, room, {"text": "still here"})
        assert message["messageID"] == sent["id"]
        await stop

        # The instance comes back and takes new sockets again.
        await in_thread(cluster[victim].start)
        await in_thread(proxy.undrain, victim_port)
        c, c_ack = await open_on_other_instance(
            proxy.ws_url, proxy.origin, a_ack["instance"], {"connectionID": uid("c")}
        )
        clients.append(c)
        assert c_ack["instance"] == b_ack["instance"]
    finally:
        for client in clients:
            await client.close()
        await in_thread(proxy.stop)
    assert not proxy.running


@pytest.mark.slow  # 19 to 27 s: the health checks need a few rounds of 2 s each way
async def test_haproxy_health_check_takes_a_hung_instance_out(cluster_factory, tmp_path):
    require_haproxy()
    cluster: Cluster = await in_thread(cluster_factory)
    proxy = HAProxyProxy(tmp_path / "haproxy", [inst.port for inst in cluster.instances])
    await in_thread(proxy.start)
    hung = cluster[1]
    assert hung.pid is not None
    try:
        for inst in cluster.instances:
            await in_thread(wait_until, lambda i=inst: proxy.server_status(i.port) == "UP", 30)
        # A process that hangs still has its port open (the kernel accepts for it): only the
        # HTTP health check finds it.
        os.kill(hung.pid, signal.SIGSTOP)
        await in_thread(wait_until, lambda: proxy.server_status(hung.port) == "DOWN", 30)
        for _ in range(4):
            async with await ThinWSClient.open(proxy.ws_url, origin=proxy.origin) as client:
                assert (await client.connect(uid("c")))["instance"] == "a"
        os.kill(hung.pid, signal.SIGCONT)
        await in_thread(wait_until, lambda: proxy.server_status(hung.port) == "UP", 30)
    finally:
        os.kill(hung.pid, signal.SIGCONT)
        await in_thread(proxy.stop)


async def test_nginx_reload_points_new_sockets_at_other_instances(cluster_factory, tmp_path):
    require_nginx()
    cluster: Cluster = await in_thread(cluster_factory)
    proxy = NginxProxy(tmp_path / "nginx", [cluster[0].port])
    await in_thread(proxy.start)
    try:
        for _ in range(3):
            async with await ThinWSClient.open(proxy.ws_url, origin=proxy.origin) as client:
                assert (await client.connect(uid("c")))["instance"] == "a"
        await in_thread(proxy.reload, [cluster[1].port])
        for _ in range(3):
            async with await ThinWSClient.open(proxy.ws_url, origin=proxy.origin) as client:
                assert (await client.connect(uid("c")))["instance"] == "b"
    finally:
        await in_thread(proxy.stop)


# -- demo_project/cluster.py -----------------------------------------------------------------


class ScriptRun:
    """``python demo_project/cluster.py`` as a user starts it, with its output in files."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.stdout_path = workdir.parent / f"{workdir.name}.stdout"
        self.stderr_path = workdir.parent / f"{workdir.name}.stderr"
        run_env = dict(os.environ)
        for name in ("REDIS_URL", "THINWS_SETTINGS", "THINWS_INSTANCE", "DJANGO_SETTINGS_MODULE"):
            run_env.pop(name, None)
        run_env.update(env or {})
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CLUSTER_SCRIPT), "--no-venv", *args],
                cwd=ROOT,
                env=run_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )

    def wait_ready(self) -> dict[str, Any]:
        state_file = self.workdir / "cluster.json"
        wait_until(
            lambda: state_file.exists() or self.proc.poll() is not None,
            SCRIPT_START_TIMEOUT,
            what="demo_project/cluster.py to start",
        )
        assert self.proc.poll() is None, f"cluster.py exited early:\n{self.output()}"
        return json.loads(state_file.read_text())


@pytest.fixture
def script_run(tmp_path: Path) -> Iterator[list[ScriptRun]]:
    runs: list[ScriptRun] = []
    try:
        yield runs
    finally:
        for run in runs:
            stop_process(run.proc, timeout=60)


def session_members(sid: int) -> list[int]:
    """Live processes of the session ``sid`` (the supervisor's: every process it started)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == sid:
                    members.append(int(entry))
    return members


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
async def test_cluster_script_chat_through_nginx_survives_a_killed_instance(tmp_path, script_run):
    require_nginx()
    port = free_port()
    run = ScriptRun(
        tmp_path / "cluster",
        "--instances", "2", "--port", str(port), "--workdir", str(tmp_path / "cluster"),
        env={"DATABASE_PATH": str(tmp_path / "db.sqlite3")},
    )  # fmt: skip
    script_run.append(run)
    state = await in_thread(run.wait_ready)
    base, origin = state["url"], state["url"].rstrip("/")
    assert base == f"http://127.0.0.1:{port}/"
    assert [i["name"] for i in state["instances"]] == ["daphne-1", "daphne-2"]
    assert f"http://127.0.0.1:{port}/" in run.output()

    # The page, and static files that nginx serves from the collected files.
    status, page = await in_thread(http_get, base)
    assert status == 200 and "<html" in page
    status, css = await in_thread(http_get, base + "static/admin/css/base.css")
    assert status == 200 and "body" in css
    collected = tmp_path / "cluster" / "nginx" / "static"
    modules = sorted(collected.rglob("*.mjs"))
    assert modules, f"no .mjs file collected in {collected}"
    module_url = base + "static/" + modules[0].relative_to(collected).as_posix()
    with await in_thread(urllib.request.urlopen, module_url) as response:
        assert response.headers["Content-Type"] == "text/javascript"
    # A form post through nginx passes Django's CSRF origin check (Host keeps its port).
    await in_thread(post_admin_login, base, origin)

    # Two visitors, each with a token from the demo's /token/ view (the secure defaults), on
    # different instances, chat in a room.
    room = uid("lobby")
    a_creds, b_creds = await in_thread(fetch_token, base), await in_thread(fetch_token, base)
    clients: list[ThinWSClient] = []
    try:
        a = await ThinWSClient.open(state["ws_url"], origin=origin)
        clients.append(a)
        a_ack = await a.connect(a_creds["connectionID"], token=a_creds["token"])
        b, b_ack = await open_on_other_instance(
            state["ws_url"],
            origin,
            a_ack["instance"],
            {"connectionID": b_creds["connectionID"], "token": b_creds["token"]},
        )
        clients.append(b)
        assert {a_ack["instance"], b_ack["instance"]} == {"daphne-1", "daphne-2"}
        await a.subscribe(room)
        await b.subscribe(room)
        sent = await b.publish(room, {"text": "hi from b"})
        assert (await a.next_message(room=room))["messageID"] == sent["id"]

        # b's instance crashes; the script reports it, b reconnects through nginx to the
        # other instance and finds its room; the chat goes on.
        victim = next(i for i in state["instances"] if i["name"] == b_ack["instance"])
        os.kill(victim["pid"], signal.SIGKILL)
        await b.wait_closed(CLOSE_TIMEOUT)
        b2 = await ThinWSClient.open(state["ws_url"], origin=origin)
        clients.append(b2)
        moved = await b2.connect(b_creds["connectionID"], token=b_creds["token"])
        assert moved["instance"] == a_ack["instance"]
        assert moved["rooms"] == [room]
        sent = await a.publish(room, {"text": "welcome back"})
        assert (await next_with_payload(b2, room, {"text": "welcome back"}))["messageID"] == sent[
            "id"
        ]
        await in_thread(
            wait_until,
            lambda: f"{victim['name']} (pid {victim['pid']}" in run.output(),
            CLOSE_TIMEOUT,
            0.1,
            "the script to report the killed instance",
        )
    finally:
        for client in clients:
            await client.close()

    # SIGTERM: everything stops, nothing is left running.
    assert session_members(state["supervisor_pid"]), "the supervisor's session is empty already"
    run.proc.send_signal(signal.SIGTERM)
    code = await in_thread(lambda: run.proc.wait(60))
    assert code == 0, run.output()
    assert session_members(state["supervisor_pid"]) == [], run.output()
    assert not port_open(port)
    assert "cluster: stopped" in run.output()


def test_cluster_script_refuses_bad_arguments_and_a_taken_port(tmp_path, script_run):
    require_nginx()
    bad = ScriptRun(tmp_path / "bad", "--instances", "0")
    script_run.append(bad)
    assert bad.proc.wait(60) == 2
    assert "--instances must be between 1 and 32, not 0" in bad.output()

    with contextlib.closing(__import__("socket").socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = ScriptRun(tmp_path / "taken", "--port", str(port), "--workdir", str(tmp_path / "w"))
        script_run.append(run)
        assert run.proc.wait(60) == 1
    assert f"port {port} is taken on 127.0.0.1" in run.output()
    assert not (tmp_path / "w" / "cluster.json").exists()
