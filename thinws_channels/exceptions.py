"""Exceptions that project code raises or catches."""

from __future__ import annotations


class Forbidden(Exception):
    """Refuse what a client asked for: the client gets a ``forbidden`` error with this message.

    Raise it from ``can_subscribe``, ``can_publish`` or ``transform_payload`` to give a reason;
    returning False from the first two gives a generic one.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
