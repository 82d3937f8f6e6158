"""ASGI entry point of the demo: HTTP through Django, WebSockets through thinws_channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()  # set Django up before importing consumers

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from thinws_channels.routing import websocket_urlpatterns  # noqa: E402
from thinws_channels.security import OriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        # /static/ (the demo's CSS and JS, and thinws.js) is served by Django's staticfiles
        # finders, straight from the source folders, in any DEBUG mode: `python3
        # demo_project/run.py` needs no collectstatic. A real deployment serves /static/ from
        # the proxy instead (docs/deployment.md).
        "http": ASGIStaticFilesHandler(django_asgi_app),
        # A foreign Origin is refused (HTTP 403); clients that send none (native apps with a
        # token) get through. See docs/security.md.
        "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
