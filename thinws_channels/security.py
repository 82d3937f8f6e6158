"""Origin checking for the WebSocket route: against cross-site WebSocket hijacking.

A browser sends the page's ``Origin`` with every WebSocket handshake, and sends the site's
cookies along whatever page opened the socket. Without an Origin check, any site a logged-in user
visits could open a socket to yours that acts as them. channels' ``AllowedHostsOriginValidator``
stops that, but also refuses every client that sends no ``Origin`` at all: the native apps,
services and scripts that connect with a signed token.

:class:`OriginValidator` refuses a foreign or malformed Origin (daphne answers HTTP 403) and lets a
handshake without one through: a browser always sends Origin, so such a handshake does not come
from another site's page, and it cannot act as anyone without a cookie or token it holds itself.

    application = ProtocolTypeRouter({
        "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    })
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from django.conf import settings


class OriginValidator(ChannelsOriginValidator):
    """Allow the Origins of ``allowed_origins`` (default: ``ALLOWED_HOSTS``, read at each
    handshake, with ``localhost`` in DEBUG when it is empty) and handshakes without an Origin
    unless ``allow_missing`` is False."""

    def __init__(
        self,
        application: Any,
        allowed_origins: Sequence[str] | None = None,
        *,
        allow_missing: bool = True,
    ) -> None:
        super().__init__(application, list(allowed_origins or []))
        self._from_settings = allowed_origins is None
        self.allow_missing = allow_missing

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return self.allow_missing
        if self._from_settings:
            hosts = list(settings.ALLOWED_HOSTS)
            if settings.DEBUG and not hosts:
                hosts = ["localhost", "127.0.0.1", "[::1]"]
            self.allowed_origins = hosts
        return bool(self.validate_origin(parsed_origin))
