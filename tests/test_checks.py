"""The system checks of thinws_channels/checks.py: one id per misconfiguration."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error, Tags, Warning, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from thinws_channels.checks import check_channel_layer, check_settings

MEMORY = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
PUBSUB = {
    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
}


def core(**config: Any) -> dict[str, Any]:
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"], **config},
    }


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def thinws_ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages if m.id and m.id.startswith("thinws_channels.")]


# the test settings -------------------------------------------------------------------------------


def test_no_errors_for_the_test_settings():
    # The protocol tests' profile opens the door to anonymous sockets: a warning, not an error.
    assert ids(check_settings()) == ["thinws_channels.W003"]
    # The test settings use the in-memory layer with DEBUG off: a warning, not an error.
    assert ids(check_channel_layer()) == ["thinws_channels.W002"]
    messages = run_checks(tags=[Tags.compatibility])
    assert not [m for m in messages if m.is_serious()]
    assert sorted(thinws_ids(messages)) == ["thinws_channels.W002", "thinws_channels.W003"]


def test_manage_py_check_passes_with_the_test_settings(capsys):
    call_command("check")
    assert "thinws_channels.W002" in capsys.readouterr().err


@override_settings(DEBUG=True)
def test_in_memory_layer_is_fine_with_debug():
    assert check_channel_layer() == []
    assert thinws_ids(run_checks()) == []


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"CHANNEL_LAYER": "default"},
        {"INSTANCE_NAME": "web-1"},
        {"LEGACY_MESSAGE_KEY": True},
        {"LEGACY_MESSAGE_KEY": False},
        {"SUBSCRIBE_PROBE_TIMEOUT": 0.5, "HEARTBEAT_INTERVAL": 10},
    ],
)
def test_valid_settings(value):
    with override_settings(THINWS_CHANNELS=value):
        assert check_settings() == []


def test_missing_setting_is_fine(settings):
    del settings.THINWS_CHANNELS
    assert check_settings() == []
    assert ids(check_channel_layer()) == ["thinws_channels.W002"]


# THINWS_CHANNELS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [["LEGACY_MESSAGE_KEY"], "default", 1])
def test_e001_not_a_dict(value):
    with override_settings(THINWS_CHANNELS=value):
        messages = check_settings()
    assert ids(messages) == ["thinws_channels.E001"]
    assert isinstance(messages[0], Error)
    assert type(value).__name__ in messages[0].msg


def test_e002_unknown_keys_one_error_each():
    with override_settings(
        THINWS_CHANNELS={"LEGACY_MESSAGE_KEYS": True, "CHANNEL_LAYER": "default", "capacity": 5}
    ):
        messages = check_settings()
    assert ids(messages) == ["thinws_channels.E002", "thinws_channels.E002"]
    assert "'LEGACY_MESSAGE_KEYS'" in messages[0].msg and "'capacity'" in messages[1].msg
    assert "LEGACY_MESSAGE_KEY" in messages[0].hint


@pytest.mark.parametrize("key", ["CHANNEL_LAYER", "INSTANCE_NAME"])
@pytest.mark.parametrize("value", [5, None, ["default"]])
def test_e003_not_a_string(key, value):
    with override_settings(THINWS_CHANNELS={key: value}):
        messages = check_settings()
    assert ids(messages) == ["thinws_channels.E003"]
    assert key in messages[0].msg


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_e004_legacy_message_key_not_a_bool(value):
    with override_settings(THINWS_CHANNELS={"LEGACY_MESSAGE_KEY": value}):
        messages = check_settings()
    assert ids(messages) == ["thinws_channels.E004"]
    assert repr(value) in messages[0].msg


@pytest.mark.parametrize(
    "key", ["SUBSCRIBE_PROBE_TIMEOUT", "HEARTBEAT_INTERVAL", "GROUP_REFRESH_INTERVAL"]
)
@pytest.mark.parametrize("value", [0, -1, 0.0, "2", True, None])
def test_e005_not_a_positive_number(key, value):
    with override_settings(THINWS_CHANNELS={key: value}):
        messages = check_settings()
    assert ids(messages) == ["thinws_channels.E005"]
    assert key in messages[0].msg


def test_several_problems_are_all_reported():
    with override_settings(
        THINWS_CHANNELS={
            "bogus": 1,
            "INSTANCE_NAME": 3,
            "LEGACY_MESSAGE_KEY": "no",
            "HEARTBEAT_INTERVAL": 0,
            "SUBSCRIBE_PROBE_TIMEOUT": -2,
        }
    ):
        assert ids(check_settings()) == [
            "thinws_channels.E002",
            "thinws_channels.E003",
            "thinws_channels.E004",
            "thinws_channels.E005",
            "thinws_channels.E005",
        ]


# CHANNEL_LAYERS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "thinws"),
    [
        ({}, {}),
        ({"other": MEMORY}, {}),
        ({"default": MEMORY}, {"CHANNEL_LAYER": "rooms"}),
        ({"default": MEMORY}, {"CHANNEL_LAYER": 5}),
    ],
)
def test_e010_no_such_channel_layer(layers, thinws):
    with override_settings(CHANNEL_LAYERS=layers, THINWS_CHANNELS=thinws):
        messages = check_channel_layer()
    assert ids(messages) == ["thinws_channels.E010"]
    assert isinstance(messages[0], Error)


def test_e010_when_channel_layers_is_missing(settings):
    del settings.CHANNEL_LAYERS
    assert ids(check_channel_layer()) == ["thinws_channels.E010"]


def test_the_configured_alias_is_checked():
    with override_settings(
        CHANNEL_LAYERS={"default": MEMORY, "rooms": PUBSUB},
        THINWS_CHANNELS={"CHANNEL_LAYER": "rooms"},
    ):
        assert check_channel_layer() == []


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (core(), ["thinws_channels.W001"]),  # channels_redis's default capacity is 100
        (core(capacity=999), ["thinws_channels.W001"]),
        (core(capacity=1000), []),
        (core(capacity=100_000), []),
        (PUBSUB, []),
    ],
)
def test_w001_core_layer_capacity(layer, expected):
    with override_settings(CHANNEL_LAYERS={"default": layer}):
        messages = check_channel_layer()
    assert ids(messages) == expected
    assert all(isinstance(m, Warning) and not m.is_serious() for m in messages)


def test_w002_in_memory_layer_without_debug():
    with override_settings(DEBUG=False, CHANNEL_LAYERS={"default": MEMORY}):
        messages = check_channel_layer()
    assert ids(messages) == ["thinws_channels.W002"]
    assert isinstance(messages[0], Warning)


# registration ------------------------------------------------------------------------------------


def test_checks_are_registered_with_django():
    with override_settings(THINWS_CHANNELS={"nope": 1}, CHANNEL_LAYERS={}):
        # Django keeps registered checks in a set: the order in which they run is not defined.
        assert sorted(thinws_ids(run_checks())) == ["thinws_channels.E002", "thinws_channels.E010"]
        with pytest.raises(SystemCheckError, match=r"thinws_channels\.E002"):
            call_command("check")


def test_none_counts_as_no_settings():
    with override_settings(THINWS_CHANNELS=None):
        assert check_settings() == []


@pytest.mark.parametrize(
    "layer", ["x", {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": 3}]
)
def test_e011_layer_entry_not_a_dict(layer):
    with override_settings(CHANNEL_LAYERS={"default": layer}):
        messages = check_channel_layer()
    assert ids(messages) == ["thinws_channels.E011"]
    assert repr(layer) in messages[0].msg


def test_w001_not_raised_for_a_capacity_that_is_not_a_number():
    layer = {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"capacity": "5"}}
    with override_settings(CHANNEL_LAYERS={"default": layer}):
        assert check_channel_layer() == []
