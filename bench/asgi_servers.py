"""One ASGI server process for a benchmark: started on a free loopback port, its output read
line by line with the time each line came, its memory and CPU read from /proc (through psutil).

    server = ServerProcess("uvicorn-wsproto", "demo_project.asgi:application", env, log_path)
    server.start(); server.port; server.rss(); server.cpu_seconds(); server.lines("too slowly")
    server.stop()
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import HOST, free_port, port_open, stop_process, wait_until  # noqa: E402


def _command(server: str, app: str, port: int) -> list[str]:
    py = sys.executable
    if server == "daphne":
        return [py, "-m", "daphne", "-b", HOST, "-p", str(port), app]
    if server.startswith("uvicorn-"):
        ws = server.removeprefix("uvicorn-")
        return [
            py, "-m", "uvicorn", app,
            "--host", HOST, "--port", str(port),
            "--ws", ws, "--lifespan", "off", "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    if server == "hypercorn":
        # --workers 0: serve in this process (with 1, hypercorn forks a worker).
        return [py, "-m", "hypercorn", "--workers", "0", "-b", f"{HOST}:{port}", app]
    raise ValueError(f"unknown server {server!r}: expected one of {', '.join(SERVERS)}")


SERVERS = (
    "daphne",
    "uvicorn-websockets",
    "uvicorn-websockets-sansio",
    "uvicorn-wsproto",
    "hypercorn",
)


class ServerProcess:
    def __init__(self, server: str, app: str, env: dict[str, str], log_path: Path) -> None:
        self.server = server
        self.app = app
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: list[tuple[float, str]] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            _command(self.server, self.app, self.port),
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            wait_until(
                lambda: self.proc.poll() is not None or port_open(self.port),
                timeout,
                what=f"{self.server} on port {self.port}",
            )
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.server} exited at once:\n{self.tail()}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for raw in self.proc.stdout:
                self._lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))
                log.write(raw)
                log.flush()

    def lines(self, needle: str) -> list[tuple[float, str]]:
        return [(t, line) for t, line in list(self._lines) if needle in line]

    def tail(self, n: int = 30) -> str:
        return "\n".join(line for _, line in self._lines[-n:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url_origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _status(self, field: str) -> int:
        """A field of /proc/PID/status in bytes (VmRSS, VmHWM)."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        return self._status("VmHWM")

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def connection_state(self, client_port: int) -> str:
        """The TCP state of the server's end of the connection from ``client_port``."""
        for conn in psutil.Process(self.pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == client_port:
                return conn.status
        return "GONE"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if self._reader is not None:
            self._reader.join(5)


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread; ``peak``: the most."""

    def __init__(self, server: ServerProcess, interval: float = 0.02) -> None:
        self.server = server
        self.interval = interval
        self.peak = server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.rss())
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
