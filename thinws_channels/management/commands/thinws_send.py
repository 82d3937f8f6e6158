"""``manage.py thinws_send ROOM PAYLOAD``: publish to a room from the command line.

PAYLOAD is JSON (``'{"text": "hi"}'``); with ``--text`` it is sent as a plain string. Needs a
channel layer the servers share (Redis): the in-memory layer only reaches its own process.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from thinws_channels.api import send_to_room
from thinws_channels.protocol import ProtocolError


class Command(BaseCommand):
    help = "Publish a payload to every live socket in a room (relayed with connectionID null)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room_id", help="the room id")
        parser.add_argument("payload", help="the payload, as JSON (or text with --text)")
        parser.add_argument("--text", action="store_true", help="send PAYLOAD as a string")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = options["payload"]
        if options["text"]:
            payload: Any = raw
        else:
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CommandError(
                    f"payload {raw!r} is not valid JSON ({exc}); use --text to send it as text"
                ) from None
        try:
            message_id = send_to_room(options["room_id"], payload)
        except ProtocolError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(message_id)
