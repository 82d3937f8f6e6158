"""A bare ASGI app for ``slow_consumer.py``: does the server's WebSocket ``send`` wait when the
client reads nothing?

On the client's first frame it sends ``PROBE_FRAMES`` text frames of ``PROBE_SIZE`` bytes, each
``await send(...)`` bounded by ``PROBE_STALL`` seconds, and prints one JSON line: how many sends
returned before one waited that long (the server applies backpressure), or that none did (the
server buffers whatever the application sends). No Django, no channels: only the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

FRAMES = int(os.environ.get("PROBE_FRAMES", "20000"))
SIZE = int(os.environ.get("PROBE_SIZE", "1024"))
STALL = float(os.environ.get("PROBE_STALL", "1.0"))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        return
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    if (await receive())["type"] != "websocket.receive":
        return
    text = "x" * SIZE
    sent, longest, blocked = 0, 0.0, False
    started = time.monotonic()
    for _ in range(FRAMES):
        t = time.monotonic()
        try:
            await asyncio.wait_for(send({"type": "websocket.send", "text": text}), STALL)
        except TimeoutError:
            blocked = True
            break
        longest = max(longest, time.monotonic() - t)
        sent += 1
    result = {
        "probe": "send",
        "frames": FRAMES,
        "size": SIZE,
        "blocked": blocked,
        "sent_before_block": sent,
        "bytes_before_block": sent * SIZE,
        "longest_send_ms": round(longest * 1000, 2),
        "elapsed_s": round(time.monotonic() - started - (STALL if blocked else 0), 3),
    }
    print("SEND-PROBE " + json.dumps(result), flush=True)
    while (await receive())["type"] != "websocket.disconnect":
        pass
