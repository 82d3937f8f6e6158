#!/usr/bin/env python3
"""Fan-out benchmark: ThinWSConsumer against the plain Channels consumer, side by side.

Starts a private redis-server and N daphne processes of ``bench.asgi`` (the demo project plus
``/ws/plain/``), then runs ``loadgen.py`` against ``/ws/thinws/`` and ``/ws/plain/`` of the same
processes, alternating, for each channel layer asked for. Prints one JSON line per run and
appends it to ``--out``. Needs loadgen's environment (picows, orjson, uvloop):

    python3 -m venv ~/.loadgen-venv && ~/.loadgen-venv/bin/pip install picows orjson uvloop
    .venv/bin/python bench/fanout.py --loadgen ../shared/bench/loadgen.py \\
        --loadgen-python ~/.loadgen-venv/bin/python -S 500 --duration 10 --layers pubsub,core

The settings profile of the runs is ``bench/settings.py`` (the demo's settings, logging quiet).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import (  # noqa: E402
    HOST,
    RedisServer,
    demo_env,
    free_port,
    migrate,
    port_open,
    stop_process,
    wait_until,
)


def start_cluster(
    workdir: Path, redis_url: str, layer: str, size: int
) -> list[tuple[int, subprocess.Popen[bytes]]]:
    database = workdir / f"bench-{layer}.sqlite3"
    env = demo_env(
        REDIS_URL=redis_url,
        THINWS_LAYER=layer,
        DATABASE_PATH=str(database),
        DJANGO_SETTINGS_MODULE="bench.settings",
    )
    migrate(database, workdir / "migrate.log")
    servers = []
    for i in range(size):
        port = free_port()
        log = open(workdir / f"daphne-{layer}-{i}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), "bench.asgi:application"],
            cwd=ROOT,
            env={**env, "THINWS_INSTANCE": f"bench-{i}"},
            stdout=log,
            stderr=log,
        )
        wait_until(lambda p=port: port_open(p), 30, what=f"daphne on {port}")
        servers.append((port, proc))
    return servers


def run_loadgen(args: argparse.Namespace, adapter: str, path: str, servers, label: str) -> dict:
    urls = ",".join(f"ws://{HOST}:{port}{path}" for port, _ in servers)
    pids = ",".join(str(proc.pid) for _, proc in servers)
    cmd = [
        args.loadgen_python,
        args.loadgen,
        "--adapter",
        adapter,
        "--urls",
        urls,
        "--origin",
        "--pids",
        pids,
        "--scenario",
        args.scenario,
        "-S",
        str(args.subscribers),
        "-R",
        str(args.rooms),
        "-W",
        str(args.window),
        "--duration",
        str(args.duration),
        "--label",
        label,
    ]
    if args.rate:
        cmd += ["--rate", str(args.rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration * 4 + 120)
    sys.stderr.write(out.stderr)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"loadgen failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--loadgen", default=str(ROOT.parent / "shared" / "bench" / "loadgen.py"))
    ap.add_argument("--loadgen-python", default=os.path.expanduser("~/.loadgen-venv/bin/python"))
    ap.add_argument("--layers", default="pubsub,core")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--scenario", default="fanout", choices=["fanout", "rooms"])
    ap.add_argument("-S", "--subscribers", type=int, default=500)
    ap.add_argument("-R", "--rooms", type=int, default=100)
    ap.add_argument("-W", "--window", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2, help="alternate thinws/plain this many times")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="thinws-bench-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir / "redis")
        redis.start()
        try:
            for layer in args.layers.split(","):
                servers = start_cluster(workdir, redis.url, layer, args.instances)
                try:
                    for round_no in range(args.rounds):
                        for name, adapter, path in (
                            ("thinws", "thinws", "/ws/thinws/"),
                            ("plain", "channels-raw", "/ws/plain/"),
                        ):
                            label = f"{name}/{layer}/{args.scenario}/round{round_no}"
                            result = run_loadgen(args, adapter, path, servers, label)
                            result.update(server=name, layer=layer)
                            results.append(result)
                            print(json.dumps(result), flush=True)
                            if args.out:
                                with open(args.out, "a") as fh:
                                    fh.write(json.dumps(result) + "\n")
                finally:
                    for _, proc in servers:
                        stop_process(proc)
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
