"""The chat demo in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright,
nginx in front of two daphne instances of demo_project sharing a real Redis, with the secure
default settings (each page gets its token from /token/).

Each visitor is a browser context of its own (own cookies, so own session and connectionID, and
own localStorage). The tests wait for what a person would see (Playwright's ``expect``, bounded
by generous timeouts), never for a fixed time. A run saves docs/img/demo.png, the README's
screenshot.

Skipped when /usr/bin/chromium or nginx is missing, except in CI (env CI=true), where that fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

from tests.proxy import NginxProxy, require_nginx
from tests.requires import missing
from tests.servers import ROOT, Cluster, RedisServer

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "docs" / "img" / "demo.png"
VIEWPORT = {"width": 1200, "height": 800}
# Bounds, not expectations: a reconnect through nginx after a crash takes a few seconds (nginx
# skips a failed daphne for 5 s, the client backs off with jitter).
TIMEOUT_MS = 60_000

# Markup that would run in the page if a message or a name were parsed as HTML.
XSS_TEXT = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'
XSS_NAME = "<b>Mallory</b>"
NO_INSTANCE = "\N{EN DASH}"  # what the page shows before its first connect ack


def require_chromium() -> Path:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
    missing(message)


# -- the servers and the browser -------------------------------------------------------------


@dataclass
class Stack:
    redis: RedisServer
    cluster: Cluster
    proxy: NginxProxy
    paused: set[int] = field(default_factory=set)

    def index_of(self, instance_name: str) -> int:
        names = [inst.name for inst in self.cluster.instances]
        assert instance_name in names, f"the page shows instance {instance_name!r}, not in {names}"
        return names.index(instance_name)

    def pause(self, i: int) -> None:
        """SIGSTOP instance ``i``: its sockets stay open, new requests to it wait unanswered."""
        pid = self.cluster.instances[i].pid
        assert pid is not None, f"instance {self.cluster.instances[i].name} is not running"
        os.kill(pid, signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i: int) -> None:
        pid = self.cluster.instances[i].pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self.paused.discard(i)

    def ensure_running(self) -> None:
        """Every instance up and answering again (after a test that paused or killed some)."""
        for i in list(self.paused):
            self.resume(i)
        for inst in self.cluster.instances:
            inst.start()  # a no-op when it runs

    def logs(self) -> str:
        return f"{self.cluster.log_tails(40)}\n{self.proxy.log_tail(20)}\n{self.redis.log_tail(10)}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, two daphne instances of the demo with the secure defaults, nginx in front."""
    require_nginx()
    require_chromium()
    workdir = tmp_path_factory.mktemp("browser")
    with contextlib.ExitStack() as stop:
        redis = RedisServer(workdir / "redis").start()
        stop.callback(redis.stop)
        # THINWS_SETTINGS "{}": the secure defaults (tokens, rate limits), not the test profile.
        cluster = Cluster(
            workdir / "cluster", redis_url=redis.url, extra_env={"THINWS_SETTINGS": "{}"}
        )
        cluster.start()
        stop.callback(cluster.stop)
        proxy = NginxProxy(workdir / "nginx", [inst.port for inst in cluster.instances]).start()
        stop.callback(proxy.stop)
        yield Stack(redis, cluster, proxy)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# -- visitors --------------------------------------------------------------------------------


@dataclass
class Visitor:
    """One person: a browser context of their own with the demo page open."""

    name: str
    context: BrowserContext
    page: Page
    label: str = ""  # in failure reports: which visitor, which tab
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def state(self) -> Locator:
        return self.page.get_by_test_id("state")

    @property
    def instance(self) -> Locator:
        return self.page.get_by_test_id("instance")

    def room(self, room: str) -> Locator:
        return self.page.locator(f'#rooms [data-testid="room"][data-room="{room}"]')

    def message(self, text: str) -> Locator:
        """The message items of the shown room whose text is exactly ``text``."""
        return self.page.get_by_test_id("message").filter(
            has=self.page.get_by_test_id("message-text").get_by_text(text, exact=True)
        )

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.get_by_test_id("name").fill(self.name)
        self.wait_connected()
        # A new visitor is put in the lobby; wait for the server's ack of that subscribe, or a
        # message sent to the lobby right after this returns could be relayed before it.
        expect(self.room("lobby")).to_be_visible()
        expect(self.room("lobby")).not_to_have_class(re.compile(r"\bjoining\b"))

    def wait_connected(self) -> None:
        expect(self.state).to_have_text("connected")
        expect(self.instance).not_to_have_text(NO_INSTANCE)

    def instance_name(self) -> str:
        self.wait_connected()
        return self.instance.inner_text()

    def land_on(self, instance: str, tries: int = 5) -> None:
        """Reload until the page's socket is on ``instance``: nginx (least_conn) gives a new
        socket to the instance that holds fewer, so one reload is usually enough."""
        for _ in range(tries):
            if self.instance_name() == instance:
                return
            self.page.reload()
        assert self.instance_name() == instance, f"{self.name} stays off instance {instance}"

    def join(self, room: str) -> None:
        self.page.get_by_test_id("room-input").fill(room)
        self.page.get_by_test_id("join-button").click()
        self.expect_in_room(room)

    def expect_in_room(self, room: str) -> None:
        expect(self.room(room)).to_be_visible()
        expect(self.room(room)).not_to_have_class(re.compile(r"\bjoining\b"))
        self.switch(room)

    def switch(self, room: str) -> None:
        self.room(room).get_by_test_id("room-switch").click()
        expect(self.page.get_by_test_id("active-room")).to_have_text(f"#{room}")

    def say(self, text: str, *, wait_ack: bool = True) -> None:
        self.page.get_by_test_id("text").fill(text)
        self.page.get_by_test_id("text").press("Enter")
        if wait_ack:
            self.expect_message(text, "you")

    def expect_message(self, text: str, who: str) -> None:
        """``text`` is shown once in the current room, from ``who``, acked (not greyed)."""
        item = self.message(text)
        expect(item).to_have_count(1)
        expect(item.locator(".who")).to_have_text(who)
        expect(item).not_to_have_class(re.compile(r"\b(queued|sending|failed)\b"))
        expect(item.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))

    def record_states(self) -> None:
        """From now on, remember every text the connection state shows (it may change faster
        than a test polls): read back with ``states()``."""
        self.page.evaluate(
            """() => {
                const node = document.getElementById("state");
                window.__states = [node.textContent];
                new MutationObserver(() => window.__states.push(node.textContent))
                    .observe(node, {childList: true, characterData: true, subtree: true});
            }"""
        )

    def states(self) -> list[str]:
        return list(self.page.evaluate("() => window.__states"))

    def watch(self) -> None:
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        self.page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def report(self) -> str:
        label = self.label or self.name
        lines = [f"--- {label}: page errors ---", *self.page_errors]
        lines += [f"--- {label}: console ---", *self.console]
        return "\n".join(lines)


class Visitors:
    """Makes visitors (``visitors("Alice")``) and closes them at the end of the test."""

    def __init__(self, browser: Browser, stack: Stack):
        self.browser = browser
        self.stack = stack
        self.made: list[Visitor] = []

    def __call__(self, name: str) -> Visitor:
        context = self.browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        return self._open(Visitor(name, context, context.new_page()))

    def another_tab(self, visitor: Visitor) -> Visitor:
        """A second page of the same visitor: same session, so the same connectionID."""
        page = visitor.context.new_page()
        return self._open(Visitor(visitor.name, visitor.context, page, f"{visitor.name}, tab 2"))

    def _open(self, visitor: Visitor) -> Visitor:
        visitor.watch()
        self.made.append(visitor)
        visitor.open(self.stack.proxy.url)
        return visitor

    def report(self) -> str:
        return "\n".join(v.report() for v in self.made) + "\n" + self.stack.logs()

    # A plugin for the duration of one test: when it fails, its report shows what the browsers
    # (console, uncaught errors) and the servers (logs) saw.
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report = yield
        if report.failed:
            report.sections.append((f"browsers and servers ({call.when})", self.report()))
        return report

    def close(self) -> None:
        for context in {id(v.context): v.context for v in self.made}.values():
            context.close()


@pytest.fixture
def visitors(request: pytest.FixtureRequest, browser: Browser, stack: Stack) -> Iterator[Visitors]:
    expect.set_options(timeout=TIMEOUT_MS)
    made = Visitors(browser, stack)
    request.config.pluginmanager.register(made)
    try:
        yield made
        for visitor in made.made:
            assert not visitor.page_errors, f"errors in a page of {visitor.name}\n{made.report()}"
    finally:
        request.config.pluginmanager.unregister(made)
        made.close()
        stack.ensure_running()


# -- the scenarios ---------------------------------------------------------------------------


def test_two_visitors_chat_through_nginx(visitors: Visitors) -> None:
    """Two people open the demo, pick names and chat both ways; each sees who said what.
    Saves the README's screenshot (docs/img/demo.png)."""
    alice = visitors("Alice")
    bob = visitors("Bob")
    assert (
        alice.page.get_by_test_id("cid").inner_text() != bob.page.get_by_test_id("cid").inner_text()
    )

    bob.say("Hi! Is anyone here?")
    alice.expect_message("Hi! Is anyone here?", "Bob")
    alice.say("Hi Bob. Try it: reload the page and your rooms come back.")
    bob.expect_message("Hi Bob. Try it: reload the page and your rooms come back.", "Alice")
    alice.say("Or stop the server this page is on: it moves to the other one.")
    bob.expect_message("Or stop the server this page is on: it moves to the other one.", "Alice")
    bob.say("And what I type while offline waits in a queue, greyed until the server has it.")
    alice.expect_message(
        "And what I type while offline waits in a queue, greyed until the server has it.", "Bob"
    )

    # Another room: Bob's message there shows as unread in Alice's room list.
    alice.join("tea")
    alice.join("books")
    bob.join("tea")
    alice.switch("lobby")
    bob.say("Tea at four?")
    expect(alice.room("tea").locator(".unread")).to_have_text("1")
    alice.switch("tea")
    alice.expect_message("Tea at four?", "Bob")
    expect(alice.room("tea").locator(".unread")).to_have_count(0)

    alice.switch("lobby")
    bob.say("Bring biscuits")
    expect(alice.room("tea").locator(".unread")).to_have_text("1")
    alice.page.get_by_test_id("text").fill("See you there")
    alice.page.mouse.move(0, 0)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    alice.page.screenshot(path=str(SCREENSHOT))


def test_reload_restores_rooms_from_the_server(visitors: Visitors) -> None:
    """A page reloads: its rooms come back from the server (the connect ack), it sends again."""
    alice = visitors("Alice")
    bob = visitors("Bob")
    alice.join("attic")
    alice.join("garden")
    bob.join("garden")
    alice.room("attic").get_by_test_id("room-leave").click()
    expect(alice.room("attic")).to_have_count(0)

    alice.page.reload()
    alice.wait_connected()
    # The rooms are known only to the server: the page keeps the name, not the rooms.
    expect(alice.room("garden")).to_be_visible()
    expect(alice.room("lobby")).to_be_visible()
    expect(alice.page.get_by_test_id("room")).to_have_count(2)  # not the attic, left before
    expect(alice.page.get_by_test_id("name")).to_have_value("Alice")
    # The page shows the room it showed before the reload.
    expect(alice.page.get_by_test_id("active-room")).to_have_text("#garden")

    alice.say("Back after a reload")
    bob.expect_message("Back after a reload", "Alice")
    bob.say("Welcome back")
    alice.expect_message("Welcome back", "Bob")


def test_two_tabs_of_one_visitor_share_their_rooms(visitors: Visitors) -> None:
    """Two tabs of one browser share a session, so a connectionID: a room joined or left in one
    shows in the other at once (the server's subscribed/unsubscribed notices), and what one tab
    sends shows in the other as "you"."""
    alice = visitors("Alice")
    tab = visitors.another_tab(alice)
    cid = alice.page.get_by_test_id("cid")
    expect(tab.page.get_by_test_id("cid")).to_have_text(cid.inner_text())
    alice.join("kitchen")
    expect(tab.room("kitchen")).to_be_visible()
    tab.switch("kitchen")
    alice.say("from the first tab")
    tab.expect_message("from the first tab", "you")
    tab.room("kitchen").get_by_test_id("room-leave").click()
    expect(alice.room("kitchen")).to_have_count(0)
    expect(alice.page.get_by_test_id("active-room")).to_have_text("#lobby")


def test_killed_instance_page_reconnects_to_the_other(visitors: Visitors, stack: Stack) -> None:
    """SIGKILL the daphne instance a page is on: the page shows it is reconnecting, queues what
    is typed meanwhile, lands on the other instance through nginx with its rooms, delivers the
    queued message, and the chat goes on. Then every instance restarts: the rooms come back.

    The other instance is paused (SIGSTOP) while the first dies, so that the page's reconnect
    through nginx waits on it: a window in which the page is surely offline, while Bob's socket
    to that instance stays open and gets the queued message once it answers again."""
    alice = visitors("Alice")
    bob = visitors("Bob")
    dead = stack.index_of(alice.instance_name())
    live = 1 - dead
    other = stack.cluster.instances[live].name
    bob.land_on(other)
    alice.join("ops")
    bob.join("ops")

    alice.record_states()
    stack.pause(live)
    stack.cluster.kill(dead)
    expect(alice.state).to_have_attribute("data-state", "reconnecting")
    alice.say("Typed while offline", wait_ack=False)
    queued = alice.message("Typed while offline")
    expect(queued).to_have_class(re.compile(r"\bqueued\b"))
    expect(queued.locator(".status")).to_have_text("queued")
    expect(alice.page.get_by_test_id("queued")).to_have_text("offline, 1 queued message")

    stack.resume(live)
    expect(alice.instance).to_have_text(other)
    alice.wait_connected()
    assert any(s.startswith("reconnecting (attempt 1") for s in alice.states()), alice.states()
    notice = f"Reconnected to instance {other}."
    expect(alice.page.get_by_test_id("messages")).to_contain_text(notice)
    # its rooms, restored by the other instance
    expect(alice.room("ops")).to_be_visible()
    expect(alice.room("lobby")).to_be_visible()
    alice.expect_message("Typed while offline", "you")  # acked: no longer greyed
    expect(alice.page.get_by_test_id("queued")).to_be_hidden()
    bob.expect_message("Typed while offline", "Alice")
    alice.say("Still here, now on the other instance")
    bob.expect_message("Still here, now on the other instance", "Alice")
    bob.say("Got it")
    alice.expect_message("Got it", "Bob")

    # Every instance down, then up again: the rooms come back from the database.
    stack.cluster.kill(live)
    expect(alice.state).to_have_attribute("data-state", "reconnecting")
    expect(bob.state).to_have_attribute("data-state", "reconnecting")
    stack.ensure_running()
    for visitor in (alice, bob):
        visitor.wait_connected()
        expect(visitor.room("ops")).to_be_visible()
        expect(visitor.room("lobby")).to_be_visible()
        expect(visitor.page.get_by_test_id("active-room")).to_have_text("#ops")
    alice.say("Both servers restarted")
    bob.expect_message("Both servers restarted", "Alice")
    bob.say("And we are still in ops")
    alice.expect_message("And we are still in ops", "Bob")


def test_messages_names_and_rooms_are_text_not_html(visitors: Visitors) -> None:
    """Markup in a message, a name or a room name shows as text; nothing of it is parsed."""
    mallory = visitors(XSS_NAME)
    bob = visitors("Bob")
    mallory.say(XSS_TEXT)
    bob.expect_message(XSS_TEXT, XSS_NAME)
    mallory.join("<i>room</i>")
    expect(mallory.page.get_by_test_id("active-room")).to_have_text("#<i>room</i>")
    for page in (mallory.page, bob.page):
        for selector in ("#messages img", "#messages script", "#messages b", "#rooms i", "h2 i"):
            expect(page.locator(selector)).to_have_count(0)
        assert page.evaluate("() => window.__xss") is None


def test_server_errors_are_shown(visitors: Visitors) -> None:
    """An error reply of the server reaches the person, readable, with its code."""
    alice = visitors("Alice")
    alice.page.get_by_test_id("room-input").fill("tab\there")
    alice.page.get_by_test_id("join-button").click()
    error = alice.page.get_by_test_id("error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Could not join #tab")
    expect(error).to_contain_text("control character")
    expect(error).to_contain_text("(invalid_envelope)")
    expect(alice.page.get_by_test_id("room")).to_have_count(1)  # the lobby only
    # the connection is fine: the chat goes on
    alice.say("still fine")
