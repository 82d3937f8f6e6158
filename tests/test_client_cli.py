"""``python -m thinws_channels.client``, run as a subprocess against real daphne instances.

Bad command lines are refused (exit status 2) before anything connects, so those tests need no
server. Every wait is bounded (WAIT seconds).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from tests.servers import ROOT, demo_env, free_port
from tests.test_client import WAIT, uid

CLI = (sys.executable, "-m", "thinws_channels.client")
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
ENV.pop("THINWS_TOKEN", None)


async def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the command to its end; (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(WAIT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--send", "r", "{bad"], "'{bad' (for room 'r') is not valid JSON"),
        (["--listen", "--count", "0"], "--count: expected a whole number above 0, got '0'"),
        (["--count", "2"], "--count: only with --listen"),
        (["--give-up-after", "soon"], "expected seconds (a number >= 0), got 'soon'"),
    ],
)
async def test_bad_command_lines_exit_2_naming_the_value(args, named):
    code, out, err = await run_cli("ws://127.0.0.1:1/ws/thinws/", "cid", *args)
    assert code == 2, err
    assert named in err and out == ""


async def test_bad_url_and_empty_connection_id_exit_2():
    code, _, err = await run_cli("http://example.com/ws/", "cid")
    assert code == 2 and "http://example.com/ws/" in err
    code, _, err = await run_cli("ws://127.0.0.1:1/ws/thinws/", "")
    assert code == 2 and "connection_id: must not be empty" in err


async def test_help_exits_0():
    code, out, _ = await run_cli("--help")
    assert code == 0 and "--subscribe" in out and "--listen" in out


@pytest.mark.integration
async def test_no_server_exits_1_naming_the_url():
    url = f"ws://127.0.0.1:{free_port()}/ws/thinws/"
    code, out, err = await run_cli(url, uid("cli"), "--give-up-after", "0.5")
    assert code == 1 and out == ""
    assert f"could not connect to {url}" in err and "ConnectionRefusedError" in err


@pytest.mark.integration
async def test_listen_send_and_a_refused_call(cluster_factory):
    cluster = cluster_factory(size=2)  # the layer makes no difference to the command line
    room = uid("room")
    listener = await asyncio.create_subprocess_exec(
        *CLI, cluster.urls[0], uid("cli"), "--subscribe", room, "--listen", "--count", "2",
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(WAIT):
            lines: list[str] = []
            while not lines or lines[-1] != "listening":
                line = await listener.stderr.readline()  # type: ignore[union-attr]
                assert line, f"the CLI ended: {lines}"
                lines.append(line.decode().strip())
        assert f"connected to {cluster.urls[0]} (instance a)" in lines[0]

        payloads = ['{"text": "from the CLI", "n": [1, 2.5, null]}', '"héllo"']
        code, out, err = await run_cli(
            cluster.urls[1], uid("cli-send"), "--subscribe", room,
            "--send", room, payloads[0], "--send", room, payloads[1],
        )  # fmt: skip
        assert code == 0, err
        assert out == ""  # without --listen nothing goes to stdout

        async with asyncio.timeout(WAIT):
            out_bytes, _ = await listener.communicate()  # it ends by itself after 2 messages
        assert listener.returncode == 0
        printed = [json.loads(line) for line in out_bytes.decode().splitlines()]
        assert [m["payload"] for m in printed] == [json.loads(p) for p in payloads]
        assert {m["roomID"] for m in printed} == {room}
        for message in printed:  # the sender's status names each server message id
            assert f"sent to {room!r}: {message['messageID']}" in err
    finally:
        if listener.returncode is None:
            listener.kill()
        await listener.wait()

    code, _, err = await run_cli(cluster.urls[0], uid("cli"), "--send", uid("room"), "1")
    assert code == 1
    assert "error: not_subscribed: connection" in err


@pytest.mark.integration
async def test_token_from_manage_py_lets_the_cli_connect_under_the_secure_defaults(
    cluster_factory,
):
    """The README's path for scripts: ``--token "$(python manage.py thinws_token ID)"``."""
    cluster = cluster_factory(size=1, extra_env={"THINWS_SETTINGS": "{}"})
    connection_id, room = uid("cli-bot"), uid("room")
    env = demo_env(THINWS_SETTINGS="{}")
    made = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "thinws_token", connection_id, "--room", "room-*",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(WAIT):
        out, err = await made.communicate()
    assert made.returncode == 0, err.decode()
    token = out.decode().strip()

    code, _, err_text = await run_cli(cluster.urls[0], connection_id, "--subscribe", room)
    assert code == 1
    # the refusal is said once, with the server's reason
    assert err_text.count("connecting without a login needs a token") == 1, err_text

    code, _, err_text = await run_cli(
        cluster.urls[0], connection_id, "--token", token, "--subscribe", room
    )
    assert code == 0, err_text
    assert f"subscribed to {room!r}" in err_text
    # the token's room patterns hold: another room is refused
    code, _, err_text = await run_cli(
        cluster.urls[0], connection_id, "--token", token, "--subscribe", "staff"
    )
    assert code == 1 and "error: forbidden" in err_text, err_text
