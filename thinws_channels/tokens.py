"""Signed connection tokens: how a client that is not a logged-in browser proves who it is.

A token is issued by Django code (a view, a management command) for one connectionID, signed with
the project's ``SECRET_KEY`` through :mod:`django.core.signing`, and sent by the client in its
``connect`` frame. It may name a user (the socket then acts as that user), restrict the rooms the
socket may join to a list of patterns, and always carries an expiry. It is signed, not encrypted:
do not put secrets in it.

    from thinws_channels.tokens import issue_token

    token = issue_token("device-7f3a", user=request.user, rooms=["chat-*", "news"])
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from django.core import signing
from django.utils.crypto import salted_hmac

from . import protocol
from .conf import conf
from .exceptions import Forbidden

SALT = "thinws_channels.token"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token authorizes."""

    connection_id: str
    expires_at: float  # seconds since the epoch
    user_id: Any = None  # the primary key of the user it acts as, or None
    user_hash: str | None = None  # ties the token to the user's password (see user_hash())
    rooms: tuple[str, ...] | None = None  # patterns (fnmatch, case-sensitive); None: any room

    def allows_room(self, room_id: str) -> bool:
        """Whether the token lets its socket join ``room_id``."""
        if self.rooms is None:
            return True
        return any(fnmatchcase(room_id, pattern) for pattern in self.rooms)


def user_hash(user: Any) -> str | None:
    """A short digest of the user's session auth hash: it changes when the password changes,
    so a password change invalidates the user's tokens as it does their sessions."""
    get_hash = getattr(user, "get_session_auth_hash", None)
    if get_hash is None:
        return None
    return salted_hmac(SALT, get_hash(), algorithm="sha256").hexdigest()[:20]


def issue_token(
    connection_id: str,
    *,
    user: Any = None,
    rooms: Iterable[str] | None = None,
    expires_in: float | None = None,
) -> str:
    """A token that lets a client ``connect`` as ``connection_id``.

    ``user``: the socket acts as this user (binds the connectionID to them, passes the "users"
    policies). ``rooms``: patterns such as ``"chat-*"``; the socket may join only rooms that match
    one (rooms stored for the connectionID that do not match are not rejoined). ``expires_in``:
    seconds, default ``THINWS_CHANNELS["TOKEN_MAX_AGE"]`` (an hour).
    """
    protocol.validate_fields(
        protocol.Frame(protocol.FrameType.CONNECT, None, {"connectionID": connection_id})
    )
    lifetime = conf.TOKEN_MAX_AGE if expires_in is None else float(expires_in)
    if lifetime <= 0:
        raise ValueError(f"expires_in must be above 0 seconds, got {expires_in!r}")
    claims: dict[str, Any] = {"c": connection_id, "e": round(time.time() + lifetime, 3)}
    if user is not None:
        if not getattr(user, "is_authenticated", False) or user.pk is None:
            raise ValueError(f"cannot issue a token for {user!r}: not a saved, authenticated user")
        claims["u"] = user.pk if isinstance(user.pk, int) else str(user.pk)  # UUIDs as text
        digest = user_hash(user)
        if digest is not None:
            claims["h"] = digest
    if rooms is not None:
        if isinstance(rooms, str):
            raise TypeError("rooms must be a list of patterns, not a single string")
        patterns = list(rooms)
        if not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(f"rooms must be non-empty strings, got {patterns!r}")
        claims["r"] = patterns
    return signing.dumps(claims, salt=SALT, compress=True)


def read_token(token: str, connection_id: str) -> TokenClaims:
    """The claims of a valid token for ``connection_id``; raise Forbidden with the reason."""
    try:
        claims = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise Forbidden(
            "the token is not valid: its signature does not match (it was altered, or signed "
            "with another SECRET_KEY)"
        ) from None
    except Exception:  # a signed value that does not decompress or decode
        raise Forbidden("the token is not valid: it cannot be read") from None
    if (
        not isinstance(claims, dict)
        or not isinstance(claims.get("c"), str)
        or not isinstance(claims.get("e"), int | float)
        or isinstance(claims.get("e"), bool)
    ):
        raise Forbidden("the token is not valid: it is not a thinws_channels connection token")
    if claims["c"] != connection_id:
        raise Forbidden(f"the token was issued for another connectionID than {connection_id!r}")
    now = time.time()
    if claims["e"] <= now:
        expired = datetime.fromtimestamp(claims["e"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise Forbidden(f"the token expired at {expired}: get a new one")
    rooms = claims.get("r")
    if rooms is not None and not (
        isinstance(rooms, list) and all(isinstance(p, str) for p in rooms)
    ):
        raise Forbidden("the token is not valid: its room list is malformed")
    return TokenClaims(
        connection_id=connection_id,
        expires_at=float(claims["e"]),
        user_id=claims.get("u"),
        user_hash=claims.get("h"),
        rooms=tuple(rooms) if rooms is not None else None,
    )
