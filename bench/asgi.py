"""The demo project's ASGI app plus the plain Channels consumer at /ws/plain/ (benchmarks only).

DJANGO_SETTINGS_MODULE=demo_project.settings daphne bench.asgi:application
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from bench.plain_consumer import PlainRoomConsumer  # noqa: E402
from thinws_channels.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            URLRouter([*websocket_urlpatterns, path("ws/plain/", PlainRoomConsumer.as_asgi())])
        ),
    }
)
