"""An asyncio client of the ThinWS protocol (``docs/protocol.md``), built on ``websockets``.

Install it with the ``client`` extra (``pip install "thinws-channels[client]"``)::

    async with ThinWSClient("wss://example.com/ws/thinws/", "device-7f3a") as client:
        await client.subscribe("lobby")
        message_id = await client.publish("lobby", {"text": "hi"})
        async for message in client.messages():
            print(message["roomID"], message["payload"])

Every call resolves on its ``ack`` and raises :class:`ThinWSError` (with the server's ``code``)
on its ``error``, or :class:`ThinWSTimeout` when no reply comes within ``request_timeout``
seconds of sending. The client connects and reconnects by itself (full-jitter exponential backoff
across its URLs; at once after close 4012; never after 1000, nor after 4001 without a
``token_provider``), sends ``connect`` again and takes its rooms from the ack. Calls made while
it is offline are queued, in order, up to ``queue_limit``. A publish whose reply was lost with
its socket raises :class:`ThinWSDisconnected`: it may or may not have gone through, and it is
not sent again. The full guide is ``docs/client-python.md``; the command line is
``python -m thinws_channels.client --help``.
"""

try:
    import websockets  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        'thinws_channels.client needs the websockets package: pip install "thinws-channels[client]"'
    ) from exc

from ._core import ThinWSClient
from ._engine import State
from ._errors import (
    ThinWSClosed,
    ThinWSConnectError,
    ThinWSDisconnected,
    ThinWSError,
    ThinWSTimeout,
)
from ._events import EVENTS, CloseInfo, ReconnectInfo
from ._wire import MAX_QUEUE_LIMIT, TokenProvider

__all__ = [
    "EVENTS",
    "MAX_QUEUE_LIMIT",
    "CloseInfo",
    "ReconnectInfo",
    "State",
    "ThinWSClient",
    "ThinWSClosed",
    "ThinWSConnectError",
    "ThinWSDisconnected",
    "ThinWSError",
    "ThinWSTimeout",
    "TokenProvider",
]
