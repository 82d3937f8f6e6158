#!/usr/bin/env python3
"""What the bundled Python client costs, against hand-written JSON frames over ``websockets``.

One daphne of ``bench.asgi``, ``bench/settings.py`` (open, limits off), in-memory layer. Each round
runs both tests with **thinws** (``ThinWSClient``), then **raw** (``websockets`` with its default
options; frames from ``json.dumps``; replies taken in order, as the server answers them):
1. **sequential**: ``-n`` publishes, each after the ack of the one before: latency and rate;
2. **pipelined**: ``-N`` publishes, at most ``-W`` un-acked (thinws: ``-W`` tasks awaiting their
   publishes; raw: a new frame per ack): the time until all acks are in, and how fast a second
   socket of the same kind, in the room, receives them all.
This process's CPU time per message (publisher and subscriber) is recorded, and the server's.
One JSON line per run and a summary (medians, ratios thinws/raw) are appended to ``--out``.

    python bench/clients.py                      # 3 rounds, about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.typing import Origin  # noqa: E402

from bench.asgi_servers import ServerProcess  # noqa: E402
from tests.servers import HOST, WS_PATH, demo_env, migrate  # noqa: E402
from thinws_channels.client import ThinWSClient  # noqa: E402

TIMEOUT = 120.0  # seconds for any one measurement: generous, the machine is shared


def payload(seq: int) -> dict[str, Any]:
    return {"seq": seq, "text": "benchmark message"}


@dataclass
class Side:
    """One socket of one kind of client: ``open`` (connect, subscribe), then the measurements."""

    url: str
    origin: str
    conn: ClientConnection | ThinWSClient = field(init=False)

    async def close(self) -> None:
        await self.conn.close()


class Raw(Side):
    """Hand-written frames: int messageIDs, replies matched by hand, room messages counted."""

    name, seq = "raw", 0
    conn: ClientConnection

    async def open(self, cid: str, room: str, *, reader: bool = False) -> None:
        self.conn = await connect(self.url, origin=Origin(self.origin))
        await self.request({"type": "connect", "connectionID": cid})
        await self.request({"type": "subscribe", "roomID": room})

    async def send(self, frame: dict[str, Any]) -> None:
        self.seq += 1
        await self.conn.send(json.dumps({**frame, "messageID": self.seq}, separators=(",", ":")))

    async def reply(self) -> dict[str, Any]:
        """The next ack (room messages are skipped); an error raises."""
        while True:
            frame = json.loads(await self.conn.recv())
            if frame.get("type") == "ack":
                return frame
            if frame.get("type") == "error":
                raise RuntimeError(f"the server refused a frame: {frame}")

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        await self.send(frame)
        return await self.reply()

    async def publish(self, room: str, data: Any) -> str:
        return str((await self.request({"type": "message", "roomID": room, "payload": data}))["id"])

    async def burst(self, room: str, n: int, window: int) -> None:
        sent = acked = 0
        while acked < n:
            while sent < n and sent - acked < window:
                await self.send({"type": "message", "roomID": room, "payload": payload(sent)})
                sent += 1
            await self.reply()
            acked += 1

    async def receive(self, n: int) -> None:
        got = 0
        while got < n:
            if json.loads(await self.conn.recv()).get("type") == "message":
                got += 1


class Client(Side):
    """The bundled client, used as its documentation shows."""

    name = "thinws"
    conn: ThinWSClient

    async def open(self, cid: str, room: str, *, reader: bool = False) -> None:
        # A publisher that never reads messages() keeps no buffer (docs/client-python.md).
        self.conn = ThinWSClient(self.url, cid, origin=self.origin, reconnect=False,
                              buffer_messages=reader)  # fmt: skip
        await self.conn.connect()
        await self.conn.subscribe(room)

    async def publish(self, room: str, data: Any) -> str:
        return await self.conn.publish(room, data)

    async def burst(self, room: str, n: int, window: int) -> None:
        async def worker(first: int) -> None:
            for seq in range(first, n, window):
                await self.conn.publish(room, payload(seq))

        await asyncio.gather(*(worker(k) for k in range(min(window, n))))

    async def receive(self, n: int) -> None:
        got = 0
        async for _ in self.conn.messages():
            if (got := got + 1) >= n:
                return


async def sequential(side: Raw | Client, n: int) -> dict[str, Any]:
    room = f"seq-{uuid.uuid4().hex[:8]}"
    await side.open(f"pub-{room}", room)
    rtts = []
    try:
        async with asyncio.timeout(TIMEOUT):
            t0 = time.perf_counter()
            for seq in range(n):
                t = time.perf_counter()
                await side.publish(room, payload(seq))
                rtts.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - t0
    finally:
        await side.close()
    p50, p99 = statistics.median(rtts), statistics.quantiles(rtts, n=100)[98]
    return {"median_ms": round(p50 * 1e3, 3), "p99_ms": round(p99 * 1e3, 3),
            "per_s": round(n / elapsed)}  # fmt: skip


async def pipelined(pub: Raw | Client, sub: Raw | Client, n: int, window: int) -> dict[str, Any]:
    room = f"pipe-{uuid.uuid4().hex[:8]}"
    await sub.open(f"sub-{room}", room, reader=True)
    await pub.open(f"pub-{room}", room)
    try:
        async with asyncio.timeout(TIMEOUT):
            t0 = time.perf_counter()
            receiving = asyncio.create_task(sub.receive(n))
            await pub.burst(room, n, window)
            acks = time.perf_counter() - t0
            await receiving
            received = time.perf_counter() - t0
    finally:
        await pub.close()
        await sub.close()
    return {"window": window, "acks_s": round(acks, 3), "acks_per_s": round(n / acks),
            "received_s": round(received, 3), "received_per_s": round(n / received)}  # fmt: skip


async def run(srv: ServerProcess, args: argparse.Namespace) -> list[dict[str, Any]]:
    url, origin = f"ws://{HOST}:{srv.port}{WS_PATH}", srv.url_origin
    for kind in (Client, Raw):  # warm up: Django's first requests, imports, the database
        await sequential(kind(url, origin), 200)
    rows = []
    for round_no in range(1, args.rounds + 1):
        for test in ("sequential", "pipelined"):
            for kind in (Client, Raw):
                n = args.sequential if test == "sequential" else args.pipelined
                cpu0, server0 = time.process_time(), srv.cpu_seconds()
                result = await (
                    sequential(kind(url, origin), n) if test == "sequential"
                    else pipelined(kind(url, origin), kind(url, origin), n, args.window)
                )  # fmt: skip
                row = {"bench": "clients", "layer": "memory", "round": round_no, "test": test,
                       "client": kind.name, "n": n, **result,
                       "client_cpu_us_per_msg": round((time.process_time() - cpu0) / n * 1e6, 1),
                       "server_cpu_us_per_msg": round((srv.cpu_seconds() - server0) / n * 1e6, 1),
                       "date": time.strftime("%Y-%m-%d")}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of each figure, and the ratio thinws/raw of each."""
    out: dict[str, Any] = {"bench": "clients", "summary": True, "layer": rows[0]["layer"]}
    figures = {"sequential": ("median_ms", "p99_ms", "per_s"),
               "pipelined": ("acks_s", "acks_per_s", "received_per_s")}  # fmt: skip
    for test, keys in figures.items():
        for key in (*keys, "client_cpu_us_per_msg", "server_cpu_us_per_msg"):
            med = {name: statistics.median(r[key] for r in rows
                                           if r["test"] == test and r["client"] == name)
                   for name in ("thinws", "raw")}  # fmt: skip
            out[f"{test}.{key}"] = {**med, "ratio": round(med["thinws"] / med["raw"], 2)}
    return {**out, "rounds": rows[-1]["round"], "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", "--sequential", type=int, default=2000, help="round trips per run")
    ap.add_argument("-N", "--pipelined", type=int, default=5000, help="messages per burst")
    ap.add_argument("-W", "--window", type=int, default=50, help="un-acked publishes at most")
    ap.add_argument("--rounds", type=int, default=3, help="thinws/raw alternations")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "2026-11-26-clients.jsonl"))
    args = ap.parse_args()
    for name in ("sequential", "pipelined", "window", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    with tempfile.TemporaryDirectory(prefix="thinws-clients-") as tmp:
        workdir = Path(tmp)
        migrate(database := workdir / "clients.sqlite3", workdir / "migrate.log")
        env = demo_env(DATABASE_PATH=str(database), DJANGO_SETTINGS_MODULE="bench.settings")
        srv = ServerProcess("daphne", "bench.asgi:application", env, workdir / "daphne.log")
        try:
            srv.start()
            rows = asyncio.run(run(srv, args))
        finally:
            srv.stop()
    rows.append(summary(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    print(f"\n{'median over the rounds':<36} {'thinws':>9} {'raw':>9} {'thinws/raw':>10}",
          file=sys.stderr)  # fmt: skip
    for key, v in rows[-1].items():
        if isinstance(v, dict):
            print(f"{key:<36} {v['thinws']:>9} {v['raw']:>9} {v['ratio']:>10}", file=sys.stderr)


if __name__ == "__main__":
    main()
