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
}


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


conf = Settings()
