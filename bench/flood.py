#!/usr/bin/env python3
"""A flooding socket under the default rate limit, and what its neighbour notices.

Starts one daphne process of the demo project (in-memory layer by default, or a private Redis
with ``--layer pubsub|core``) with ``THINWS_SETTINGS='{"ANONYMOUS": "open"}'``: every limit at
its default (RATE_LIMIT 30 frames/s, RATE_BURST 60, RATE_LIMIT_CLOSE_AFTER 30). Then it
alternates two kinds of phase, ``--phase-seconds`` each:

- **quiet**: only the neighbour, a well-behaved socket, publishes in its room ``--ping-rate``
  times a second and times the round trip to its own copy of each message (its ack too);
- **flood**: the same, while another process floods: a raw client connects, subscribes to a room
  of its own and writes ``message`` frames as fast as the socket takes them, without waiting for
  replies, until the server closes it; then it reconnects and floods again, for the whole phase.

Per flood socket it records how many frames were acted on (acked) before the first
``rate_limited`` error and in all, how many were refused, the close code and how long after the
first flood frame the close frame and the end of the TCP connection came. Per phase: the
neighbour's round trips (p50, p99, max, lost) and the server's CPU time. One JSON line per phase
is printed and appended to ``--out`` (default ``bench/results/<date>-flood.jsonl``).

    python bench/flood.py                       # about 50 s
    python bench/flood.py --layer pubsub --rounds 1 --phase-seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from bench import rawws  # noqa: E402
from bench.asgi_servers import ServerProcess  # noqa: E402
from tests.servers import HOST, WS_PATH, RedisServer, demo_env, migrate  # noqa: E402

# -- the flooder (a process of its own, so that its busy loop does not slow the neighbour) ----


def flood_one(port: int, origin: str, limit: float, batch: int) -> dict[str, Any]:
    """One socket: connect, subscribe, then write message frames until the server closes it."""
    run = uuid.uuid4().hex[:8]
    room = f"flood-{run}"
    client = rawws.handshake(HOST, port, WS_PATH, origin=origin)
    client.request({"type": "connect", "messageID": 1, "connectionID": f"flood-{run}"})
    client.request({"type": "subscribe", "messageID": 2, "roomID": room})
    stats: dict[str, Any] = {
        "acked": 0,
        "acked_before_rate_limited": None,
        "rate_limited": 0,
        "other_errors": 0,
        "first_ack_ms": None,
        "ack_60_ms": None,
        "last_ack_ms": None,
        "first_rate_limited_ms": None,
        "close_code": None,
        "close_after_ms": None,
        "tcp_closed_after_ms": None,
    }
    stop = threading.Event()
    started = time.monotonic()

    def read() -> None:
        client.sock.settimeout(0.5)
        while not stop.is_set():
            try:
                opcode, payload = client.frame()
            except TimeoutError:
                continue
            except (EOFError, OSError):
                stats["tcp_closed_after_ms"] = round((time.monotonic() - started) * 1000, 1)
                return
            if opcode == rawws.OP_CLOSE:
                stats["close_code"] = rawws.close_code(payload)
                stats["close_after_ms"] = round((time.monotonic() - started) * 1000, 1)
                continue
            if opcode != rawws.OP_TEXT:
                continue
            frame = json.loads(payload)
            now = round((time.monotonic() - started) * 1000, 1)
            if frame.get("type") == "ack":
                stats["acked"] += 1
                stats["last_ack_ms"] = now
                if stats["acked"] == 1:
                    stats["first_ack_ms"] = now
                elif stats["acked"] == 60:
                    stats["ack_60_ms"] = now
            elif frame.get("type") == "error":
                if frame.get("code") == "rate_limited":
                    if stats["acked_before_rate_limited"] is None:
                        stats["acked_before_rate_limited"] = stats["acked"]
                        stats["first_rate_limited_ms"] = now
                    stats["rate_limited"] += 1
                else:
                    stats["other_errors"] += 1

    frames = b"".join(
        rawws.encode_json(
            {"type": "message", "messageID": 100 + i, "roomID": room, "payload": {"n": i}}
        )
        for i in range(batch)
    )
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    while stats["close_code"] is None and stats["tcp_closed_after_ms"] is None:
        if time.monotonic() - started > limit:
            break
        try:
            client.sock.sendall(frames)
        except TimeoutError:
            continue  # the server stopped reading for a moment (the count may be short)
        except OSError:
            break
        sent += batch
    reader.join(10)
    stop.set()
    client.close()
    stats["frames_sent"] = sent
    stats["bytes_sent"] = sent * len(frames) // batch
    return stats


def flood_worker(port: int, origin: str, seconds: float, batch: int, out: Any) -> None:
    results = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            results.append(flood_one(port, origin, max(1.0, deadline - time.monotonic()), batch))
        except Exception as exc:  # refused (connections per address) or reset: try again
            results.append({"failed": repr(exc)})
            time.sleep(0.05)
    out.put(results)


# -- the neighbour ----------------------------------------------------------------------------


class Neighbour:
    def __init__(self, url: str, origin: str) -> None:
        self.url = url
        self.origin = origin
        self.room = f"neighbour-{uuid.uuid4().hex[:8]}"
        self.seq = 0

    async def __aenter__(self) -> Neighbour:
        self.ws = await connect(self.url, origin=self.origin, compression=None, ping_interval=None)
        for frame in (
            {"type": "connect", "messageID": "c", "connectionID": self.room},
            {"type": "subscribe", "messageID": "s", "roomID": self.room},
        ):
            await self.ws.send(json.dumps(frame))
            while json.loads(await self.ws.recv()).get("messageID") != frame["messageID"]:
                pass
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def ping(self, wait: float = 5.0) -> tuple[float | None, float | None, str | None]:
        """One publish: (ms to the ack, ms to its own copy of the message, error code)."""
        self.seq += 1
        seq = self.seq
        started = time.monotonic()
        frame = {"type": "message", "messageID": seq, "roomID": self.room, "payload": {"seq": seq}}
        await self.ws.send(json.dumps(frame))
        ack = echo = None
        deadline = started + wait
        while ack is None or echo is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return ack, echo, "timeout"
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            except TimeoutError:
                return ack, echo, "timeout"
            ms = (time.monotonic() - started) * 1000
            if frame.get("messageID") == seq and frame.get("type") == "error":
                return None, None, frame.get("code")
            if frame.get("type") == "ack" and frame.get("messageID") == seq:
                ack = ms
            elif frame.get("type") == "message" and frame["payload"].get("seq") == seq:
                echo = ms
        return ack, echo, None

    async def run(self, seconds: float, rate: float) -> dict[str, Any]:
        echoes, acks, errors = [], [], {}
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            ack, echo, error = await self.ping()
            n += 1
            if error:
                errors[error] = errors.get(error, 0) + 1
            if echo is not None:
                echoes.append(echo)
            if ack is not None:
                acks.append(ack)
            wait = started + n / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        return {"pings": n, "lost": n - len(echoes), "errors": errors,
                "echo_ms": percentiles(echoes), "ack_ms": percentiles(acks)}  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50": round(statistics.median(ordered), 2), "p99": round(p99, 2),
            "max": round(ordered[-1], 2)}  # fmt: skip


def flood_summary(sockets: list[dict[str, Any]]) -> dict[str, Any]:
    done = [s for s in sockets if "failed" not in s]
    if not done:
        return {"sockets": 0, "failed": len(sockets)}

    def med(key: str) -> float | None:
        values = [s[key] for s in done if s.get(key) is not None]
        return round(statistics.median(values), 1) if values else None

    codes: dict[str, int] = {}
    for s in done:
        codes[str(s["close_code"])] = codes.get(str(s["close_code"]), 0) + 1
    return {
        "sockets": len(done),
        "failed": len(sockets) - len(done),
        "first": done[0],
        "median_acked": med("acked"),
        "median_acked_before_rate_limited": med("acked_before_rate_limited"),
        "median_rate_limited": med("rate_limited"),
        "median_frames_sent": med("frames_sent"),
        "median_close_after_ms": med("close_after_ms"),
        "median_tcp_closed_after_ms": med("tcp_closed_after_ms"),
        "close_codes": codes,
        "frames_sent_total": sum(s["frames_sent"] for s in done),
        "acked_total": sum(s["acked"] for s in done),
    }


# -- the run ----------------------------------------------------------------------------------


async def run_phases(srv: ServerProcess, args: argparse.Namespace) -> list[dict[str, Any]]:
    url = f"ws://{HOST}:{srv.port}{WS_PATH}"
    rows = []
    ctx = multiprocessing.get_context("spawn")
    async with Neighbour(url, srv.url_origin) as neighbour:
        await neighbour.run(1.0, args.ping_rate)  # warm up
        for round_no in range(args.rounds):
            for phase in ("quiet", "flood"):
                flooder = out = None
                if phase == "flood":
                    out = ctx.Queue()
                    flooder = ctx.Process(
                        target=flood_worker,
                        args=(srv.port, srv.url_origin, args.phase_seconds, args.batch, out),
                    )
                    flooder.start()
                cpu0, t0 = srv.cpu_seconds(), time.monotonic()
                result = await neighbour.run(args.phase_seconds, args.ping_rate)
                cpu, elapsed = srv.cpu_seconds() - cpu0, time.monotonic() - t0
                row: dict[str, Any] = {
                    "bench": "flood",
                    "layer": args.layer,
                    "round": round_no + 1,
                    "phase": phase,
                    "seconds": round(elapsed, 2),
                    "server_cpu_s": round(cpu, 2),
                    "server_cpu_pct": round(100 * cpu / elapsed),
                    "neighbour": result,
                }
                if flooder is not None and out is not None:
                    sockets = await asyncio.get_running_loop().run_in_executor(
                        None, out.get, True, args.phase_seconds + 30
                    )
                    flooder.join(10)
                    row["flood"] = flood_summary(sockets)
                rows.append(row)
                print(json.dumps(row), flush=True)
                await asyncio.sleep(1)  # let the server settle between phases
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--layer", default="memory", choices=["memory", "pubsub", "core"])
    ap.add_argument("--rounds", type=int, default=2, help="quiet/flood pairs")
    ap.add_argument("--phase-seconds", type=float, default=8.0)
    ap.add_argument(
        "--ping-rate",
        type=float,
        default=20.0,
        help="neighbour publishes per second (under RATE_LIMIT)",
    )
    ap.add_argument("--batch", type=int, default=200, help="frames per write of the flooder")
    ap.add_argument(
        "--settings", default='{"ANONYMOUS": "open"}', help="THINWS_SETTINGS of the server"
    )
    ap.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-flood.jsonl"),
    )
    ap.add_argument("--keep-logs", default="", help="write the server log to this directory")
    args = ap.parse_args()  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="thinws-flood-") as tmp:
        workdir = Path(args.keep_logs or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        database = workdir / "flood.sqlite3"
        migrate(database, workdir / "migrate.log")
        redis = None
        extra: dict[str, str] = {}
        if args.layer != "memory":
            redis = RedisServer(workdir / "redis")
            redis.start()
            extra = {"REDIS_URL": redis.url, "THINWS_LAYER": args.layer}
        env = demo_env(
            DATABASE_PATH=str(database),
            DJANGO_SETTINGS_MODULE="demo_project.settings",
            DJANGO_DEBUG="0",
            THINWS_SETTINGS=args.settings,
            **extra,
        )
        srv = ServerProcess("daphne", "demo_project.asgi:application", env, workdir / "daphne.log")
        try:
            srv.start()
            rows = asyncio.run(run_phases(srv, args))
        finally:
            srv.stop()
            if redis is not None:
                redis.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        for row in rows:
            row["date"] = time.strftime("%Y-%m-%d")
            row["settings"] = json.loads(args.settings)
            fh.write(json.dumps(row) + "\n")
    print(
        "\nphase | neighbour echo p50 / p99 / max ms | lost | server CPU | flood sockets, "
        "acked before rate_limited, acked, refused, close, close after ms",
        file=sys.stderr,
    )
    for r in rows:
        e, f = r["neighbour"]["echo_ms"], r.get("flood")
        flood = "-"
        if f and f.get("sockets"):
            flood = (f"{f['sockets']}, {f['median_acked_before_rate_limited']}, "
                     f"{f['median_acked']}, {f['median_rate_limited']}, {f['close_codes']}, "
                     f"{f['median_close_after_ms']}")  # fmt: skip
        print(
            f"{r['round']}/{r['phase']} | {e['p50']} / {e['p99']} / {e['max']} | "
            f"{r['neighbour']['lost']} | {r['server_cpu_pct']} % | {flood}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
