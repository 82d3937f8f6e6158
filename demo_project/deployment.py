"""nginx and HAProxy in front of several daphne processes: the configs and private proxies.

The configs are rendered from the templates in ``demo_project/deploy/`` (``nginx.conf``,
``haproxy.cfg``), whose ``{{ name }}`` placeholders take the values that differ between a
production host and the loopback cluster; docs/deployment.md shows the production rendering
(``nginx_production_example()``, ``haproxy_production_example()``) and a test checks that it does.

``NginxProxy`` and ``HAProxyProxy`` run a private proxy on a 127.0.0.1 port in front of daphne
processes on other loopback ports, with every file (pid, logs, temporary files) in a work
directory, as any user: ``demo_project/cluster.py`` and the tests use them.

    with NginxProxy(workdir, [8001, 8002]) as proxy:
        proxy.url       # http://127.0.0.1:PORT/
        proxy.ws_url    # ws://127.0.0.1:PORT/ws/thinws/
        proxy.drain(8001); proxy.undrain(8001)   # a rolling restart (docs/deployment.md)
        proxy.reload([8001, 8003])               # other daphne processes

Process helpers (free ports, bounded waits, SIGTERM then SIGKILL) come from ``tests/servers.py``,
which the cluster script shares with the test suite.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

from tests.servers import (
    HOST,
    START_TIMEOUT,
    WS_PATH,
    LoopbackProcess,
    ServerError,
    free_port,
    port_open,
    stop_process,
    tail,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = Path(__file__).resolve().parent / "deploy"
NGINX_TEMPLATE = TEMPLATE_DIR / "nginx.conf"
HAPROXY_TEMPLATE = TEMPLATE_DIR / "haproxy.cfg"

# nginx: a daphne process that failed once (refused a connection, or did not accept one within
# proxy_connect_timeout) is left alone for this long; new handshakes go to the others meanwhile.
NGINX_SERVER_PARAMETERS = "max_fails=1 fail_timeout=5s"

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


class ProxyError(ServerError):
    """A proxy binary is missing, its config is refused, or it did not start."""


# -- rendering -------------------------------------------------------------------------------


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill in the ``{{ name }}`` placeholders of ``template``.

    A value of several lines keeps the indentation of its placeholder's line on every line.
    Every placeholder needs a value and every value a placeholder (a typo fails loudly).
    """
    wanted = set(_PLACEHOLDER.findall(template))
    missing = sorted(wanted - values.keys())
    unknown = sorted(values.keys() - wanted)
    if missing or unknown:
        raise ValueError(
            f"template placeholders and values differ: missing values {missing}, "
            f"values without a placeholder {unknown}"
        )

    def fill(line: str) -> str:
        indent = line[: len(line) - len(line.lstrip())]
        return _PLACEHOLDER.sub(lambda m: values[m[1]].replace("\n", "\n" + indent), line)

    return "".join(fill(line) for line in template.splitlines(keepends=True))


def _address(upstream: str | int) -> str:
    """``8001`` -> ``127.0.0.1:8001``; ``"10.0.0.5:8001"`` stays as it is."""
    if isinstance(upstream, int):
        if not 0 < upstream < 65536:
            raise ValueError(f"not a TCP port: {upstream!r}")
        return f"{HOST}:{upstream}"
    host, sep, port = upstream.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"an upstream must be a port or HOST:PORT, not {upstream!r}")
    return upstream


def _non_empty(upstreams: Sequence[str | int]) -> list[str]:
    if isinstance(upstreams, str | int) or not upstreams:
        raise ValueError(f"need a list of one or more daphne addresses, not {upstreams!r}")
    return [_address(u) for u in upstreams]


def nginx_site(
    upstreams: Sequence[str | int],
    *,
    listen: Sequence[str],
    server_name: str,
    static_root: str | Path,
    down: Collection[str | int] = (),
) -> str:
    """The http-context nginx config (demo_project/deploy/nginx.conf) for these daphne processes.

    ``listen``: the server block's first directives (``listen ...;`` and, for TLS, the
    ``ssl_certificate`` lines). ``down``: upstreams marked ``down`` (drained: no new connections).
    """
    drained = {_address(u) for u in down}
    servers = [
        f"server {a} {NGINX_SERVER_PARAMETERS}{' down' if a in drained else ''};"
        for a in _non_empty(upstreams)
    ]
    return render(
        NGINX_TEMPLATE.read_text(),
        {
            "upstream_servers": "\n".join(servers),
            "listen": "\n".join(listen),
            "server_name": server_name,
            "static_root": str(static_root).rstrip("/"),
        },
    )


def nginx_production_example(
    certificate_dir: str = "/etc/letsencrypt/live/chat.example.com",
    static_root: str = "/srv/chat/static",
) -> str:
    """The nginx config docs/deployment.md shows: TLS, four daphne processes on this host."""
    return nginx_site(
        [f"127.0.0.1:{port}" for port in range(8001, 8005)],
        listen=[
            "listen 443 ssl http2;",
            "listen [::]:443 ssl http2;",
            f"ssl_certificate {certificate_dir}/fullchain.pem;",
            f"ssl_certificate_key {certificate_dir}/privkey.pem;",
        ],
        server_name="chat.example.com",
        static_root=static_root,
    )


def haproxy_config(
    upstreams: Sequence[str | int],
    *,
    listen: Sequence[str],
    global_settings: Sequence[str],
    server_name: str,
) -> str:
    """The HAProxy config (demo_project/deploy/haproxy.cfg) for these daphne processes.

    ``listen``: the frontend's ``bind`` lines (and a redirect to https); ``global_settings``:
    the lines of the ``global`` section that differ (logging, the user to run as);
    ``server_name``: the Host of the health checks (one of ALLOWED_HOSTS).
    """
    servers = [f"server daphne-{i} {a}" for i, a in enumerate(_non_empty(upstreams), 1)]
    return render(
        HAPROXY_TEMPLATE.read_text(),
        {
            "servers": "\n".join(servers),
            "listen": "\n".join(listen),
            "global": "\n".join(global_settings),
            "server_name": server_name,
        },
    )


def haproxy_production_example(certificate: str = "/etc/haproxy/certs/chat.example.com.pem") -> str:
    """The HAProxy config docs/deployment.md shows: TLS, four daphne processes on this host."""
    return haproxy_config(
        [f"127.0.0.1:{port}" for port in range(8001, 8005)],
        listen=[
            "bind :80",
            "bind :::443 v4v6 ssl crt " + certificate + " alpn h2,http/1.1",
            "http-request redirect scheme https code 301 unless { ssl_fc }",
        ],
        global_settings=[
            "log /dev/log local0",
            "user haproxy",
            "group haproxy",
            "maxconn 50000",
            "stats socket /run/haproxy/admin.sock mode 660 level admin",
        ],
        server_name="chat.example.com",
    )


# -- static files ----------------------------------------------------------------------------


def project_env(**overrides: str) -> dict[str, str]:
    """The environment of a demo_project command run from the repository."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "demo_project.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def collect_static(dest: Path, timeout: float = 120.0) -> Path:
    """``manage.py collectstatic`` of the demo project into ``dest`` (its STATIC_ROOT)."""
    dest = Path(dest)
    log_path = dest.parent / f"{dest.name}-collectstatic.log"
    with open(log_path, "wb") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "demo_project.deployment", "collectstatic", str(dest)],
            cwd=ROOT,
            env=project_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise ProxyError(f"collectstatic into {dest} failed\n{tail(log_path)}")
    return dest


def _collectstatic_main(dest: str) -> None:
    # The demo's settings name no STATIC_ROOT (daphne alone does not serve files): set it for
    # this one command, the way a production settings file sets it for good.
    import django
    from django.core.management import call_command
    from django.test.utils import override_settings

    django.setup()
    with override_settings(STATIC_ROOT=str(Path(dest).resolve())):
        call_command("collectstatic", interactive=False, verbosity=0)


# -- private proxies on loopback -------------------------------------------------------------


def _find(name: str, package: str) -> str:
    # sbin is not on every user's PATH.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise ProxyError(
            f"{name} not found on the PATH nor in /usr/sbin: install it "
            f"(apt-get install {package}, or your system's package)"
        )
    return found


def find_nginx() -> str:
    """The nginx binary; ProxyError naming the package to install when there is none."""
    return _find("nginx", "nginx")


def find_haproxy() -> str:
    """The haproxy binary; ProxyError naming the package to install when there is none."""
    return _find("haproxy", "haproxy")


class _Proxy(LoopbackProcess):
    """A proxy process on ``127.0.0.1:port`` in front of daphne processes on loopback ports."""

    name = "proxy"

    def __init__(self, workdir: Path, upstream_ports: Sequence[int], port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.upstream_ports = list(upstream_ports)
        _non_empty(self.upstream_ports)  # a clear error now rather than a refused config later
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"  # the process's stdout and stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # what callers use ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}{WS_PATH}"

    # what subclasses define ------------------------------------------------------------------
    def write_config(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def check_command(self, config: str | None) -> list[str]:
        """The command that validates the written config, or ``config`` (written aside)."""
        raise NotImplementedError

    # lifecycle -------------------------------------------------------------------------------
    def check(self, config: str | None = None) -> str:
        """Validate a config (``nginx -t``, ``haproxy -c``): its output, or ProxyError.

        By default the config written for this proxy; or ``config``, a text of the same kind
        (an nginx site config, a HAProxy config), such as the production example.
        """
        proc = subprocess.run(
            self.check_command(config),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
        output = (proc.stdout + proc.stderr).decode(errors="replace")
        if proc.returncode != 0:
            raise ProxyError(f"{self.name} refused its config ({proc.returncode}):\n{output}")
        return output

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        if self.running:
            return self
        self.write_config()
        self.check()
        self._close_log()
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        try:
            wait_until(
                lambda: not self.running or port_open(self.port),
                timeout,
                what=f"{self.name} on port {self.port}",
            )
            if not self.running:
                raise ProxyError(f"{self.name} exited with {self.proc.returncode}")
        except (TimeoutError, ProxyError) as exc:
            self.stop()
            raise ProxyError(f"{exc}\n{self.log_tail()}") from exc
        return self

    def stop(self) -> None:
        """SIGTERM (both proxies stop at once on it), then SIGKILL; reaps the process."""
        if self.proc is not None:
            stop_process(self.proc)
        self._close_log()

    def reload(self, upstream_ports: Sequence[int]) -> None:
        """Point the proxy at other daphne processes (same port)."""
        _non_empty(upstream_ports)
        self.upstream_ports = list(upstream_ports)
        self.stop()
        self.start()

    def drain(self, upstream_port: int) -> None:
        """No new connection to this daphne process; those it holds stay (a rolling restart)."""
        raise NotImplementedError

    def undrain(self, upstream_port: int) -> None:
        """Send new connections to this daphne process again (it is running, or was restarted)."""
        raise NotImplementedError

    def _index(self, upstream_port: int) -> int:
        if upstream_port not in self.upstream_ports:
            raise ValueError(
                f"{upstream_port!r} is not one of the upstream ports {self.upstream_ports}"
            )
        return self.upstream_ports.index(upstream_port)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.name} log ({self.log_path}) ---\n{tail(self.log_path, lines)}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# mime.types of the usual nginx packages; without one, nginx serves everything as text/plain.
_MIME_TYPES = (
    "/etc/nginx/mime.types",
    "/usr/local/etc/nginx/mime.types",
    "/usr/local/nginx/conf/mime.types",
)
_MIME_FALLBACK = """types {
        text/html html; text/css css; text/javascript js mjs; application/json json;
        image/png png; image/svg+xml svg; image/x-icon ico; font/woff2 woff2;
    }"""


class NginxProxy(_Proxy):
    """A private nginx on 127.0.0.1 with the site config of demo_project/deploy/nginx.conf.

    ``static_root``: the collected static files it serves at /static/; by default
    ``collectstatic`` of the demo project runs into ``workdir/static`` at the first start.
    """

    name = "nginx"

    def __init__(
        self,
        workdir: Path,
        upstream_ports: Sequence[int],
        port: int | None = None,
        *,
        static_root: Path | None = None,
        binary: str | None = None,
    ):
        super().__init__(workdir, upstream_ports, port)
        self.binary = binary or find_nginx()
        self.static_root = Path(static_root) if static_root is not None else None
        self.main_config_path = self.workdir / "nginx-main.conf"
        self.site_config_path = self.workdir / "nginx-site.conf"
        self.error_log_path = self.workdir / "nginx-error.log"
        self.access_log_path = self.workdir / "nginx-access.log"
        self.down: set[int] = set()  # drained upstream ports, marked "down"

    def site_config(self) -> str:
        """The rendered template, as nginx reads it."""
        static_root = self.static_root or self.workdir / "static"
        return nginx_site(
            self.upstream_ports,
            listen=[f"listen {HOST}:{self.port};"],
            server_name="127.0.0.1 localhost",
            static_root=static_root,
            down=self.down & set(self.upstream_ports),
        )

    def main_config(self, site_config_path: Path | None = None) -> str:
        """Loopback only: the process-level settings that a system nginx has in its nginx.conf."""
        tmp = self.workdir / "nginx-tmp"
        mime = next((f"include {p};" for p in _MIME_TYPES if Path(p).is_file()), _MIME_FALLBACK)
        # As root, nginx would switch its workers to "nobody", who cannot read a private workdir.
        user = "user root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
        return (
            f"{user}daemon off;\nworker_processes 1;\npid {self.workdir}/nginx.pid;\n"
            f"error_log {self.error_log_path} notice;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    {mime}\n"
            "    default_type application/octet-stream;\n"
            f"    access_log {self.access_log_path};\n"
            f"    client_body_temp_path {tmp}/client_body;\n"
            f"    proxy_temp_path {tmp}/proxy;\n"
            f"    fastcgi_temp_path {tmp}/fastcgi;\n"
            f"    uwsgi_temp_path {tmp}/uwsgi;\n"
            f"    scgi_temp_path {tmp}/scgi;\n"
            f"    include {site_config_path or self.site_config_path};\n"
            "}\n"
        )

    def write_config(self) -> None:
        if self.static_root is None and not (self.workdir / "static").is_dir():
            collect_static(self.workdir / "static")
        (self.workdir / "nginx-tmp").mkdir(exist_ok=True)
        self.site_config_path.write_text(self.site_config())
        self.main_config_path.write_text(self.main_config())

    def _base_command(self, main_config_path: Path) -> list[str]:
        # -e: the error log before the config is read (the compiled-in one is not writable).
        return [
            self.binary,
            "-p", f"{self.workdir}/",
            "-c", str(main_config_path),
            "-e", str(self.error_log_path),
        ]  # fmt: skip

    def command(self) -> list[str]:
        return self._base_command(self.main_config_path)

    def check_command(self, config: str | None) -> list[str]:
        main_config_path = self.main_config_path
        if config is not None:
            site_path = self.workdir / "nginx-check-site.conf"
            site_path.write_text(config)
            main_config_path = self.workdir / "nginx-check-main.conf"
            (self.workdir / "nginx-tmp").mkdir(exist_ok=True)
            main_config_path.write_text(self.main_config(site_path))
        return [*self._base_command(main_config_path), "-t"]

    def reload(self, upstream_ports: Sequence[int]) -> None:
        """Other daphne processes, without a restart: the sockets open through nginx stay."""
        _non_empty(upstream_ports)
        self.upstream_ports = list(upstream_ports)
        self._apply()

    def drain(self, upstream_port: int) -> None:
        """Mark the process ``down`` and reload (what docs/deployment.md says to do by hand)."""
        self._index(upstream_port)
        self.down.add(upstream_port)
        self._apply()

    def undrain(self, upstream_port: int) -> None:
        self._index(upstream_port)
        self.down.discard(upstream_port)
        self._apply()

    def _apply(self, timeout: float = START_TIMEOUT) -> None:
        """Rewrite the config and reload it (SIGHUP), or start nginx if it is not running.

        Returns once the old worker stopped taking new connections ("gracefully shutting
        down"): from then on, every new connection is served under the new config. The old
        worker keeps the sockets it holds until they close.
        """
        if not self.running or self.proc is None:
            self.start()
            return
        before = self._retired_workers()
        self.write_config()
        self.check()
        self.proc.send_signal(signal.SIGHUP)  # re-read the config, start new workers
        wait_until(
            lambda: self._retired_workers() > before or not self.running,
            timeout,
            what="nginx to reload its config",
        )
        if not self.running:
            raise ProxyError(f"nginx exited while reloading\n{self.log_tail()}")

    def _retired_workers(self) -> int:
        # Logged at "notice" (main_config's error_log level) by each old worker after a SIGHUP.
        try:
            return self.error_log_path.read_text(errors="replace").count("gracefully shutting down")
        except OSError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        return (
            f"{super().log_tail(lines)}\n"
            f"--- nginx error log ({self.error_log_path}) ---\n{tail(self.error_log_path, lines)}"
        )


class HAProxyProxy(_Proxy):
    """A private HAProxy on 127.0.0.1 with the config of demo_project/deploy/haproxy.cfg.

    HAProxy serves no files: pages and WebSockets only. ``reload()`` restarts it (the sockets
    through it drop); ``drain()`` and ``undrain()`` go through its runtime API, on a loopback port.
    """

    name = "haproxy"

    def __init__(
        self,
        workdir: Path,
        upstream_ports: Sequence[int],
        port: int | None = None,
        *,
        binary: str | None = None,
    ):
        super().__init__(workdir, upstream_ports, port)
        self.binary = binary or find_haproxy()
        self.config_path = self.workdir / "haproxy.cfg"
        self.admin_port = free_port()

    def config(self) -> str:
        return haproxy_config(
            self.upstream_ports,
            listen=[f"bind {HOST}:{self.port}"],
            global_settings=[
                "log stderr format raw local0 info",
                "maxconn 1000",
                f"stats socket ipv4@{HOST}:{self.admin_port} level admin",
            ],
            server_name=HOST,
        )

    def admin(self, command: str, timeout: float = 10.0) -> str:
        """One command of HAProxy's runtime API (``set server ...``, ``show stat``); its answer."""
        with socket.create_connection((HOST, self.admin_port), timeout=timeout) as sock:
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        answer = b"".join(chunks).decode(errors="replace")
        if answer.strip() and not command.startswith("show"):
            raise ProxyError(f"haproxy refused {command!r}: {answer.strip()}")
        return answer

    def server_status(self, upstream_port: int) -> str:
        """The status of the daphne process in ``show stat``: UP, DOWN, MAINT, ..."""
        server = f"daphne-{self._index(upstream_port) + 1}"
        for line in self.admin("show stat").splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "daphne" and fields[1] == server:
                return fields[17]
        raise ProxyError(f"no server {server} in haproxy's stats")

    def drain(self, upstream_port: int) -> None:
        """``set server daphne/daphne-N state maint``, as docs/deployment.md says to do."""
        self.admin(f"set server daphne/daphne-{self._index(upstream_port) + 1} state maint")

    def undrain(self, upstream_port: int, timeout: float = START_TIMEOUT) -> None:
        """``state ready``, then wait until the health checks find the process UP."""
        self.admin(f"set server daphne/daphne-{self._index(upstream_port) + 1} state ready")
        wait_until(
            lambda: self.server_status(upstream_port) == "UP",
            timeout,
            what=f"haproxy to find the daphne process on port {upstream_port} up",
        )

    def write_config(self) -> None:
        self.config_path.write_text(self.config())

    def command(self) -> list[str]:
        return [self.binary, "-db", "-f", str(self.config_path)]  # -db: foreground, no daemon

    def check_command(self, config: str | None) -> list[str]:
        path = self.config_path
        if config is not None:
            path = self.workdir / "haproxy-check.cfg"
            path.write_text(config)
        return [self.binary, "-c", "-f", str(path)]


def _main(argv: list[str]) -> None:
    """``collectstatic DEST``; ``nginx-production`` / ``haproxy-production`` print the configs
    docs/deployment.md shows (to paste there after changing a template)."""
    if len(argv) == 2 and argv[0] == "collectstatic":
        _collectstatic_main(argv[1])
    elif argv == ["nginx-production"]:
        print(nginx_production_example(), end="")
    elif argv == ["haproxy-production"]:
        print(haproxy_production_example(), end="")
    else:
        sys.exit(
            "usage: python -m demo_project.deployment "
            "collectstatic DEST | nginx-production | haproxy-production"
        )


if __name__ == "__main__":
    _main(sys.argv[1:])
