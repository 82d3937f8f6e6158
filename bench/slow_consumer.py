#!/usr/bin/env python3
"""Slow consumers: which ASGI servers apply backpressure, and does MAX_SEND_BUFFER cut a socket
off on each of them?

For every server asked for (daphne, uvicorn with each of its WebSocket implementations,
hypercorn), this starts one process on a free loopback port and runs:

1. **the send probe** (``bench/send_probe.py``, a bare ASGI app): the client reads nothing, the
   app sends 20,000 frames of 1 KiB and times each ``await send(...)``. If one waits over a
   second, the server applies backpressure; if all return at once, it buffers without bound.
2. **the cut-off**, once per MAX_SEND_BUFFER setting (1 MiB and None by default), with the demo
   project on the in-memory layer: a raw TCP client with a small SO_RCVBUF connects, subscribes
   to a room and then never reads; a healthy reader (websockets) and a publisher are in the same
   room; the publisher sends ``-n`` messages of ``-s`` bytes with up to ``-W`` un-acked. Recorded:
   whether the server logged "reads too slowly" and when, the server's peak RSS growth, whether
   the healthy reader got every message in order, and what the stalled client finds when it
   finally reads (room messages, then a close frame 4008, or the end of the TCP connection).

One JSON line per run is printed and appended to ``--out`` (default
``bench/results/<date>-slow-consumer.jsonl``). With the defaults it takes about three minutes:

    python bench/slow_consumer.py
    python bench/slow_consumer.py --servers daphne,hypercorn --limits 1048576 -n 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from bench import rawws  # noqa: E402
from bench.asgi_servers import SERVERS, RssSampler, ServerProcess  # noqa: E402
from tests.servers import HOST, WS_PATH, demo_env, migrate  # noqa: E402

APPS = {"demo": "demo_project.asgi:application", "bench": "bench.asgi:application"}
MIB = 1024 * 1024


def mib(n: float) -> float:
    return round(n / MIB, 1)


# -- 1. the send probe ------------------------------------------------------------------------


def run_probe(server: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    env = demo_env(PROBE_FRAMES=str(args.messages), PROBE_SIZE=str(args.size))
    srv = ServerProcess(
        server, "bench.send_probe:application", env, workdir / f"probe-{server}.log"
    )
    srv.start()
    try:
        base = srv.rss()
        client = rawws.handshake(HOST, srv.port, "/", rcvbuf=args.rcvbuf)
        client.sock.sendall(rawws.encode_frame("go"))
        deadline = time.monotonic() + 60
        while not srv.lines("SEND-PROBE") and time.monotonic() < deadline:
            time.sleep(0.05)
        found = srv.lines("SEND-PROBE")
        if not found:
            raise RuntimeError(f"{server}: the send probe printed nothing\n{srv.tail()}")
        result = json.loads(found[0][1].split("SEND-PROBE ", 1)[1])
        result["rss_growth_mib"] = mib(srv.rss() - base)
        client.close()
    finally:
        srv.stop()
    return {"bench": "slow-consumer", "run": "send-probe", "server": server, **result}


# -- 2. the cut-off ---------------------------------------------------------------------------


async def request(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(frame))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if reply.get("type") in ("ack", "error") and reply.get("messageID") == frame["messageID"]:
            if reply["type"] == "error":
                raise RuntimeError(f"{frame['type']} refused: {reply}")
            return reply


async def join(ws: ClientConnection, connection_id: str, room: str) -> None:
    await request(ws, {"type": "connect", "messageID": 1, "connectionID": connection_id})
    await request(ws, {"type": "subscribe", "messageID": 2, "roomID": room})


class Reader:
    """Counts a healthy socket's room messages and checks their order."""

    def __init__(self, ws: ClientConnection, expected: int) -> None:
        self.ws = ws
        self.expected = expected
        self.received = 0
        self.in_order = True
        self.closed_with: int | None = None
        self.done = asyncio.Event()
        self.last_at = 0.0

    async def run(self, on_reply: Any = None) -> None:
        last = -1
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "message":
                    seq = frame["payload"]["seq"]
                    self.in_order = self.in_order and seq == last + 1
                    last = seq
                    self.received += 1
                    self.last_at = time.monotonic()
                    if self.received == self.expected:
                        self.done.set()
                elif on_reply is not None:
                    on_reply(frame)
        except Exception:
            pass
        self.closed_with = self.ws.close_code
        self.done.set()


def drain_stalled(client: rawws.FrameReader, idle: float, limit: float) -> dict[str, Any]:
    """Read what the stalled client was sent: room messages, then a close frame, or EOF."""
    client.sock.settimeout(idle)
    messages, close_code, eof = 0, None, False
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit:
            opcode, payload = client.frame()
            if opcode == rawws.OP_CLOSE:
                close_code = rawws.close_code(payload)
                break
            if opcode == rawws.OP_TEXT and b'"type":"message"' in payload:
                messages += 1
    except EOFError:
        eof = True
    except TimeoutError:
        pass
    except OSError:  # reset
        eof = True
    if close_code is not None and not eof:  # does the server end the TCP connection now?
        client.sock.settimeout(3)
        try:
            while True:
                client.frame()
        except (EOFError, ConnectionError):
            eof = True
        except OSError:  # timed out: still open
            pass
    return {
        "messages_read": messages,
        "bytes_read_mib": mib(client.bytes_read),
        "close_code": close_code,
        "tcp_closed": eof,
        "read_s": round(time.monotonic() - started, 2),
    }


async def run_cutoff(
    server: str, app: str, limit: int | None, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    settings = {"ANONYMOUS": "open", "RATE_LIMIT": None, "MAX_SEND_BUFFER": limit}
    env = demo_env(
        DATABASE_PATH=str(workdir / "bench.sqlite3"),
        DJANGO_SETTINGS_MODULE="demo_project.settings",
        DJANGO_DEBUG="0",
        THINWS_SETTINGS=json.dumps(settings),
    )
    label = f"{server}-{app}-{limit}"
    srv = ServerProcess(server, APPS[app], env, workdir / f"{label}.log")
    srv.start()
    run = uuid.uuid4().hex[:8]
    room = f"slow-{run}"
    url = f"ws://{HOST}:{srv.port}{WS_PATH}"
    opts = {"origin": srv.url_origin, "max_size": None, "compression": None, "ping_interval": None}
    try:
        stalled = rawws.handshake(
            HOST, srv.port, WS_PATH, rcvbuf=args.rcvbuf, origin=srv.url_origin
        )
        stalled.request({"type": "connect", "messageID": 1, "connectionID": f"stalled-{run}"})
        stalled.request({"type": "subscribe", "messageID": 2, "roomID": room})
        stalled_port = stalled.sock.getsockname()[1]
        async with connect(url, **opts) as healthy_ws, connect(url, **opts) as pub_ws:
            await join(healthy_ws, f"healthy-{run}", room)
            await join(pub_ws, f"publisher-{run}", room)
            healthy = Reader(healthy_ws, args.messages)
            echo = Reader(pub_ws, args.messages)
            window = asyncio.Semaphore(args.window)
            replies = {"ack": 0, "error": 0}

            def on_reply(frame: dict[str, Any]) -> None:
                if frame.get("type") in replies:
                    replies[frame["type"]] += 1
                    window.release()

            tasks = [
                asyncio.ensure_future(healthy.run()),
                asyncio.ensure_future(echo.run(on_reply)),
            ]
            base_rss, base_hwm = srv.rss(), srv.peak_rss()
            pad = "x" * args.size
            with RssSampler(srv) as sampler:
                started = time.monotonic()
                for i in range(args.messages):
                    await window.acquire()
                    frame = {"type": "message", "messageID": 10 + i, "roomID": room,
                             "payload": {"seq": i, "pad": pad}}  # fmt: skip
                    await pub_ws.send(json.dumps(frame))
                while sum(replies.values()) < args.messages and echo.closed_with is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                published = time.monotonic()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(healthy.done.wait(), args.drain_timeout)
                await asyncio.sleep(args.settle)
            end_rss = srv.rss()
            peak = max(sampler.peak, srv.peak_rss() if srv.peak_rss() > base_hwm else 0)
            cut = srv.lines("reads too slowly")
            state_before = srv.connection_state(stalled_port)
            stalled_result = drain_stalled(stalled, args.idle, 60)
            await asyncio.sleep(1)
            state_after = srv.connection_state(stalled_port)
            stalled.close()
            for task in tasks:
                task.cancel()
    finally:
        srv.stop()
    publish_s = published - started
    return {
        "bench": "slow-consumer",
        "run": "cut-off",
        "server": server,
        "app": app,
        "max_send_buffer": limit,
        "messages": args.messages,
        "size": args.size,
        "window": args.window,
        "rcvbuf": args.rcvbuf,
        "publish_s": round(publish_s, 2),
        "publish_per_s": round(args.messages / publish_s),
        "acks": replies["ack"],
        "errors": replies["error"],
        "healthy_received": healthy.received,
        "healthy_in_order": healthy.in_order,
        "healthy_all": healthy.received == args.messages and healthy.in_order,
        "healthy_done_s": round(healthy.last_at - started, 2) if healthy.received else None,
        "publisher_echoes": echo.received,
        "cut_off_logged": len(cut),
        "cut_off_after_s": round(cut[0][0] - started, 3) if cut else None,
        "cut_off_line": cut[0][1][:200] if cut else None,
        "rss_base_mib": mib(base_rss),
        "rss_peak_growth_mib": mib(peak - base_rss),
        "rss_end_growth_mib": mib(end_rss - base_rss),
        "stalled_tcp_before_read": state_before,
        "stalled": stalled_result,
        "stalled_tcp_after_read": state_after,
    }


def summary(rows: list[dict[str, Any]]) -> None:
    print("\nserver | app | MAX_SEND_BUFFER | cut off after | RSS peak growth | healthy got all"
          " | stalled read: messages, close code, TCP", file=sys.stderr)  # fmt: skip
    for r in rows:
        if r["run"] == "send-probe":
            print(f"{r['server']} | send probe | blocked={r['blocked']} after "
                  f"{r['sent_before_block']} frames, longest send {r['longest_send_ms']} ms, "
                  f"RSS +{r['rss_growth_mib']} MiB", file=sys.stderr)  # fmt: skip
            continue
        s = r["stalled"]
        print(f"{r['server']} | {r['app']} | {r['max_send_buffer']} | {r['cut_off_after_s']} s | "
              f"{r['rss_peak_growth_mib']} MiB | {r['healthy_all']} ({r['healthy_received']}) | "
              f"{s['messages_read']}, {s['close_code']}, {r['stalled_tcp_before_read']}->"
              f"{r['stalled_tcp_after_read']}", file=sys.stderr)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated: " + ", ".join(SERVERS)
    )
    ap.add_argument(
        "--apps",
        default="demo",
        help="demo (demo_project.asgi, AuthMiddlewareStack) and/or bench (bench.asgi, without)",
    )
    ap.add_argument(
        "--limits", default="1048576,none", help="MAX_SEND_BUFFER values; none = no limit"
    )
    ap.add_argument("-n", "--messages", type=int, default=10_000)
    ap.add_argument("-s", "--size", type=int, default=1024, help="payload bytes per message")
    ap.add_argument("-W", "--window", type=int, default=50, help="un-acked messages in flight")
    ap.add_argument("--rcvbuf", type=int, default=4096, help="SO_RCVBUF of the stalled client")
    ap.add_argument(
        "--settle", type=float, default=2.0, help="seconds to wait after the healthy reader is done"
    )
    ap.add_argument("--drain-timeout", type=float, default=20.0)
    ap.add_argument(
        "--idle",
        type=float,
        default=3.0,
        help="the stalled client stops reading after this many quiet seconds",
    )
    ap.add_argument(
        "--keep-logs",
        default="",
        help="write the server logs to this directory (default: a temporary one)",
    )
    ap.add_argument("--no-probe", action="store_true", help="skip the send probe")
    ap.add_argument(
        "--out",
        default=str(
            ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-slow-consumer.jsonl"
        ),
    )
    args = ap.parse_args()  # fmt: skip

    limits = [
        None if v.strip().lower() in ("none", "null") else int(v) for v in args.limits.split(",")
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="thinws-slow-") as tmp:
        tmp = args.keep_logs or tmp
        workdir = Path(tmp)
        migrate(workdir / "bench.sqlite3", workdir / "migrate.log")
        for server in args.servers.split(","):
            runs: list[Any] = [] if args.no_probe else [("probe",)]
            runs += [(app, limit) for app in args.apps.split(",") for limit in limits]
            for spec in runs:
                try:
                    if spec == ("probe",):
                        row = run_probe(server, args, workdir)
                    else:
                        row = asyncio.run(run_cutoff(server, spec[0], spec[1], args, workdir))
                except Exception as exc:  # one server failing must not lose the others' rows
                    row = {
                        "bench": "slow-consumer",
                        "server": server,
                        "spec": list(spec),
                        "failed": repr(exc),
                    }
                row["date"] = time.strftime("%Y-%m-%d")
                rows.append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    summary([r for r in rows if "failed" not in r])


if __name__ == "__main__":
    main()
