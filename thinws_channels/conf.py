"""The app's settings: one ``THINWS_CHANNELS`` dict, read at every access.

Reading lazily means ``override_settings`` just works and nothing is cached at import time.
Each property here has a check in ``checks.py`` and a row in ``docs/configuration.md``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "CHANNEL_LAYER": "default",
    "INSTANCE_NAME": "",
    "LEGACY_MESSAGE_KEY": False,
    "SUBSCRIBE_PROBE_TIMEOUT": 2.0,
    "HEARTBEAT_INTERVAL": 30.0,
    "GROUP_REFRESH_INTERVAL": 60.0,
    # Who may connect, subscribe and publish (docs/security.md).
    "ANONYMOUS": "token",
    "TOKEN_MAX_AGE": 3600.0,
    "SUBSCRIBE_POLICY": "any",
    "PUBLISH_POLICY": "members",
    # Limits; None turns one off (docs/security.md).
    "MAX_FRAME_BYTES": 65536,
    "MAX_CONNECTION_ID_LENGTH": 128,
    "MAX_ROOM_ID_LENGTH": 200,
    "MAX_ROOMS_PER_CONNECTION": 100,
    "MAX_SOCKETS_PER_CONNECTION": 20,
    "MAX_CONNECTIONS_PER_ADDRESS": 100,
    "CLIENT_ADDRESS_HEADER": None,
    "RATE_LIMIT": 30.0,
    "RATE_BURST": 60,
    "RATE_LIMIT_CLOSE_AFTER": 30,
    "MAX_PAYLOAD_DEPTH": 32,
    "MAX_SEND_BUFFER": 1_048_576,
    "CONNECT_TIMEOUT": 30.0,
}

ANONYMOUS_CHOICES = ("token", "refuse", "open")
SUBSCRIBE_POLICIES = ("any", "users")
PUBLISH_POLICIES = ("members", "users", "nobody")

# Limits that are whole numbers above 0 (or None), and limits that are seconds or rates above 0.
INTEGER_LIMITS = (
    "MAX_FRAME_BYTES",
    "MAX_CONNECTION_ID_LENGTH",
    "MAX_ROOM_ID_LENGTH",
    "MAX_ROOMS_PER_CONNECTION",
    "MAX_SOCKETS_PER_CONNECTION",
    "MAX_CONNECTIONS_PER_ADDRESS",
    "RATE_BURST",
    "RATE_LIMIT_CLOSE_AFTER",
    "MAX_PAYLOAD_DEPTH",
    "MAX_SEND_BUFFER",
)
NUMBER_LIMITS = ("RATE_LIMIT", "CONNECT_TIMEOUT")


class Settings:
    def _get(self, name: str) -> Any:
        user = getattr(settings, "THINWS_CHANNELS", None) or {}
        return user.get(name, DEFAULTS[name])

    @property
    def CHANNEL_LAYER(self) -> str:
        """Alias in ``CHANNEL_LAYERS`` that carries the rooms."""
        return str(self._get("CHANNEL_LAYER"))

    @property
    def INSTANCE_NAME(self) -> str:
        """A name for this server process in the admin; empty means ``hostname:pid``."""
        return str(self._get("INSTANCE_NAME"))

    @property
    def LEGACY_MESSAGE_KEY(self) -> bool:
        """Relay every room message with the payload under ``message`` too (1.0.x clients)."""
        return bool(self._get("LEGACY_MESSAGE_KEY"))

    @property
    def SUBSCRIBE_PROBE_TIMEOUT(self) -> float:
        """Seconds to wait for the pub/sub layer to confirm a new group subscription."""
        return float(self._get("SUBSCRIBE_PROBE_TIMEOUT"))

    @property
    def GROUP_REFRESH_INTERVAL(self) -> float:
        """Seconds between re-adds of a process's group memberships (layers that expire them)."""
        return float(self._get("GROUP_REFRESH_INTERVAL"))

    @property
    def HEARTBEAT_INTERVAL(self) -> float:
        """Seconds between a process's heartbeats in the database (who is online)."""
        return float(self._get("HEARTBEAT_INTERVAL"))

    # Security ----------------------------------------------------------------------------------

    @property
    def ANONYMOUS(self) -> str:
        """Anonymous sockets: "token" (need a signed token), "refuse", or "open" (insecure)."""
        return str(self._get("ANONYMOUS"))

    @property
    def TOKEN_MAX_AGE(self) -> float:
        """Seconds a token from ``issue_token()`` is valid unless it says otherwise."""
        return float(self._get("TOKEN_MAX_AGE"))

    @property
    def SUBSCRIBE_POLICY(self) -> str:
        """Who may subscribe: "any" connection, or "users" (a user is known)."""
        return str(self._get("SUBSCRIBE_POLICY"))

    @property
    def PUBLISH_POLICY(self) -> str:
        """Who may publish: "members" of the room, "users" (members with a user), "nobody"."""
        return str(self._get("PUBLISH_POLICY"))

    def limit(self, name: str) -> Any:
        """A limit's value, or None when it is off."""
        return self._get(name)


conf = Settings()
