"""``manage.py thinws_token CONNECTION_ID``: print a signed connection token.

For scripts, bots and the command-line client under the default ``ANONYMOUS = "token"`` policy:

    python -m thinws_channels.client ws://127.0.0.1:8000/ws/thinws/ bot-1 \\
        --token "$(python manage.py thinws_token bot-1)" --subscribe lobby --listen

``--user NAME`` makes the socket act as that user (it binds the connectionID to them),
``--room PATTERN`` (repeatable) restricts the rooms, ``--expires-in SECONDS`` sets the lifetime
(default ``TOKEN_MAX_AGE``). The token is printed on stdout and nothing else.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from thinws_channels.protocol import ProtocolError
from thinws_channels.tokens import issue_token


class Command(BaseCommand):
    help = "Print a signed token that lets a client connect as CONNECTION_ID."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("connection_id", help="the connectionID the token is for")
        parser.add_argument("--user", help="the username the socket acts as (default: none)")
        parser.add_argument(
            "--room",
            action="append",
            dest="rooms",
            metavar="PATTERN",
            help="a room pattern (fnmatch) the socket may join; repeatable (default: any room)",
        )
        parser.add_argument(
            "--expires-in",
            type=float,
            metavar="SECONDS",
            help="the token's lifetime in seconds (default: TOKEN_MAX_AGE)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        if options["user"] is not None:
            model = get_user_model()
            try:
                user = model._default_manager.get_by_natural_key(options["user"])
            except model.DoesNotExist:
                raise CommandError(f"no user named {options['user']!r}") from None
            if not user.is_active:
                raise CommandError(
                    f"user {options['user']!r} is inactive: its token would be refused"
                )
        try:
            token = issue_token(
                options["connection_id"],
                user=user,
                rooms=options["rooms"],
                expires_in=options["expires_in"],
            )
        except ProtocolError as exc:
            raise CommandError(
                f"connectionID {options['connection_id']!r}: {exc.message}"
            ) from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
