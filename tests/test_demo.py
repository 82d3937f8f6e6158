"""The demo's server side: its views with Django's test client, its static files under daphne.

The chat itself (demo_project/static/demo/chat.js) runs in a real browser in test_browser.py.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings

from tests.servers import HOST, ROOT, DaphneInstance, demo_env, free_port
from thinws_channels.exceptions import Forbidden
from thinws_channels.tokens import read_token

DEMO_TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [ROOT / "templates"],
        "APP_DIRS": True,
    }
]
CHAT_JS = ROOT / "demo_project" / "static" / "demo" / "chat.js"

demo_urls = override_settings(ROOT_URLCONF="demo_project.urls", TEMPLATES=DEMO_TEMPLATES)


@pytest.fixture
def client(db) -> Client:
    return Client()


# -- index -----------------------------------------------------------------------------------


@demo_urls
@override_settings(THINWS_CHANNELS={"INSTANCE_NAME": "blue-7"})
def test_index_is_the_chat_page(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200, response
    html = response.content.decode()
    # the elements chat.js and the browser tests rely on
    for element_id in ("state", "queued", "instance", "name", "rooms", "join", "room-input",
                       "room-title", "error", "messages", "compose", "text", "cid"):  # fmt: skip
        assert f'id="{element_id}"' in html, element_id
    # the client, then the demo's script and style, from /static/
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/static/thinws_channels/thinws.js", "/static/demo/chat.js"], scripts
    assert 'href="/static/demo/chat.css"' in html
    # accessible: every input has a label, new messages are announced
    for input_id in re.findall(r'<input id="([^"]+)"', html):
        assert f'<label for="{input_id}"' in html, f"input #{input_id} has no label"
    assert re.search(r'<ol id="messages"[^>]* aria-live="polite"', html), html
    assert 'role="alert"' in html
    # which instance served the page (the socket's instance is shown from the connect ack)
    assert "<strong>blue-7</strong>" in html


@demo_urls
@override_settings(THINWS_CHANNELS={})
def test_index_without_an_instance_name(client: Client) -> None:
    assert "This page came from an unnamed instance." in client.get("/").content.decode()


@demo_urls
@override_settings(THINWS_CHANNELS={"INSTANCE_NAME": "<b>x</b>"})
def test_index_escapes_the_instance_name(client: Client) -> None:
    html = client.get("/").content.decode()
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_chat_js_never_writes_html() -> None:
    """chat.js puts user data in the page with textContent only (the browser test sends markup
    and checks it shows as text); this keeps HTML-writing APIs out of the file altogether."""
    source = CHAT_JS.read_text()
    for api in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert api not in source, f"{CHAT_JS.name} uses {api}"


# -- /token/ ---------------------------------------------------------------------------------


@demo_urls
def test_token_names_a_connection_kept_in_the_session(client: Client) -> None:
    first = client.get("/token/")
    assert first.status_code == 200, first
    assert "no-store" in first["Cache-Control"], first["Cache-Control"]
    grant = first.json()
    cid = grant["connectionID"]
    assert re.fullmatch(r"web-[0-9a-f]{24}", cid), cid
    claims = read_token(grant["token"], cid)
    assert claims.connection_id == cid
    assert claims.user_id is None
    assert claims.rooms is None  # the demo lets its visitors join any room
    assert claims.expires_at - time.time() == pytest.approx(grant["expiresIn"], abs=60)

    # A reconnect fetches a fresh token for the same connectionID: the rooms stay.
    again = client.get("/token/").json()
    assert again["connectionID"] == cid
    read_token(again["token"], cid)

    # Another visitor (another session) gets a connectionID of their own.
    other = Client().get("/token/").json()
    assert other["connectionID"] != cid


@demo_urls
def test_token_of_one_visitor_is_refused_for_another_connection(client: Client) -> None:
    grant = client.get("/token/").json()
    with pytest.raises(Forbidden):
        read_token(grant["token"], grant["connectionID"] + "x")


# -- static files under daphne ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneInstance]:
    """One daphne process of the demo, DEBUG off, no collectstatic (the in-memory layer)."""
    workdir: Path = tmp_path_factory.mktemp("demo-static")
    env = demo_env(DJANGO_DEBUG="0", DATABASE_PATH=str(workdir / "db.sqlite3"))
    server = DaphneInstance("static", free_port(), workdir, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(server: DaphneInstance, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"{HOST}:{server.port}"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "source", "content_type"),
    [
        ("/static/demo/chat.js", "demo_project/static/demo/chat.js", "javascript"),
        ("/static/demo/chat.css", "demo_project/static/demo/chat.css", "text/css"),
        (
            "/static/thinws_channels/thinws.js",
            "thinws_channels/static/thinws_channels/thinws.js",
            "javascript",
        ),
    ],
)
def test_daphne_serves_the_static_files(
    demo_server: DaphneInstance, path: str, source: str, content_type: str
) -> None:
    status, ctype, body = get(demo_server, path)
    assert status == 200, (path, status, body[:200], demo_server.log_tail())
    assert content_type in ctype, (path, ctype)
    assert body == (ROOT / source).read_bytes()


def test_daphne_answers_404_for_a_missing_static_file(demo_server: DaphneInstance) -> None:
    status, _, _ = get(demo_server, "/static/demo/missing.js")
    assert status == 404


def test_daphne_serves_the_page(demo_server: DaphneInstance) -> None:
    status, ctype, body = get(demo_server, "/")
    assert status == 200, (status, body[:300], demo_server.log_tail())
    assert "text/html" in ctype
    assert b'<script src="/static/demo/chat.js">' in body
