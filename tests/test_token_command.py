"""``manage.py thinws_token``: a signed token from the shell, for scripts and the CLI client.

The live path (the token lets the command-line client connect through daphne under the secure
defaults) is in tests/test_client_cli.py.
"""

from __future__ import annotations

import io
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from thinws_channels.tokens import read_token

pytestmark = pytest.mark.django_db


def token(*args: str) -> str:
    out = io.StringIO()
    call_command("thinws_token", *args, stdout=out)
    return out.getvalue().strip()


def test_token_for_a_connection_id_names_no_user_and_expires_after_the_default():
    before = time.time()
    claims = read_token(token("bot-1"), "bot-1")
    assert claims.user_id is None and claims.rooms is None
    assert before + 3600 - 1 <= claims.expires_at <= time.time() + 3600 + 1


def test_user_rooms_and_lifetime_are_signed_into_the_token():
    alice = get_user_model().objects.create_user("alice", password="pw-alice-1")
    before = time.time()
    made = token("alice-bot", "--user", "alice", "--room", "chat-*", "--room", "news",
                 "--expires-in", "60")  # fmt: skip
    claims = read_token(made, "alice-bot")
    assert claims.user_id == alice.pk
    assert claims.rooms == ("chat-*", "news")
    assert claims.allows_room("chat-7") and not claims.allows_room("staff")
    assert before + 59 <= claims.expires_at <= time.time() + 61


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["bot", "--user", "nobody"], "no user named 'nobody'"),
        (["bad\tid"], "connectionID 'bad\\tid'"),
        (["bot", "--expires-in", "0"], "expires_in must be above 0 seconds, got 0.0"),
    ],
)
def test_bad_input_is_refused_naming_the_value(args, named):
    with pytest.raises(CommandError) as caught:
        token(*args)
    assert named in str(caught.value)


def test_inactive_user_is_refused():
    get_user_model().objects.create_user("carol", password="pw-carol-1", is_active=False)
    with pytest.raises(CommandError) as caught:
        token("carol-bot", "--user", "carol")
    assert "user 'carol' is inactive" in str(caught.value)
