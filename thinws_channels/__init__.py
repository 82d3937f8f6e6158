"""thinws-channels: horizontally scalable WebSocket rooms for Django (the ThinWS protocol)."""

__version__ = "0.1.0"
