"""The JavaScript client (thinws_channels/static/thinws_channels/thinws.js), tested with Node's
own test runner against real servers.

This test starts a private Redis, three daphne instances of demo_project under the test profile
("a", "b", "c": anonymous connects open) and one under the secure defaults (tokens required),
issues tokens for the latter, and runs ``node --test tests/js/`` with their URLs, process ids and
tokens in the environment (see tests/js/helpers.mjs). The node tests kill instance "c" and pause
instance "b", so the clusters are this test's own. Node >= 20 is needed (Node 20 with
``--experimental-websocket``); without it the test is skipped, or fails when CI=true. Failing
node tests are shown with node's own (spec reporter) output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import uuid

import pytest

from tests.requires import missing
from tests.servers import ROOT
from thinws_channels.tokens import issue_token

pytestmark = pytest.mark.integration

NODE_TIMEOUT = 400.0  # seconds for the whole node run; a healthy one takes about ten
TEST_TIMEOUT_MS = 60_000  # per node test: each wait in them is bounded by 20 s (helpers.mjs)
HAS_WEBSOCKET = "process.exit(typeof WebSocket === 'function' ? 0 : 3)"


@pytest.fixture
def node_command() -> list[str]:
    """``[node, flags...]`` for a node with a global WebSocket: Node >= 22 as it is, Node 20
    with ``--experimental-websocket``. Skips without one, or fails when CI=true."""
    node = shutil.which("node")
    if node is None:
        problem = "node is not installed (apt-get install nodejs)"
    else:
        for flags in ([], ["--experimental-websocket"]):
            check = subprocess.run(
                [node, *flags, "-e", HAS_WEBSOCKET], capture_output=True, timeout=60, check=False
            )
            if check.returncode == 0:
                return [node, *flags]
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout.strip()
        problem = f"node {version} at {node} has no WebSocket: Node >= 20 is needed"
    missing(problem)


def summary(output: str) -> dict[str, int]:
    """The counters of the spec reporter's summary: its lines "(i) tests 21", "(i) pass 21"..."""
    pattern = "^\N{INFORMATION SOURCE} (\\w+) (\\d+)$"
    return {name: int(n) for name, n in re.findall(pattern, output, re.MULTILINE)}


def declared_tests() -> int:
    """How many top-level ``test(...)`` calls the node test files hold."""
    files = sorted((ROOT / "tests" / "js").glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs files"
    return sum(len(re.findall(r"^test\(", f.read_text("utf-8"), re.MULTILINE)) for f in files)


@pytest.mark.timeout(NODE_TIMEOUT + 200)  # + starting the servers
def test_js_client_with_node_test_runner(node_command, cluster_factory):
    node = node_command
    cluster = cluster_factory(size=3)  # its own: the node tests pause "b" and kill "c"
    secure = cluster_factory(size=1, extra_env={"THINWS_SETTINGS": "{}"})

    def token(name: str) -> dict[str, str]:
        connection_id = f"js-{name}-{uuid.uuid4().hex[:12]}"
        return {"connectionID": connection_id, "token": issue_token(connection_id, expires_in=600)}

    env = dict(os.environ)
    env.update(
        THINWS_URLS=json.dumps(cluster.urls),
        THINWS_PIDS=json.dumps(cluster.pids),
        THINWS_SECURE_URL=secure.urls[0],
        THINWS_TOKENS=json.dumps({name: token(name) for name in ("plain", "fn", "retry")}),
        NO_COLOR="1",
    )
    args = [
        *node,
        "--test",
        "--test-concurrency=1",
        f"--test-timeout={TEST_TIMEOUT_MS}",
        "--test-reporter=spec",
        "tests/js/",
    ]
    # A session of its own, so that a hung run can be killed with the test processes it spawned.
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    finally:
        for pid in cluster.pids:  # never leave an instance paused by a failed test
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
    output = f"$ {' '.join(args)}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    assert proc.returncode == 0, f"node --test failed ({proc.returncode})\n{output}"
    counts, expected = summary(stdout), declared_tests()
    assert counts.get("tests") == expected and counts.get("pass") == expected, (
        f"expected {expected} node tests, all passed (none skipped): {counts}\n{output}"
    )
    assert cluster[2].proc is not None and cluster[2].proc.poll() is not None, (
        "the node tests should have killed instance c"
    )
