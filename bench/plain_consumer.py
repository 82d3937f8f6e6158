"""The "plain Channels floor": the consumer a Channels tutorial would write for rooms.

Every socket ``group_add``s its own channel to a room's group on ``subscribe``, ``group_send``s
on ``message`` and acks with ``send_json``; every socket receives through its own channel, and
each room message is encoded once per socket. The benchmarks run it beside ThinWSConsumer, in the
same processes, to compare the two as a ratio. It speaks the ThinWS envelope without ``connect``
(loadgen's ``--adapter channels-raw``); it is not part of the app.
"""

from __future__ import annotations

import hashlib
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer


def _group(room_id: str) -> str:
    return "plain." + hashlib.sha256(room_id.encode()).hexdigest()[:40]


class PlainRoomConsumer(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        kind = content.get("type")
        message_id = content.get("messageID")
        room = content.get("roomID")
        if kind == "subscribe":
            await self.channel_layer.group_add(_group(room), self.channel_name)
        elif kind == "unsubscribe":
            await self.channel_layer.group_discard(_group(room), self.channel_name)
        elif kind == "message":
            await self.channel_layer.group_send(
                _group(room),
                {"type": "room.message", "roomID": room, "payload": content.get("payload")},
            )
        await self.send_json({"type": "ack", "messageID": message_id})

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "message", "roomID": event["roomID"], "payload": event["payload"]}
        )
