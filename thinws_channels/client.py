"""An asyncio client of the ThinWS protocol (``docs/protocol.md``), built on ``websockets``.

Install it with the ``client`` extra (``pip install thinws-channels[client]``)::

    async with ThinWSClient("wss://example.com/ws/thinws/", "device-7f3a") as client:
        await client.subscribe("lobby")
        message_id = await client.publish("lobby", {"text": "hi"})
        async for message in client.messages():
            print(message["roomID"], message["payload"])

Every call resolves on its ``ack`` and raises :class:`ThinWSError` (with the server's ``code``)
on its ``error``, or :class:`ThinWSTimeout` when no reply comes within ``request_timeout``
seconds of sending. The client reconnects by itself (exponential backoff with full jitter, capped;
at once after close 4012; never after close 1000 nor, without a ``token_provider``, after 4001),
sends ``connect`` again and takes its rooms from the ack. Calls made while it is offline are
queued, in order, up to ``queue_limit``, and sent after the next ``connect``; a call whose reply
was lost with the socket raises :class:`ThinWSClosed` (it is not sent again: a publish may have
gone through). The command line: ``python -m thinws_channels.client --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import sys
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Origin

from thinws_channels.protocol import CloseCode, ErrorCode

# The server closes a socket that sends more than about 90 frames at once (its rate limit's burst
# and close-after settings); a flushed queue must stay well below that.
MAX_QUEUE_LIMIT = 50
# Errors with ``"messageID": null`` that answer no frame: a close follows at once.
UNSOLICITED_FATAL = frozenset(
    {ErrorCode.FORBIDDEN, ErrorCode.LIMIT_EXCEEDED, ErrorCode.NOT_CONNECTED}
)
SEEN_MESSAGE_IDS = 4096  # how many server message ids are remembered to drop duplicates

Frame = dict[str, Any]
TokenProvider = Callable[[], Awaitable[str | None]]


class ThinWSError(Exception):
    """An ``error`` reply (``code`` is the server's code), or a client-side failure whose code is
    one of ``timeout``, ``closed``, ``queue_full``, ``not_connected``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ThinWSTimeout(ThinWSError, TimeoutError):
    """No reply within ``request_timeout`` seconds (also an ``asyncio.TimeoutError``)."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)


class ThinWSClosed(ThinWSError):
    """The socket closed before the reply came, or the client has stopped."""

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__("closed", message)
        self.close_code = close_code


@dataclass(eq=False)
class _Request:
    frame: Frame
    future: asyncio.Future[Frame]
    sent: asyncio.Event = field(default_factory=asyncio.Event)


_END: Frame = {}  # the end of the message stream


def _dumps(frame: Frame) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class ThinWSClient:
    """One logical connection (a connectionID) that outlives its sockets; see the module doc."""

    def __init__(
        self,
        url: str | Sequence[str],
        connection_id: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        request_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        queue_limit: int = MAX_QUEUE_LIMIT,
        reconnect: bool = True,
    ) -> None:
        if not 0 <= queue_limit <= MAX_QUEUE_LIMIT:
            raise ValueError(
                f"queue_limit must be 0..{MAX_QUEUE_LIMIT} (the server closes a socket that "
                f"sends ~90 frames at once), got {queue_limit!r}"
            )
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("url must be a URL or a non-empty list of URLs")
        self.connection_id = connection_id
        self.token = token
        self.token_provider = token_provider
        self.origin = origin
        self.headers = dict(headers or {})
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.queue_limit = queue_limit
        self.reconnect = reconnect
        self.url: str | None = None  # the URL of the current (or last) socket
        self.connect_ack: Frame | None = None
        self.state = "idle"  # idle, connected, reconnecting, closed
        self._rooms: dict[str, None] = {}  # an ordered set
        self._ids = itertools.count(1)
        self._url_index = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: OrderedDict[int, _Request] = OrderedDict()
        self._queue: deque[_Request] = deque()
        self._inbox: asyncio.Queue[Frame] = asyncio.Queue()
        self._seen: OrderedDict[object, None] = OrderedDict()
        self._fatal: ThinWSError | None = None  # the unsolicited error before a close
        self._stopping = False
        self._stop_error: ThinWSError | None = None

    # -- public API --------------------------------------------------------------------------
    @property
    def rooms(self) -> list[str]:
        """The rooms this connectionID is in, in the order they were joined."""
        return list(self._rooms)

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    async def __aenter__(self) -> ThinWSClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> Frame:
        """Open the first socket and send ``connect``; returns its ack. Tries each URL once and
        raises the last failure (a :class:`ThinWSError` when the server refused the connect)."""
        if self.state != "idle":
            raise ThinWSError("already_connected", f"the client is {self.state}")
        error: BaseException | None = None
        for _ in self.urls:
            try:
                ws = await self._open()
            except ThinWSError as exc:
                if exc.code == ErrorCode.FORBIDDEN:
                    raise
                error = exc
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                error = exc
            else:
                self._task = asyncio.create_task(self._supervise(ws))
                assert self.connect_ack is not None
                return self.connect_ack
        assert error is not None
        raise error

    async def subscribe(self, room_id: str) -> Frame:
        return await self._request({"type": "subscribe", "roomID": room_id})

    async def unsubscribe(self, room_id: str) -> Frame:
        return await self._request({"type": "unsubscribe", "roomID": room_id})

    async def publish(self, room_id: str, payload: Any) -> str:
        """Publish ``payload`` (any JSON value) to the room; returns the server's message id."""
        ack = await self._request({"type": "message", "roomID": room_id, "payload": payload})
        return str(ack.get("id"))

    async def disconnect(self) -> None:
        """Leave every room on this socket (they stay stored) and close; no reconnect follows."""
        if self.state != "connected":
            await self.close()
            return
        self._stopping = True
        try:
            await self._request({"type": "disconnect"})
            if self._task is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.request_timeout):
                        await asyncio.shield(self._task)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the socket without ``disconnect`` and stop reconnecting. Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._finish(None)

    async def messages(self) -> AsyncIterator[Frame]:
        """Room messages (dicts with roomID, payload, connectionID, messageID), duplicates
        dropped. Ends when the client is closed; raises the error that stopped it, if any."""
        while True:
            item = await self._inbox.get()
            if item is _END:
                self._inbox.put_nowait(_END)  # for other iterators
                if self._stop_error is not None:
                    raise self._stop_error
                return
            yield item

    # -- requests ----------------------------------------------------------------------------
    async def _request(self, frame: Frame) -> Frame:
        _dumps(frame)  # a payload that is not JSON fails here, not in the flush
        if self.state == "closed":
            raise self._stop_error or ThinWSClosed("the client is closed")
        if self.state == "idle":
            raise ThinWSError("not_connected", "call connect() first")
        request = _Request(frame, asyncio.get_running_loop().create_future())
        if self.state == "connected" and self._ws is not None:
            await self._send(self._ws, request)
        elif len(self._queue) >= self.queue_limit:
            raise ThinWSError(
                "queue_full", f"offline with {len(self._queue)} calls queued, the limit"
            )
        else:
            self._queue.append(request)
        await request.sent.wait()
        try:
            async with asyncio.timeout(self.request_timeout):
                return await request.future
        except TimeoutError:
            self._pending.pop(request.frame.get("messageID", -1), None)
            raise ThinWSTimeout(
                f"no reply to {frame['type']!r} within {self.request_timeout} s"
            ) from None

    async def _send(self, ws: ClientConnection, request: _Request) -> None:
        message_id = next(self._ids)
        request.frame["messageID"] = message_id
        self._pending[message_id] = request
        try:
            await ws.send(_dumps(request.frame))
        except ConnectionClosed:
            self._pending.pop(message_id, None)
            if not request.future.done():
                request.future.set_exception(ThinWSClosed("the socket closed before sending"))
        finally:
            request.sent.set()

    def _fail(self, requests: list[_Request], error: ThinWSError) -> None:
        for request in requests:
            if not request.future.done():
                request.future.set_exception(error)
                request.future.exception()  # nobody may be waiting any more: no warning
            request.sent.set()

    # -- sockets -----------------------------------------------------------------------------
    async def _open(self) -> ClientConnection:
        """One socket, ``connect`` sent and acked, the offline queue flushed."""
        url = self.urls[self._url_index % len(self.urls)]
        self._url_index += 1
        token = await self.token_provider() if self.token_provider else self.token
        ws = await connect(
            url,
            origin=Origin(self.origin) if self.origin else None,
            additional_headers=self.headers,
            open_timeout=self.request_timeout,
            max_size=2**21,
        )
        try:
            frame: Frame = {"type": "connect", "messageID": next(self._ids)}
            frame["connectionID"] = self.connection_id
            if token is not None:
                frame["token"] = token
            await ws.send(_dumps(frame))
            async with asyncio.timeout(self.request_timeout):
                while True:
                    reply = json.loads(await ws.recv())
                    if isinstance(reply, dict) and reply.get("type") in ("ack", "error"):
                        break
            if reply.get("type") == "error":
                raise ThinWSError(str(reply.get("code")), str(reply.get("message")))
            self.connect_ack = reply
            self._rooms = dict.fromkeys(reply.get("rooms") or [])
            self._ws, self.url, self._fatal = ws, url, None
            while self._queue:  # calls made meanwhile join the end of the queue
                await self._send(ws, self._queue.popleft())
            self.state = "connected"
            return ws
        except BaseException:
            self._ws = None
            await ws.close()
            raise

    async def _supervise(self, ws: ClientConnection) -> None:
        """Read the socket; when it closes, reconnect or stop as the close table says."""
        while True:
            code = await self._read(ws)
            self.state = "reconnecting"
            self._ws = None
            lost = ThinWSClosed(f"the socket closed with {code}", close_code=code)
            self._fail(list(self._pending.values()), lost)
            self._pending.clear()
            now = code == CloseCode.GOING_AWAY
            if self._stopping or not self.reconnect or code == CloseCode.NORMAL:
                self._finish(None if code == CloseCode.NORMAL else lost)
                return
            if code == CloseCode.REFUSED and self.token_provider is None:
                self._finish(self._fatal or ThinWSError("forbidden", "credentials refused (4001)"))
                return
            for attempt in itertools.count():
                if not now:
                    cap = min(self.backoff_max, self.backoff_initial * 2**attempt)
                    await asyncio.sleep(random.uniform(0, cap))
                now = False
                try:
                    ws = await self._open()
                    break
                except ThinWSError as exc:
                    if exc.code == ErrorCode.FORBIDDEN:
                        self._finish(exc)
                        return
                except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed, ValueError):
                    pass

    async def _read(self, ws: ClientConnection) -> int:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self._dispatch(raw)
        return ws.close_code or 1006

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind in ("ack", "error"):
            self._reply(frame)
        elif kind == "message":
            server_id = frame.get("messageID")
            if server_id in self._seen:
                return
            self._seen[server_id] = None
            if len(self._seen) > SEEN_MESSAGE_IDS:
                self._seen.popitem(last=False)
            self._inbox.put_nowait(frame)
        elif kind == "subscribed" and isinstance(frame.get("roomID"), str):
            self._rooms[frame["roomID"]] = None
        elif kind == "unsubscribed":
            self._rooms.pop(frame.get("roomID"), None)  # type: ignore[arg-type]

    def _reply(self, frame: Frame) -> None:
        message_id = frame.get("messageID")
        if frame["type"] == "error" and message_id is None:
            if frame.get("code") in UNSOLICITED_FATAL:
                self._fatal = ThinWSError(str(frame.get("code")), str(frame.get("message")))
                return
            if not self._pending:
                return
            message_id = next(iter(self._pending))  # the oldest request
        request = self._pending.pop(message_id, None)  # type: ignore[arg-type]
        if request is None or request.future.done():
            return
        if frame["type"] == "error":
            code, text = str(frame.get("code")), str(frame.get("message"))
            request.future.set_exception(ThinWSError(code, text))
            return
        kind, room = request.frame["type"], str(request.frame.get("roomID"))
        if kind == "subscribe":
            self._rooms[room] = None
        elif kind == "unsubscribe":
            self._rooms.pop(room, None)
        request.future.set_result(frame)

    def _finish(self, error: ThinWSError | None) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self._stop_error = error
        stopped = error or ThinWSClosed("the client is closed")
        self._fail(list(self._pending.values()) + list(self._queue), stopped)
        self._pending.clear()
        self._queue.clear()
        self._inbox.put_nowait(_END)


# -- command line ----------------------------------------------------------------------------


def _print(frame: Frame) -> None:
    print(json.dumps(frame, ensure_ascii=False), flush=True)


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _cli(args: argparse.Namespace) -> int:
    client = ThinWSClient(args.url, args.connection_id, token=args.token, origin=args.origin)
    try:
        ack = await client.connect()
        _status(f"connected to {client.url} as {args.connection_id!r}, rooms {ack.get('rooms')}")
        for room in args.subscribe:
            await client.subscribe(room)
            _status(f"subscribed to {room!r}")
        for room, text in args.send:
            message_id = await client.publish(room, json.loads(text))
            _status(f"sent to {room!r}: {message_id}")
        if args.listen:
            _status("listening")
            async for message in client.messages():
                _print(message)
        else:
            await client.disconnect()
    except ThinWSError as exc:
        _status(f"error: {exc}")
        return 1
    finally:
        await client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m thinws_channels.client",
        description="Connect to a ThinWS server, subscribe, send, and print room messages as "
        "JSON lines (status goes to stderr).",
    )
    parser.add_argument("url", help="for example ws://127.0.0.1:8000/ws/thinws/")
    parser.add_argument("connection_id")
    parser.add_argument("--token", help="a token from thinws_channels.tokens.issue_token")
    parser.add_argument("--origin", help="the Origin header to send")
    parser.add_argument("--subscribe", nargs="+", default=[], metavar="ROOM")
    parser.add_argument(
        "--send", nargs=2, action="append", default=[], metavar=("ROOM", "JSON"),
        help="publish a JSON payload to ROOM (repeatable)",
    )  # fmt: skip
    parser.add_argument("--listen", action="store_true", help="print room messages until ^C")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_cli(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
