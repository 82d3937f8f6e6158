"""Unit and property tests of ``thinws_channels.protocol``: pure, no database, no event loop.

The module is the wire contract (``docs/protocol.md``), so these tests pin it field by field:
every rule of the envelope table, the order of the checks, what an error reply echoes, the frames
the original 1.0.x client sends, the group naming rule and the server-to-client frames.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import unicodedata
from typing import Any

import orjson
import pytest
from channels.layers import BaseChannelLayer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinws_channels import protocol
from thinws_channels.protocol import (
    CloseCode,
    Envelope,
    ErrorCode,
    Frame,
    FrameType,
    ProtocolError,
    ack_frame,
    connection_group,
    decode,
    encode,
    error_frame,
    parse,
    read_frame,
    room_group,
    room_message_frame,
    storage_key,
    validate_fields,
    validate_room_id,
)

MAX_SAFE = 2**53 - 1
ROOM_TYPES = ["subscribe", "unsubscribe", "message"]
PARSE_CODES = {ErrorCode.INVALID_JSON, ErrorCode.INVALID_ENVELOPE, ErrorCode.UNKNOWN_TYPE}
GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]+$")  # channels' BaseChannelLayer.group_name_regex

fuzz = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# Helpers ------------------------------------------------------------------------------------


def dumps(value: Any, *, ensure_ascii: bool = False) -> str:
    """JSON text as a client would write it (the stdlib also writes integers beyond 64 bits)."""
    return json.dumps(value, ensure_ascii=ensure_ascii)


def client_frame(type_: str, **fields: Any) -> dict[str, Any]:
    """A client frame with the fields its type needs, overridden or extended by ``fields``."""
    needed: dict[str, Any] = {
        "connect": {"connectionID": "c-42"},
        "subscribe": {"roomID": "lobby"},
        "unsubscribe": {"roomID": "lobby"},
        "message": {"roomID": "lobby", "payload": {"text": "hi"}},
        "disconnect": {},
    }.get(type_, {})
    return {"type": type_, "messageID": 1, **needed, **fields}


def without(frame: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in frame.items() if key not in names}


def refused(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(text)
    return info.value


def refused_obj(value: Any) -> ProtocolError:
    return refused(dumps(value))


def legacy_hash(text: str) -> str:
    """The original client's connectionID: a 32-bit signed string hash, written in decimal."""
    h = 0
    for char in text:
        h = (h * 31 + ord(char)) & 0xFFFFFFFF
    return str(h - 2**32 if h >= 2**31 else h)


# Constants ----------------------------------------------------------------------------------


def test_protocol_version():
    assert protocol.PROTOCOL_VERSION == 1


def test_frame_types_are_the_five_of_the_contract():
    assert [t.value for t in FrameType] == [
        "connect",
        "subscribe",
        "unsubscribe",
        "message",
        "disconnect",
    ]


def test_error_codes_are_the_closed_set_of_the_contract():
    assert {c.value for c in ErrorCode} == {
        "invalid_json",
        "unsupported_data",
        "invalid_envelope",
        "unknown_type",
        "not_connected",
        "already_connected",
        "forbidden",
        "not_subscribed",
        "too_large",
        "rate_limited",
        "limit_exceeded",
        "unavailable",
        "internal",
    }


def test_close_codes():
    assert {c.name: c.value for c in CloseCode} == {
        "NORMAL": 1000,
        "MESSAGE_TOO_BIG": 1009,
        "REFUSED": 4001,
        "UNSUPPORTED_DATA": 4003,
        "POLICY": 4008,
        "TOO_LARGE": 4009,
        "GOING_AWAY": 4012,
    }


@pytest.mark.parametrize("code", list(CloseCode))
def test_close_codes_are_ones_daphne_can_send(code):
    # daphne sends 1000 and 3000-4999 only; 1009 is daphne's own, never sent by the app.
    assert code in (CloseCode.NORMAL, CloseCode.MESSAGE_TOO_BIG) or 4000 <= code <= 4999


def test_limits():
    assert protocol.MAX_MESSAGE_ID_LENGTH == 64
    assert protocol.MAX_CONNECTION_ID_LENGTH == 128
    assert protocol.MAX_ROOM_ID_LENGTH == 200
    assert protocol.MAX_SAFE_INTEGER == MAX_SAFE


def test_protocol_module_imports_no_django():
    code = (
        "import sys, thinws_channels.protocol; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'channels')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Valid frames ------------------------------------------------------------------------------


def test_connect():
    assert parse('{"type":"connect","messageID":1,"connectionID":"c-42"}') == Envelope(
        FrameType.CONNECT, 1, connection_id="c-42"
    )


def test_connect_with_token():
    envelope = parse(dumps(client_frame("connect", token="signed:token")))
    assert envelope.token == "signed:token"
    assert envelope.connection_id == "c-42"


@pytest.mark.parametrize("type_", ["subscribe", "unsubscribe"])
def test_subscribe_and_unsubscribe(type_):
    assert parse(dumps(client_frame(type_, messageID="m-1"))) == Envelope(
        FrameType(type_), "m-1", room_id="lobby"
    )


def test_message():
    assert parse(dumps(client_frame("message"))) == Envelope(
        FrameType.MESSAGE, 1, room_id="lobby", payload={"text": "hi"}, legacy=False
    )


def test_disconnect():
    assert parse('{"type":"disconnect","messageID":3}') == Envelope(FrameType.DISCONNECT, 3)


def test_envelope_is_frozen():
    envelope = parse(dumps(client_frame("disconnect")))
    with pytest.raises(AttributeError):
        envelope.message_id = 2  # type: ignore[misc]


def test_parse_accepts_bytes():
    assert parse(b'{"type":"disconnect","messageID":1}') == Envelope(FrameType.DISCONNECT, 1)


def test_parse_accepts_utf8_bytes():
    text = dumps(client_frame("subscribe", roomID="大厅 😀"))
    assert parse(text.encode("utf-8")).room_id == "大厅 😀"


def test_parse_is_read_frame_then_validate_fields():
    data = client_frame("subscribe")
    frame = read_frame(decode(dumps(data)))
    assert frame == Frame(FrameType.SUBSCRIBE, 1, data)
    assert validate_fields(frame) == parse(dumps(data))


def test_read_frame_does_not_check_fields():
    # The consumer checks "connected" between read_frame and validate_fields.
    frame = read_frame({"type": "subscribe", "messageID": 5})
    assert frame.type is FrameType.SUBSCRIBE
    with pytest.raises(ProtocolError) as info:
        validate_fields(frame)
    assert info.value.code is ErrorCode.INVALID_ENVELOPE
    assert info.value.message_id == 5


def test_whitespace_around_json_is_fine():
    assert parse(' \n\t{"type" : "disconnect" , "messageID" : 1}\r\n ').message_id == 1


# invalid_json -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "{",
        "}",
        "{'type': 'connect'}",  # single quotes
        '{"type": "connect",}',  # trailing comma
        '{"type": "connect"} {}',  # two values
        '{"type": "connect"} x',
        '{type: "connect"}',
        '{"type": "connect" // comment\n}',
        "NaN",
        "Infinity",
        '{"type":"message","messageID":1,"roomID":"r","payload":NaN}',
        '{"type":"message","messageID":1,"roomID":"r","payload":1e400}',
        '{"type":"message","messageID":1,"roomID":"r","payload":-1e400}',
        '{"type":"disconnect","messageID":1e400}',
        '{"type":"subscribe","messageID":1,"roomID":"\\ud800"}',  # escaped lone high surrogate
        '{"type":"subscribe","messageID":1,"roomID":"\\udc00"}',  # escaped lone low surrogate
        '{"type":"subscribe","messageID":1,"roomID":"\\ude00\\ud83d"}',  # pair in wrong order
        '{"type":"subscribe","messageID":1,"roomID":"\ud800"}',  # raw lone surrogate
        '{"type":"subscribe","messageID":"\udfff","roomID":"r"}',
        '{"type":"sub\\x41"}',  # not a JSON escape
        '{"type":"a\tb"}',  # raw control character inside a JSON string
        "\ufeff{}",  # byte order mark
        "[" * 1025 + "]" * 1025,  # deeper than the parser's limit
        b'{"type":"\xff"}',  # not UTF-8
        b'{"type":"\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
        b"\x00",
    ],
)
def test_invalid_json(text):
    error = refused(text)
    assert error.code is ErrorCode.INVALID_JSON
    assert error.message.startswith("the frame is not valid JSON: ")
    assert error.message_id is None


def test_invalid_json_echoes_no_message_id():
    # The messageID of a frame that does not parse cannot be known.
    error = refused('{"messageID": 7, "type": "connect", "connectionID": "c"')
    assert (error.code, error.message_id) == (ErrorCode.INVALID_JSON, None)


def test_invalid_json_message_gives_the_parser_reason():
    assert "infinity" in refused('{"type":"disconnect","payload":1e400}').message
    assert "surrogate" in refused('{"type":"disconnect","x":"\\ud800"}').message


def test_lone_surrogates_are_refused_by_orjson_itself():
    # Not by our code: the guarantee rests on orjson, so pin it.
    for text in ['"\\ud800"', '"\\udbff"', '"\\udc00"', '"\ud800"']:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(text)


def test_surrogate_pairs_are_fine():
    # An escaped astral character is a valid pair, one code point.
    envelope = parse('{"type":"subscribe","messageID":1,"roomID":"\\ud83d\\ude00"}')
    assert envelope.room_id == "😀"


def test_duplicate_keys_last_wins():
    assert parse('{"type":"connect","type":"disconnect","messageID":1}').type is (
        FrameType.DISCONNECT
    )
    assert parse('{"type":"disconnect","messageID":1,"messageID":"b"}').message_id == "b"
    error = refused('{"type":"disconnect","type":"bogus","messageID":1}')
    assert error.code is ErrorCode.UNKNOWN_TYPE


def test_depth_limit_is_1024():
    payload = "[" * 1020 + "]" * 1020  # 1021 levels with the frame's own object
    text = '{"type":"message","messageID":1,"roomID":"r","payload":' + payload + "}"
    assert parse(text).payload is not None


# Envelope shape ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "described"),
    [
        ("[]", "an array"),
        ('[{"type":"connect","messageID":1,"connectionID":"c"}]', "an array"),
        ('"connect"', "a string"),
        ("1", "an integer"),
        ("-7", "an integer"),
        ("1.5", "a number"),
        ("true", "a boolean"),
        ("false", "a boolean"),
        ("null", "null"),
    ],
)
def test_frame_must_be_an_object(text, described):
    error = refused(text)
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message == f"a frame must be a JSON object, got {described}"
    assert error.message_id is None


def test_empty_object():
    error = refused("{}")
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message == "the frame has no 'type' field"
    assert error.message_id is None


@pytest.mark.parametrize("message_id", [12, "m-12"])
def test_missing_type_echoes_the_message_id(message_id):
    error = refused_obj({"messageID": message_id, "roomID": "lobby"})
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert "'type'" in error.message
    assert error.message_id == message_id


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (5, "an integer 5"),
        (1.5, "a number 1.5"),
        (True, "a boolean True"),
        (None, "null"),
        ([], "an array"),
        (["connect"], "an array"),
        ({"name": "connect"}, "an object"),
    ],
)
def test_type_must_be_a_string(value, shown):
    error = refused_obj({"type": value, "messageID": 4})
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message == f"'type' must be a string, got {shown}"
    assert error.message_id == 4


# unknown_type -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "type_",
    [
        "Connect",
        "CONNECT",
        "connect ",
        " connect",
        "con nect",
        "",
        "ack",
        "error",
        "subscribed",
        "unsubscribed",
        "publish",
        "send",
        "ping",
        "\uff43\uff4f\uff4e\uff4e\uff45\uff43\uff54",  # full-width "connect"
        "connec\u0442",  # Cyrillic te
        "connect\u200b",
        "connect\x00",
        "😀",
    ],
)
def test_unknown_type(type_):
    error = refused_obj({"type": type_, "messageID": 9})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert repr(type_) in error.message
    assert error.message.endswith(
        "expected one of: connect, subscribe, unsubscribe, message, disconnect"
    )
    assert error.message_id == 9


def test_unknown_type_without_message_id():
    assert refused('{"type":"bogus"}').message_id is None


def test_unknown_type_is_cut_in_the_message():
    error = refused_obj({"type": "t" * 5000})
    assert "t" * 60 + "…" in error.message
    assert "t" * 61 not in error.message
    assert len(error.message) < 200


# messageID --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message_id",
    [
        0,
        1,
        -1,
        7,
        -12345,
        MAX_SAFE,
        -MAX_SAFE,
        "7",  # a string, echoed as a string
        "a",
        " ",
        "m-1",
        "x" * 64,
        "😀" * 64,  # 64 code points, 256 UTF-8 bytes
        "大" * 64,
        "é",
        "e\u0301",
        "\x00",  # only roomID and connectionID refuse control characters
    ],
)
@pytest.mark.parametrize("type_", [t.value for t in FrameType])
def test_valid_message_ids_are_echoed_exactly(type_, message_id):
    envelope = parse(dumps(client_frame(type_, messageID=message_id)))
    assert envelope.message_id == message_id
    assert type(envelope.message_id) is type(message_id)


def test_missing_message_id_is_none():
    assert parse('{"type":"subscribe","roomID":"lobby"}').message_id is None


def test_string_seven_is_not_the_number_seven():
    envelope = parse('{"type":"disconnect","messageID":"7"}')
    assert envelope.message_id == "7"
    assert encode(ack_frame(envelope.message_id)) == '{"type":"ack","messageID":"7"}'


@pytest.mark.parametrize(
    ("text_value", "expected"),
    [
        ("9007199254740991", MAX_SAFE),
        ("-9007199254740991", -MAX_SAFE),
        ("-0", 0),
        ("0", 0),
    ],
)
def test_integer_message_id_bounds_accepted(text_value, expected):
    envelope = parse('{"type":"disconnect","messageID":' + text_value + "}")
    assert envelope.message_id == expected
    assert type(envelope.message_id) is int


@pytest.mark.parametrize(
    ("text_value", "shown"),
    [
        # |n| >= 2**53
        ("9007199254740992", "9007199254740992"),
        ("-9007199254740992", "-9007199254740992"),
        ("9007199254740993", "9007199254740993"),
        ("9223372036854775807", "9223372036854775807"),
        ("18446744073709551615", "18446744073709551615"),
        # beyond 64 bits orjson gives a float, refused as not an integer
        ("18446744073709551616", "1.8446744073709552e+19"),
        ("-9223372036854775809", "-9.223372036854776e+18"),
        ("123456789012345678901234567890", "1.2345678901234568e+29"),
        # numbers that are not JSON integers
        ("7.0", "7.0"),
        ("1.5", "1.5"),
        ("-0.0", "-0.0"),
        ("1e2", "100.0"),
        ("1E0", "1.0"),
        ("true", "True"),
        ("false", "False"),
        ("null", "null"),
        ('""', "''"),
        ('"' + "x" * 65 + '"', "has 65 characters"),
        ('"' + "😀" * 65 + '"', "has 65 characters"),
        ("[]", "an array"),
        ("[1]", "an array"),
        ('{"id":1}', "an object"),
    ],
)
def test_invalid_message_id(text_value, shown):
    error = refused('{"type":"disconnect","messageID":' + text_value + "}")
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message.startswith("'messageID' ")
    assert shown in error.message
    assert error.message_id is None  # a bad messageID is never echoed


def test_message_id_out_of_range_message():
    error = refused('{"type":"disconnect","messageID":9007199254740992}')
    assert error.message == (
        "'messageID' 9007199254740992 is out of range: integers must have absolute value "
        "below 2**53"
    )


def test_message_id_wrong_type_message_says_what_is_expected():
    error = refused('{"type":"disconnect","messageID":7.0}')
    assert error.message == (
        "'messageID' must be a string of 1..64 characters or an integer with absolute value "
        "below 2**53, got a number 7.0"
    )


def test_long_message_id_is_cut_in_the_message():
    error = refused_obj({"type": "disconnect", "messageID": "m" * 5000})
    assert "has 5000 characters, expected 1..64" in error.message
    assert "m" * 60 + "…" in error.message
    assert "m" * 61 not in error.message
    assert len(error.message) < 200


# The order of the checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "about", "message_id"),
    [
        # JSON first: nothing else is looked at.
        ('{"type":"bogus","messageID":true', ErrorCode.INVALID_JSON, "JSON", None),
        ('{"type":5,"messageID":1.5,"roomID":""', ErrorCode.INVALID_JSON, "JSON", None),
        # Then the shape: an object.
        ('[{"type":"bogus"}]', ErrorCode.INVALID_ENVELOPE, "JSON object", None),
        # Then `type`, present and a string; a valid messageID is echoed, a bad one is not.
        ('{"messageID":1.5,"roomID":""}', ErrorCode.INVALID_ENVELOPE, "'type'", None),
        ('{"messageID":3,"roomID":""}', ErrorCode.INVALID_ENVELOPE, "'type'", 3),
        ('{"type":null,"messageID":true}', ErrorCode.INVALID_ENVELOPE, "'type'", None),
        ('{"type":["connect"],"messageID":"m"}', ErrorCode.INVALID_ENVELOPE, "'type'", "m"),
        # Then a known type.
        ('{"type":"Bogus","messageID":""}', ErrorCode.UNKNOWN_TYPE, "'Bogus'", None),
        ('{"type":"Bogus","messageID":2,"roomID":5}', ErrorCode.UNKNOWN_TYPE, "'Bogus'", 2),
        ('{"type":"Subscribe","messageID":2}', ErrorCode.UNKNOWN_TYPE, "'Subscribe'", 2),
        # Then messageID, before the fields.
        ('{"type":"subscribe","messageID":7.0}', ErrorCode.INVALID_ENVELOPE, "'messageID'", None),
        (
            '{"type":"subscribe","messageID":7.0,"roomID":""}',
            ErrorCode.INVALID_ENVELOPE,
            "'messageID'",
            None,
        ),
        (
            '{"type":"connect","messageID":[],"connectionID":5,"token":5}',
            ErrorCode.INVALID_ENVELOPE,
            "'messageID'",
            None,
        ),
        (
            '{"type":"message","messageID":9007199254740992,"roomID":"r"}',
            ErrorCode.INVALID_ENVELOPE,
            "'messageID'",
            None,
        ),
        # Then the fields, with the valid messageID echoed.
        ('{"type":"subscribe","messageID":8}', ErrorCode.INVALID_ENVELOPE, "'roomID'", 8),
        (
            '{"type":"message","messageID":"m8","roomID":"r"}',
            ErrorCode.INVALID_ENVELOPE,
            "'payload'",
            "m8",
        ),
        (
            '{"type":"message","messageID":8,"roomID":"","payload":1}',
            ErrorCode.INVALID_ENVELOPE,
            "'roomID'",
            8,
        ),
        ('{"type":"connect","messageID":8}', ErrorCode.INVALID_ENVELOPE, "'connectionID'", 8),
    ],
)
def test_check_order(text, code, about, message_id):
    error = refused(text)
    assert error.code is code
    assert about in error.message
    assert error.message_id == message_id
    assert error.frame()["messageID"] == message_id


# connectionID -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "connection_id",
    [
        "c",
        "c-42",
        "0",
        "-1234567",  # the original client's hashed form
        legacy_hash("my-app"),
        "x" * 128,
        "😀" * 128,  # 128 code points, 512 UTF-8 bytes
        "大" * 128,
        "user 42",
        " ",
        "é",
        "e\u0301",
        "a\u200db",
        "line\u2028separator",  # Zl, not a control character
    ],
)
def test_valid_connection_ids(connection_id):
    assert parse(dumps(client_frame("connect", connectionID=connection_id))).connection_id == (
        connection_id
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-1234567, "must be a string, got an integer -1234567"),
        (0, "must be a string, got an integer 0"),
        (4.5, "must be a string, got a number 4.5"),
        (True, "must be a string, got a boolean True"),
        (None, "must be a string, got null"),
        (["c"], "must be a string, got an array"),
        ({"id": "c"}, "must be a string, got an object"),
        ("", "'' has 0 characters, expected 1..128"),
        ("x" * 129, "has 129 characters, expected 1..128"),
        ("😀" * 129, "has 129 characters, expected 1..128"),
        ("c\x00", "control character '\\x00' at position 1"),
        ("\x7fc", "control character '\\x7f' at position 0"),
        ("ab\x85", "control character '\\x85' at position 2"),
        ("a\nb", "control character '\\n' at position 1"),
    ],
)
def test_invalid_connection_ids(value, shown):
    error = refused_obj(client_frame("connect", connectionID=value, messageID=21))
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message.startswith("'connectionID' ")
    assert shown in error.message
    assert error.message_id == 21


def test_connection_id_is_required_on_connect():
    error = refused_obj(without(client_frame("connect", messageID=22), "connectionID"))
    assert (error.code, error.message, error.message_id) == (
        ErrorCode.INVALID_ENVELOPE,
        "'connectionID' is required",
        22,
    )


# token ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["t", "", "a.b.c", "x" * 10_000, "é😀"])
def test_token_strings_are_kept(token):
    assert parse(dumps(client_frame("connect", token=token))).token == token


def test_token_is_optional():
    assert parse(dumps(client_frame("connect"))).token is None


def test_token_null_counts_as_absent():
    # Lenient on purpose: clients that serialise an unset optional field as null still connect.
    assert parse(dumps(client_frame("connect", token=None))).token is None


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        (5, "an integer 5"),
        (1.5, "a number 1.5"),
        (False, "a boolean False"),
        (["t"], "an array"),
        ({"t": 1}, "an object"),
    ],
)
def test_token_must_be_a_string(token, shown):
    error = refused_obj(client_frame("connect", token=token, messageID=23))
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message == f"'token' must be a string, got {shown}"
    assert error.message_id == 23


@pytest.mark.parametrize("type_", ["subscribe", "unsubscribe", "message", "disconnect"])
def test_token_is_ignored_on_other_types(type_):
    assert parse(dumps(client_frame(type_, token=5))).token is None


# roomID -----------------------------------------------------------------------------------


ROOM_IDS = [
    "lobby",
    "r",
    "x" * 200,
    "😀" * 200,  # astral characters count as one code point each
    "\U0001d518\U0001d52b\U0001d526",  # mathematical fraktur (astral plane)
    "\U00020000" * 200,  # CJK extension B (astral plane)
    "大厅",
    "комната",
    "مرحبا",
    "שלום",
    "🏳️‍🌈",  # four code points: flag, VS16, ZWJ, rainbow
    "🏳️‍🌈" * 50,  # exactly 200 code points
    "a b",
    " lobby ",
    " ",
    "é",  # precomposed
    "e\u0301",  # decomposed: kept as sent, not normalised
    "a\u200db",  # zero-width joiner (Cf)
    "\u200b",
    "\ufefflobby",
    "\u2028",  # line separator (Zl)
    "\u00a0",  # no-break space (Zs)
    "\ue000",  # private use
    "\U0010ffff",  # a noncharacter, still a code point
    "room/with/slashes",
    "room:with:colons",
    "thinws.room.0123",
    "'\"\\",
    "<script>",
    "null",
]


@pytest.mark.parametrize("room_id", ROOM_IDS)
@pytest.mark.parametrize("type_", ROOM_TYPES)
def test_valid_room_ids_are_kept_exactly(type_, room_id):
    for ensure_ascii in (False, True):  # raw UTF-8 and \u escapes give the same id
        text = dumps(client_frame(type_, roomID=room_id), ensure_ascii=ensure_ascii)
        assert parse(text).room_id == room_id


def test_room_id_lengths_are_code_points():
    assert len("🏳️‍🌈") == 4
    assert parse(dumps(client_frame("subscribe", roomID="😀" * 200))).room_id == "😀" * 200
    error = refused_obj(client_frame("subscribe", roomID="😀" * 201))
    assert "has 201 characters, expected 1..200" in error.message
    error = refused_obj(client_frame("subscribe", roomID="🏳️‍🌈" * 50 + "x"))
    assert "has 201 characters, expected 1..200" in error.message


CONTROL_CHARACTERS = [chr(c) for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]]


def test_control_characters_are_category_cc():
    assert [c for c in map(chr, range(0x110000)) if unicodedata.category(c) == "Cc"] == (
        CONTROL_CHARACTERS
    )


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_every_control_character_is_refused_in_room_ids(char):
    error = refused_obj(client_frame("subscribe", roomID=f"ab{char}cd", messageID=31))
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert f"contains the control character {char!r} at position 2" in error.message
    assert error.message_id == 31


@pytest.mark.parametrize(
    ("room_id", "char", "position"),
    [
        ("\x00", "\x00", 0),
        ("\x00lobby", "\x00", 0),
        ("lob\x7fby", "\x7f", 3),
        ("lobby\x85", "\x85", 5),
        ("a\tb", "\t", 1),
        ("a\r\nb", "\r", 1),
        ("\x1b[31mred", "\x1b", 0),
        ("😀😀\x9f", "\x9f", 2),  # positions count code points
        ("x" * 150 + "\x00" + "y" * 40, "\x00", 150),
    ],
)
@pytest.mark.parametrize("type_", ROOM_TYPES)
def test_control_characters_are_refused_naming_the_position(type_, room_id, char, position):
    error = refused_obj(client_frame(type_, roomID=room_id, messageID=32))
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message.startswith("'roomID' ")
    assert f"control character {char!r} at position {position}" in error.message
    assert char not in error.message  # shown escaped, never raw
    assert error.message_id == 32
    assert len(error.message) < 200


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "'roomID' must be a string, got null"),
        (5, "'roomID' must be a string, got an integer 5"),
        (1.25, "'roomID' must be a string, got a number 1.25"),
        (False, "'roomID' must be a string, got a boolean False"),
        (["lobby"], "'roomID' must be a string, got an array"),
        ({"id": "lobby"}, "'roomID' must be a string, got an object"),
        ("", "'roomID' '' has 0 characters, expected 1..200"),
        ("x" * 201, "has 201 characters, expected 1..200"),
    ],
)
@pytest.mark.parametrize("type_", ROOM_TYPES)
def test_invalid_room_ids(type_, value, shown):
    error = refused_obj(client_frame(type_, roomID=value, messageID=33))
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert shown in error.message
    assert error.message_id == 33


@pytest.mark.parametrize("type_", ROOM_TYPES)
def test_room_id_is_required(type_):
    error = refused_obj(without(client_frame(type_, messageID="q"), "roomID"))
    assert (error.code, error.message, error.message_id) == (
        ErrorCode.INVALID_ENVELOPE,
        "'roomID' is required",
        "q",
    )


def test_long_room_id_is_named_and_cut():
    error = refused_obj(client_frame("subscribe", roomID="r" * 5000))
    assert error.message == "'roomID' '" + "r" * 60 + "…' has 5000 characters, expected 1..200"


def test_long_wrong_room_id_is_cut():
    assert len(refused_obj(client_frame("subscribe", roomID=["r" * 5000])).message) < 100


# validate_room_id: the same rules for server-side callers (api.send_to_room) ------------------


@pytest.mark.parametrize("room_id", ROOM_IDS)
def test_validate_room_id_accepts_what_frames_accept(room_id):
    assert validate_room_id(room_id) == room_id


@pytest.mark.parametrize(
    ("room_id", "shown"),
    [
        ("", "'roomID' '' has 0 characters, expected 1..200"),
        ("x" * 201, "has 201 characters, expected 1..200"),
        ("a\x00", "control character '\\x00' at position 1"),
        (5, "'roomID' must be a string, got an integer 5"),
        (None, "'roomID' must be a string, got null"),
        # Lone surrogates cannot come through a frame (orjson refuses them) but can come from
        # Python code; they have no UTF-8 form, so no group name and no storage key.
        ("a\ud800", "contains the lone surrogate '\\ud800' at position 1"),
        ("\udfffb", "contains the lone surrogate '\\udfff' at position 0"),
        ("\ud83d\ude00", "contains the lone surrogate '\\ud83d' at position 0"),
    ],
)
def test_validate_room_id_refuses(room_id, shown):
    with pytest.raises(ProtocolError) as info:
        validate_room_id(room_id)
    assert info.value.code is ErrorCode.INVALID_ENVELOPE
    assert info.value.message_id is None
    assert shown in info.value.message
    encode(info.value.frame())  # the message itself is valid UTF-8


@pytest.mark.parametrize("connection_id", ["c\ud800", "\udc00"])
def test_lone_surrogates_are_refused_in_every_text_field(connection_id):
    # Through read_frame/validate_fields directly, as a caller that skips orjson would.
    frame = read_frame({"type": "connect", "messageID": 1, "connectionID": connection_id})
    with pytest.raises(ProtocolError) as info:
        validate_fields(frame)
    assert "lone surrogate" in info.value.message


# payload ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        None,
        0,
        -1,
        2**63 - 1,
        1.5,
        True,
        False,
        "",
        "text",
        "é😀大",
        "\x00",
        [],
        [1, "two", None],
        {},
        {"nested": {"list": [{"deep": True}]}},
        {"messageID": 5, "type": "connect"},  # looks like a frame, is just data
    ],
)
def test_any_json_payload(payload):
    envelope = parse(dumps(client_frame("message", payload=payload)))
    assert envelope.payload == payload
    assert envelope.legacy is False


def test_payload_null_is_not_missing():
    envelope = parse('{"type":"message","messageID":1,"roomID":"r","payload":null}')
    assert envelope.payload is None
    assert envelope.legacy is False


def test_payload_is_required():
    error = refused('{"type":"message","messageID":41,"roomID":"r"}')
    assert error.code is ErrorCode.INVALID_ENVELOPE
    assert error.message == "a 'message' frame needs a 'payload' (any JSON value, null included)"
    assert error.message_id == 41


@pytest.mark.parametrize("payload", ["hello", None, {"a": 1}, [1], 0])
def test_legacy_message_key(payload):
    text = dumps({"type": "message", "messageID": 1, "roomID": "r", "message": payload})
    envelope = parse(text)
    assert envelope.payload == payload
    assert envelope.legacy is True


@pytest.mark.parametrize(
    ("frame", "payload"),
    [
        ({"payload": "new", "message": "old"}, "new"),
        ({"message": "old", "payload": "new"}, "new"),  # key order does not matter
        ({"payload": None, "message": "old"}, None),
        ({"payload": "new", "message": None}, "new"),
    ],
)
def test_payload_wins_over_message(frame, payload):
    envelope = parse(dumps({"type": "message", "messageID": 1, "roomID": "r", **frame}))
    assert envelope.payload == payload
    assert envelope.legacy is False


@pytest.mark.parametrize("type_", ["connect", "subscribe", "unsubscribe", "disconnect"])
def test_payload_is_ignored_on_other_types(type_):
    envelope = parse(dumps(client_frame(type_, payload={"x": 1}, message="m")))
    assert envelope.payload is None
    assert envelope.legacy is False


# Fields that are unknown or do not apply ------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "extra"),
    [
        ("connect", {"roomID": "lobby"}),  # the original client's connect
        ("connect", {"roomID": 5}),
        ("connect", {"roomID": ""}),
        ("connect", {"roomID": "a\x00b"}),
        ("subscribe", {"connectionID": 5}),
        ("subscribe", {"connectionID": ""}),
        ("unsubscribe", {"token": ["t"]}),
        ("message", {"connectionID": None, "token": 1}),
        ("disconnect", {"roomID": 5, "connectionID": "", "payload": 1}),
        ("disconnect", {"roomID": "x" * 1000}),
        ("connect", {"version": 2, "protocol": 1, "foo": {"bar": []}}),
        ("message", {"id": "spoofed", "sender": "someone-else", "ts": 1.5}),
        ("subscribe", {"": None, "ROOMID": 5, "roomid": 5, "type ": "x"}),
    ],
)
def test_unknown_and_unrelated_fields_are_ignored(type_, extra):
    plain = parse(dumps(client_frame(type_)))
    assert parse(dumps(client_frame(type_, **extra))) == plain


def test_field_names_are_case_sensitive():
    error = refused('{"type":"subscribe","messageID":1,"RoomID":"lobby"}')
    assert error.message == "'roomID' is required"
    error = refused('{"Type":"subscribe","messageID":1,"roomID":"lobby"}')
    assert error.message == "the frame has no 'type' field"


# The original 1.0.x client ------------------------------------------------------------------


def test_legacy_session_as_the_original_client_sends_it():
    connection_id = legacy_hash("my-app")
    assert connection_id == "-1061206400"
    start = 4_503_599_627_370_000  # a random integer below 2**53; +1 per frame
    frames = [
        f'{{"messageID":{start},"type":"connect","connectionID":"{connection_id}"}}',
        f'{{"messageID":{start + 1},"type":"subscribe","roomID":"lobby"}}',
        f'{{"messageID":{start + 2},"type":"message","message":"hello all","roomID":"lobby"}}',
        f'{{"messageID":{start + 3},"type":"unsubscribe","roomID":"lobby"}}',
        f'{{"messageID":{start + 4},"type":"disconnect"}}',
    ]
    assert [parse(text) for text in frames] == [
        Envelope(FrameType.CONNECT, start, connection_id=connection_id),
        Envelope(FrameType.SUBSCRIBE, start + 1, room_id="lobby"),
        Envelope(FrameType.MESSAGE, start + 2, room_id="lobby", payload="hello all", legacy=True),
        Envelope(FrameType.UNSUBSCRIBE, start + 3, room_id="lobby"),
        Envelope(FrameType.DISCONNECT, start + 4),
    ]


def test_legacy_connect_with_room_id():
    text = '{"messageID":17,"type":"connect","connectionID":"-1234567","roomID":"lobby"}'
    assert parse(text) == Envelope(FrameType.CONNECT, 17, connection_id="-1234567")


@pytest.mark.parametrize("text", ["a", "", "my-app", "user:42", "x" * 1000, "é😀"])
def test_legacy_hashed_connection_ids_are_valid(text):
    connection_id = legacy_hash(text)
    assert re.fullmatch(r"-?\d{1,10}", connection_id)
    assert parse(dumps(client_frame("connect", connectionID=connection_id))).connection_id == (
        connection_id
    )


@pytest.mark.parametrize("start", [0, 1, 2**53 - 6])
def test_legacy_message_ids_counting_up(start):
    for message_id in range(start, start + 6):
        text = f'{{"messageID":{message_id},"type":"disconnect"}}'
        assert parse(text).message_id == message_id


def test_legacy_message_id_past_the_safe_range_is_refused():
    # Counting up from just below 2**53 walks out of the safe range: per the contract, refused.
    error = refused('{"messageID":9007199254740992,"type":"subscribe","roomID":"lobby"}')
    assert (error.code, error.message_id) == (ErrorCode.INVALID_ENVELOPE, None)


def test_legacy_message_text_with_json_inside():
    # The original client sends the app's text as is; the server does not parse it.
    text = dumps({"messageID": 5, "type": "message", "message": '{"a": 1}', "roomID": "r"})
    assert parse(text).payload == '{"a": 1}'


# Room and connection groups ---------------------------------------------------------------


def test_room_group_is_pinned():
    # A contract between processes and releases: a change here splits rooms during a deploy.
    assert room_group("lobby") == "thinws.room.4b5dc076e7b9c122b3c89121a9710fc73b490d48"
    assert room_group("大厅") == "thinws.room.ea6dca5fc82fc027bdb2ee7f5c6301d5c941614d"
    assert room_group("😀") == "thinws.room.f0443a342c5ef54783a111b51ba56c938e474c32"
    assert storage_key("lobby") == "4b5dc076e7b9c122b3c89121a9710fc73b490d48"
    assert connection_group("lobby") == "thinws.conn.4b5dc076e7b9c122b3c89121a9710fc73b490d48"


@pytest.mark.parametrize("room_id", ROOM_IDS)
def test_room_group_rule(room_id):
    digest = hashlib.sha256(room_id.encode("utf-8")).hexdigest()[:40]
    assert room_group(room_id) == "thinws.room." + digest
    assert storage_key(room_id) == digest
    assert connection_group(room_id) == "thinws.conn." + digest


@pytest.mark.parametrize("room_id", [*ROOM_IDS, "r" * 10_000])
def test_group_names_are_valid_channel_layer_group_names(room_id):
    layer = BaseChannelLayer()
    for name in (room_group(room_id), connection_group(room_id)):
        assert layer.require_valid_group_name(name)
        assert GROUP_NAME.fullmatch(name)
        assert len(name) < 100
        assert name.isascii()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a", "A"),
        ("lobby", "Lobby"),
        ("LOBBY", "lobby"),
        ("é", "e\u0301"),  # NFC vs NFD
        ("café", unicodedata.normalize("NFD", "café")),
        ("Å", "\u212b"),  # Latin A with ring vs the angstrom sign
        ("Ω", "\u2126"),  # Greek omega vs the ohm sign
        ("fi", "\ufb01"),  # the ligature
        ("lobby", "lobby "),  # trailing space
        ("lobby", " lobby"),
        ("lobby", "lobby\u00a0"),  # no-break space
        ("lobby", "\uff4c\uff4f\uff42\uff42\uff59"),  # full-width letters
        ("1", "\uff11"),  # full-width digit
        ("lobby", "lob\u200dby"),  # zero-width joiner
        ("lobby", "lobby\u200b"),  # zero-width space
        ("lobby", "\ufefflobby"),  # byte order mark
        ("a", "\u0430"),  # Latin vs Cyrillic
        ("o", "\u03bf"),  # Latin vs Greek
        ("ß", "ss"),
        ("straße", "STRASSE"),
        ("i", "\u0131"),  # dotless i
        ("İ", "i\u0307"),
        ("🏳️‍🌈", "🏳🌈"),  # without VS16 and ZWJ
        ("😀", "😀\ufe0f"),
        ("", " "),
    ],
)
def test_look_alike_room_ids_map_to_different_groups(first, second):
    assert first != second
    assert room_group(first) != room_group(second)
    assert storage_key(first) != storage_key(second)
    assert connection_group(first) != connection_group(second)


def test_room_and_connection_groups_of_one_id_differ():
    assert room_group("c-42") != connection_group("c-42")
    assert room_group("c-42").startswith(protocol.GROUP_PREFIX)
    assert connection_group("c-42").startswith(protocol.CONNECTION_GROUP_PREFIX)


# Server-to-client frames ------------------------------------------------------------------


def test_ack_frame():
    assert ack_frame(7) == {"type": "ack", "messageID": 7}
    assert ack_frame("m-7") == {"type": "ack", "messageID": "m-7"}
    assert ack_frame(None) == {"type": "ack", "messageID": None}


def test_connect_ack_frame():
    frame = ack_frame(
        1, protocol=protocol.PROTOCOL_VERSION, connectionID="c-42", rooms=["lobby", "news"]
    )
    assert encode(frame) == (
        '{"type":"ack","messageID":1,"protocol":1,"connectionID":"c-42","rooms":["lobby","news"]}'
    )


def test_message_ack_frame():
    assert encode(ack_frame(8, id="srv-1")) == '{"type":"ack","messageID":8,"id":"srv-1"}'


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_frame(code):
    frame = error_frame(code, "what went wrong", 9)
    assert frame == {
        "type": "error",
        "messageID": 9,
        "code": code.value,
        "message": "what went wrong",
    }
    assert type(frame["code"]) is str
    assert encode(frame) == (
        f'{{"type":"error","messageID":9,"code":"{code.value}","message":"what went wrong"}}'
    )


def test_error_frame_message_id_defaults_to_null():
    assert error_frame(ErrorCode.INTERNAL, "oops")["messageID"] is None


def test_protocol_error():
    error = ProtocolError(ErrorCode.NOT_SUBSCRIBED, "connection 'c-42' is not subscribed", 9)
    assert str(error) == error.message == "connection 'c-42' is not subscribed"
    assert (error.code, error.message_id) == (ErrorCode.NOT_SUBSCRIBED, 9)
    assert error.frame() == error_frame(ErrorCode.NOT_SUBSCRIBED, error.message, 9)


def test_protocol_error_is_a_value_error():
    assert issubclass(ProtocolError, ValueError)


def test_protocol_error_message_id_defaults_to_none():
    assert ProtocolError(ErrorCode.INTERNAL, "oops").frame()["messageID"] is None


def test_error_reply_of_a_parse_failure():
    error = refused('{"type":"subscribe","messageID":"s-1","roomID":""}')
    assert encode(error.frame()) == (
        '{"type":"error","messageID":"s-1","code":"invalid_envelope",'
        "\"message\":\"'roomID' '' has 0 characters, expected 1..200\"}"
    )


def test_room_message_frame():
    frame = room_message_frame("lobby", {"text": "hi"}, sender="c-42", message_id="srv-1")
    assert frame == {
        "type": "message",
        "roomID": "lobby",
        "payload": {"text": "hi"},
        "connectionID": "c-42",
        "messageID": "srv-1",
    }
    assert list(frame) == ["type", "roomID", "payload", "connectionID", "messageID"]


def test_room_message_frame_from_django_code_has_null_sender():
    frame = room_message_frame("lobby", None, sender=None, message_id="srv-2")
    assert encode(frame) == (
        '{"type":"message","roomID":"lobby","payload":null,"connectionID":null,"messageID":"srv-2"}'
    )


@pytest.mark.parametrize("payload", ["hello all", None, {"a": [1]}])
def test_room_message_frame_with_legacy_key(payload):
    frame = room_message_frame("r", payload, sender="-1234567", message_id="s", legacy_key=True)
    assert frame["payload"] == frame["message"] == payload
    assert set(frame) == {"type", "roomID", "payload", "connectionID", "messageID", "message"}


def test_room_message_frame_without_legacy_key_has_no_message():
    assert "message" not in room_message_frame("r", "x", sender="c", message_id="s")


def test_room_message_frame_options_are_keyword_only():
    with pytest.raises(TypeError):
        room_message_frame("r", "x", "c", "s")  # type: ignore[misc]


def test_encode_is_compact():
    assert encode({"type": "ack", "messageID": 1, "rooms": ["a", "b"], "x": {"y": None}}) == (
        '{"type":"ack","messageID":1,"rooms":["a","b"],"x":{"y":null}}'
    )


def test_encode_keeps_non_ascii_as_utf8():
    text = encode(room_message_frame("大厅", "é😀", sender="ж", message_id="s"))
    assert isinstance(text, str)
    assert "大厅" in text and "é😀" in text and '"ж"' in text
    assert "\\u" not in text


def test_encode_escapes_control_characters():
    assert encode({"payload": "a\x00b\n"}) == '{"payload":"a\\u0000b\\n"}'


@pytest.mark.parametrize("type_", [t.value for t in FrameType])
def test_encode_then_parse_round_trip(type_):
    data = client_frame(type_, roomID="大厅 😀", connectionID="ж-1", payload=[1, "é"])
    assert parse(encode(data)) == parse(dumps(data))


# Properties -----------------------------------------------------------------------------------


any_text = st.text(st.characters(exclude_categories=()))  # surrogates included
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson reads those as floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["type", "messageID", "connectionID", "roomID", "payload", "message", "token"]
)
type_values = st.sampled_from([*(t.value for t in FrameType), "Connect", "", "ack"]) | json_values
envelope_like = st.fixed_dictionaries(
    {"type": type_values},
    optional={
        "messageID": st.integers() | st.text(max_size=70) | json_values,
        "connectionID": st.text(max_size=130) | json_values,
        "roomID": st.text(max_size=205) | json_values,
        "payload": json_values,
        "message": json_values,
        "token": st.text() | json_values,
    },
) | st.dictionaries(field_names | any_text, json_values, max_size=6)


def check_outcome(text: str | bytes) -> None:
    """``parse`` either returns a valid envelope or raises one of its error codes, nothing else."""
    try:
        envelope = parse(text)
    except ProtocolError as error:
        assert error.code in PARSE_CODES
        assert isinstance(error.code, ErrorCode)
        assert isinstance(error.message, str) and error.message
        assert len(error.message) < 400
        assert error.message_id is None or isinstance(error.message_id, str | int)
        encode(error.frame())  # every error reply can be sent
        return
    assert isinstance(envelope.type, FrameType)
    assert envelope.message_id is None or isinstance(envelope.message_id, str | int)
    if isinstance(envelope.message_id, int):
        assert not isinstance(envelope.message_id, bool)
        assert abs(envelope.message_id) < 2**53
    if isinstance(envelope.message_id, str):
        assert 1 <= len(envelope.message_id) <= 64
    if envelope.type is FrameType.CONNECT:
        assert isinstance(envelope.connection_id, str)
        assert 1 <= len(envelope.connection_id) <= 128
        assert envelope.token is None or isinstance(envelope.token, str)
    if envelope.type in (FrameType.SUBSCRIBE, FrameType.UNSUBSCRIBE, FrameType.MESSAGE):
        assert isinstance(envelope.room_id, str)
        assert 1 <= len(envelope.room_id) <= 200
        assert not any(unicodedata.category(c) == "Cc" for c in envelope.room_id)
        assert BaseChannelLayer().require_valid_group_name(room_group(envelope.room_id))
    encode(ack_frame(envelope.message_id))


@fuzz
@given(any_text)
def test_parse_arbitrary_text(text):
    check_outcome(text)


@fuzz
@given(st.binary())
def test_parse_arbitrary_bytes(data):
    check_outcome(data)


@fuzz
@given(json_values, st.booleans())
def test_parse_arbitrary_json_values(value, ensure_ascii):
    check_outcome(dumps(value, ensure_ascii=ensure_ascii))


@fuzz
@given(envelope_like, st.booleans())
def test_parse_arbitrary_envelopes(value, ensure_ascii):
    check_outcome(dumps(value, ensure_ascii=ensure_ascii))


@fuzz
@given(envelope_like)
def test_a_valid_message_id_is_echoed_by_every_error_after_the_type_check(value):
    try:
        parse(dumps(value, ensure_ascii=True))
    except ProtocolError as error:
        if error.code is ErrorCode.INVALID_JSON:
            return
        message_id = value.get("messageID")
        valid = (isinstance(message_id, str) and 1 <= len(message_id) <= 64) or (
            isinstance(message_id, int)
            and not isinstance(message_id, bool)
            and abs(message_id) < 2**53
        )
        if valid:
            assert error.message_id == message_id
        else:
            assert error.message_id is None


room_text = st.text(
    st.characters(exclude_categories=("Cc", "Cs")),
    min_size=1,
    max_size=200,
)


@fuzz
@given(room_text, st.sampled_from(ROOM_TYPES), st.booleans())
def test_any_text_without_control_characters_is_a_room_id(room_id, type_, ensure_ascii):
    text = dumps(client_frame(type_, roomID=room_id), ensure_ascii=ensure_ascii)
    envelope = parse(text)
    assert envelope.room_id == room_id
    assert BaseChannelLayer().require_valid_group_name(room_group(room_id))


@fuzz
@given(room_text, room_text)
def test_different_room_ids_have_different_groups(first, second):
    assert (room_group(first) == room_group(second)) == (first == second)


wire_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
wire_values = st.recursive(
    wire_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@fuzz
@given(room_text, wire_values, st.none() | st.text(min_size=1), st.booleans())
def test_room_message_frames_round_trip(room_id, payload, sender, legacy_key):
    frame = room_message_frame(
        room_id, payload, sender=sender, message_id="s-1", legacy_key=legacy_key
    )
    assert orjson.loads(encode(frame)) == frame
