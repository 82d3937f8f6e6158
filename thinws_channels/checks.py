"""System checks for the app's configuration: ``python manage.py check`` runs them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import (
    ANONYMOUS_CHOICES,
    DEFAULTS,
    INTEGER_LIMITS,
    NUMBER_LIMITS,
    PUBLISH_POLICIES,
    SUBSCRIBE_POLICIES,
)

CORE_LAYER = "channels_redis.core.RedisChannelLayer"
MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
MIN_CORE_CAPACITY = 1000


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    user = getattr(settings, "THINWS_CHANNELS", None)
    if user is None:
        return []
    if not isinstance(user, dict):
        return [
            Error(
                f"THINWS_CHANNELS must be a dict, got {type(user).__name__}.",
                hint="Set THINWS_CHANNELS = {...} in your settings, or remove it.",
                id="thinws_channels.E001",
            )
        ]
    errors: list[Error | Warning] = []
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            Error(
                f"THINWS_CHANNELS has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="thinws_channels.E002",
            )
        )
    for key in ("CHANNEL_LAYER", "INSTANCE_NAME"):
        if key in user and not isinstance(user[key], str):
            errors.append(
                Error(
                    f"THINWS_CHANNELS[{key!r}] must be a string, got {user[key]!r}.",
                    id="thinws_channels.E003",
                )
            )
    if "LEGACY_MESSAGE_KEY" in user and not isinstance(user["LEGACY_MESSAGE_KEY"], bool):
        errors.append(
            Error(
                "THINWS_CHANNELS['LEGACY_MESSAGE_KEY'] must be True or False, got "
                f"{user['LEGACY_MESSAGE_KEY']!r}.",
                id="thinws_channels.E004",
            )
        )
    for key in ("SUBSCRIBE_PROBE_TIMEOUT", "HEARTBEAT_INTERVAL", "GROUP_REFRESH_INTERVAL"):
        if key in user and not _positive_number(user[key]):
            errors.append(
                Error(
                    f"THINWS_CHANNELS[{key!r}] must be a number of seconds above 0, got "
                    f"{user[key]!r}.",
                    id="thinws_channels.E005",
                )
            )
    errors.extend(_check_security(user))
    return errors


def _check_security(user: dict[str, Any]) -> list[Error | Warning]:
    errors: list[Error | Warning] = []
    for key, choices in (
        ("ANONYMOUS", ANONYMOUS_CHOICES),
        ("SUBSCRIBE_POLICY", SUBSCRIBE_POLICIES),
        ("PUBLISH_POLICY", PUBLISH_POLICIES),
    ):
        if key in user and user[key] not in choices:
            errors.append(
                Error(
                    f"THINWS_CHANNELS[{key!r}] is {user[key]!r}, expected one of: "
                    f"{', '.join(repr(c) for c in choices)}.",
                    hint="See docs/security.md.",
                    id="thinws_channels.E006",
                )
            )
    for key in INTEGER_LIMITS:
        value = user.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            errors.append(
                Error(
                    f"THINWS_CHANNELS[{key!r}] must be a whole number above 0, or None for no "
                    f"limit, got {value!r}.",
                    id="thinws_channels.E007",
                )
            )
    for key in (*NUMBER_LIMITS, "TOKEN_MAX_AGE"):
        value = user.get(key)
        if (value is not None or key == "TOKEN_MAX_AGE") and key in user:
            if not _positive_number(value):
                errors.append(
                    Error(
                        f"THINWS_CHANNELS[{key!r}] must be a number above 0"
                        + (", or None to turn it off" if key in NUMBER_LIMITS else "")
                        + f", got {value!r}.",
                        id="thinws_channels.E008",
                    )
                )
    header = user.get("CLIENT_ADDRESS_HEADER")
    if header is not None and (not isinstance(header, str) or not header.strip()):
        errors.append(
            Error(
                "THINWS_CHANNELS['CLIENT_ADDRESS_HEADER'] must be a header name such as "
                f"'X-Forwarded-For', or None, got {header!r}.",
                id="thinws_channels.E009",
            )
        )
    if user.get("ANONYMOUS") == "open" and not settings.DEBUG:
        errors.append(
            Warning(
                "THINWS_CHANNELS['ANONYMOUS'] is 'open': any anonymous client may connect with "
                "any connectionID not bound to a user, and read its rooms.",
                hint="Use 'token' (the default) and issue tokens with "
                "thinws_channels.tokens.issue_token(); see docs/security.md.",
                id="thinws_channels.W003",
            )
        )
    return errors


@register(Tags.compatibility)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    user = getattr(settings, "THINWS_CHANNELS", None) or {}
    alias = user.get("CHANNEL_LAYER", "default") if isinstance(user, dict) else "default"
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if not isinstance(alias, str) or alias not in layers:
        return [
            Error(
                f"No channel layer {alias!r} in CHANNEL_LAYERS: thinws_channels needs one to "
                "deliver room messages.",
                hint="Add CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'channels_redis.pubsub.RedisPubSubChannelLayer', 'CONFIG': {'hosts': "
                "['redis://127.0.0.1:6379/0']}}} (see docs/configuration.md).",
                id="thinws_channels.E010",
            )
        ]
    layer = layers[alias]
    if not isinstance(layer, dict) or not isinstance(layer.get("CONFIG") or {}, dict):
        return [
            Error(
                f"CHANNEL_LAYERS[{alias!r}] must be a dict with 'BACKEND' and an optional "
                f"'CONFIG' dict, got {layer!r}.",
                id="thinws_channels.E011",
            )
        ]
    backend = layer.get("BACKEND", "")
    config = layer.get("CONFIG") or {}
    capacity = config.get("capacity", 100)
    warnings: list[Error | Warning] = []
    if backend == CORE_LAYER and _positive_number(capacity) and capacity < MIN_CORE_CAPACITY:
        warnings.append(
            Warning(
                f"Channel layer {alias!r} is RedisChannelLayer with capacity "
                f"{capacity}: each process receives every room message "
                "through one channel, and the layer drops messages past the capacity.",
                hint=f"Set 'capacity' to {MIN_CORE_CAPACITY * 10} or more in its CONFIG, or use "
                "RedisPubSubChannelLayer (docs/configuration.md).",
                id="thinws_channels.W001",
            )
        )
    if backend == MEMORY_LAYER and not settings.DEBUG:
        warnings.append(
            Warning(
                f"Channel layer {alias!r} is the in-memory layer: rooms are not shared between "
                "server processes.",
                hint="Use channels_redis.pubsub.RedisPubSubChannelLayer in production.",
                id="thinws_channels.W002",
            )
        )
    return warnings
