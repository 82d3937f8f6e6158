"""``python -m thinws_channels.client``: connect, subscribe, send, and print room messages.

Room messages go to stdout as JSON lines; everything else (status, errors) to stderr. Exit
status: 0 done, 1 the server refused something or no connection could be made, 2 bad command
line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._core import ThinWSClient
from ._errors import ThinWSError
from ._events import CloseInfo
from ._wire import check_url


def _url(text: str) -> str:
    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds (a number >= 0), got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


EPILOG = """example:
  python -m thinws_channels.client ws://127.0.0.1:8000/ws/thinws/ me \\
      --subscribe lobby --send lobby '{"text": "hi"}' --listen

exit status: 0 done, 1 refused by the server or no connection, 2 bad command line"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m thinws_channels.client",
        description="Connect to a ThinWS server, subscribe, send, and print room messages as "
        "JSON lines on stdout (status goes to stderr).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", type=_url, help="for example ws://127.0.0.1:8000/ws/thinws/")
    p.add_argument("connection_id", help="the connectionID (its rooms are stored under it)")
    p.add_argument(
        "--fallback", type=_url, action="append", default=[], metavar="URL",
        help="another URL of the same service, tried in turn on reconnect (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--token", default=os.environ.get("THINWS_TOKEN"),
        help="a token from thinws_channels.tokens.issue_token (default: $THINWS_TOKEN)",
    )  # fmt: skip
    p.add_argument("--origin", help="the Origin header to send (none by default)")
    p.add_argument("--subscribe", nargs="+", default=[], metavar="ROOM", help="join these rooms")
    p.add_argument(
        "--unsubscribe", nargs="+", default=[], metavar="ROOM", help="then leave these rooms"
    )
    p.add_argument(
        "--send", nargs=2, action="append", default=[], metavar=("ROOM", "JSON"),
        help="publish a JSON payload to ROOM (repeatable; after --subscribe, before --unsubscribe)",
    )  # fmt: skip
    p.add_argument("--listen", action="store_true", help="print room messages until ^C")
    p.add_argument("--count", type=_count, metavar="N", help="with --listen: exit after N messages")
    p.add_argument(
        "--give-up-after", type=_seconds, default=30.0, metavar="SECONDS",
        help="give up after SECONDS without a connection, when connecting or reconnecting "
        "(default 30; 0: never)",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=_seconds, default=10.0, metavar="SECONDS",
        help="seconds to wait for each reply (default 10)",
    )  # fmt: skip
    return p


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[tuple[str, Any]]]:
    p = parser()
    args = p.parse_args(argv)
    if not args.connection_id:
        p.error("argument connection_id: must not be empty")
    if args.count is not None and not args.listen:
        p.error("argument --count: only with --listen")
    if args.timeout == 0:
        p.error("argument --timeout: must be above 0 seconds")
    sends = []
    for room, text in args.send:
        try:
            sends.append((room, json.loads(text)))
        except ValueError as exc:
            p.error(f"argument --send: {text!r} (for room {room!r}) is not valid JSON: {exc}")
    return args, sends


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _watch(client: ThinWSClient, reported: list[str]) -> None:
    """Status lines for what happens to the connection while the command runs; the server's
    errors are added to ``reported``, so that the one that ends the command is not said twice."""

    def opened(ack: dict[str, Any]) -> None:
        where = f" (instance {client.instance})" if client.instance else ""
        verb = "reconnected" if ack.get("reconnected") else "connected"
        _status(f"{verb} to {client.url}{where} as {client.connection_id!r}, rooms {client.rooms}")

    def closed(info: CloseInfo) -> None:
        if info["will_reconnect"]:
            _status(f"the socket closed ({info['code']}), reconnecting")

    client.on("open", opened)
    client.on("close", closed)

    def failed(error: ThinWSError) -> None:
        reported.append(str(error))
        _status(f"server error: {error}")

    client.on("error", failed)


async def _run(args: argparse.Namespace, sends: list[tuple[str, Any]]) -> int:
    client = ThinWSClient(
        [args.url, *args.fallback],
        args.connection_id,
        token=args.token,
        origin=args.origin,
        request_timeout=args.timeout,
        give_up_after=args.give_up_after or None,
    )
    reported: list[str] = []
    _watch(client, reported)
    try:
        await client.connect()
        for room in args.subscribe:
            await client.subscribe(room)
            _status(f"subscribed to {room!r}")
        for room, payload in sends:
            message_id = await client.publish(room, payload)
            _status(f"sent to {room!r}: {message_id}")
        for room in args.unsubscribe:
            await client.unsubscribe(room)
            _status(f"unsubscribed from {room!r}")
        if args.listen:
            _status("listening")
            seen = 0
            async for message in client.messages():
                print(json.dumps(message, ensure_ascii=False), flush=True)
                seen += 1
                if seen == args.count:
                    break
        await client.disconnect()
    except ThinWSError as exc:
        if str(exc) not in reported:
            _status(f"error: {exc}")
        return 1
    finally:
        await client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args, sends = _parse(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args, sends))
    return 130
