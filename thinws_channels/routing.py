"""URL routing: ``websocket_urlpatterns`` for ``asgi.py``, or ``thinws_path()`` to choose the path
or the consumer class."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path

from .consumers import ThinWSConsumer


def thinws_path(
    route: str = "ws/thinws/", consumer: type[ThinWSConsumer] = ThinWSConsumer, **initkwargs: Any
) -> URLPattern:
    """A URL pattern that serves ``consumer`` (a ThinWSConsumer subclass) at ``route``."""
    return path(route, consumer.as_asgi(**initkwargs), name="thinws")


websocket_urlpatterns = [thinws_path()]
